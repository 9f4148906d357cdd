"""labkit.node serve + probe on 127.0.0.1 (no Docker, no root): TCP, UDP, HTTP, errors."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[2] / "labkit" / "node"


@pytest.fixture(scope="module")
def node_env(tmp_path_factory):
    """PYTHONPATH holding a copy of labkit/node ALONE (as in the lab image)."""
    root = tmp_path_factory.mktemp("nodepkg")
    shutil.copytree(NODE_DIR, root / "labkit" / "node",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return {"PYTHONPATH": str(root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}, root


def free_port():
    """A port number free on 127.0.0.1 for both TCP and UDP."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


class Server:
    """`python -m labkit.node serve` as a subprocess, stderr collected."""

    def __init__(self, env, name, ports):
        argv = [sys.executable, "-m", "labkit.node", "serve", "--name", name,
                "--bind", "127.0.0.1"]
        for spec in ports:
            argv += ["--port", spec]
        self.proc = subprocess.Popen(argv, env=env[0], cwd=env[1], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.ready = threading.Event()
        threading.Thread(target=self._collect, daemon=True).start()
        assert self.ready.wait(10), "serve did not start: %s" % self.lines

    def _collect(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            if " serving " in line:
                self.ready.set()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its pid
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(node_env):
    port, closed = free_port(), free_port()
    srv = Server(node_env, "x/b", ["%d/TCP" % port, "%d/UDP" % port, "%d/SCTP" % port])
    srv.port, srv.closed = port, closed
    yield srv
    srv.stop()


def probe(env, probes, timeout=1.0):
    proc = subprocess.run([sys.executable, "-m", "labkit.node", "probe"],
                          input=json.dumps({"timeout": timeout, "probes": probes}),
                          capture_output=True, text=True, env=env[0], cwd=env[1], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    return {r["id"]: r for r in json.loads(proc.stdout)["results"]}


def test_tcp_and_udp_answer_with_pod_name(node_env, server):
    res = probe(node_env, [
        {"id": "tcp", "dst": "127.0.0.1", "port": server.port, "protocol": "TCP"},
        {"id": "udp", "dst": "127.0.0.1", "port": server.port, "protocol": "UDP"},
        {"id": "dflt", "dst": "127.0.0.1", "port": server.port},
    ])
    for key in ("tcp", "udp", "dflt"):
        assert res[key]["ok"] is True, res[key]
        assert res[key]["answer"] == "x/b"
        assert res[key]["error"] is None
        assert isinstance(res[key]["latency_ms"], float) and res[key]["latency_ms"] >= 0
        assert round(res[key]["latency_ms"], 2) == res[key]["latency_ms"]


def test_the_answer_carries_the_client_address_the_server_saw(node_env, server):
    res = probe(node_env, [
        {"id": "tcp", "dst": "127.0.0.1", "port": server.port, "protocol": "TCP"},
        {"id": "udp", "dst": "127.0.0.1", "port": server.port, "protocol": "UDP"},
    ])
    for key in ("tcp", "udp"):
        assert res[key]["answer"] == "x/b" and res[key]["client_ip"] == "127.0.0.1", res[key]
    # the raw exchange: the probe's line gets the peer address and port of this very socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(b"probe\n")
        data = sock.makefile("rb").read()
        assert data == b"x/b 127.0.0.1:%d\n" % sock.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(b"probe\n", ("127.0.0.1", server.port))
        assert sock.recvfrom(100)[0] == b"x/b 127.0.0.1:%d\n" % sock.getsockname()[1]


def test_http_clientip_path_answers_the_client_address(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(b"GET /clientip HTTP/1.0\r\n\r\n")
        data = sock.makefile("rb").read()
        mine = sock.getsockname()[1]
    assert data.partition(b"\r\n\r\n")[2] == b"127.0.0.1:%d\n" % mine


def test_answers_without_an_address_stay_whole():
    from labkit.node.probe import parse_answer
    assert parse_answer("x/b 10.244.1.3:40112") == ("x/b", "10.244.1.3")
    assert parse_answer("x/b") == ("x/b", None)
    assert parse_answer("hello there world") == ("hello there world", None)
    assert parse_answer("x/b 10.244.1.3:port") == ("x/b 10.244.1.3:port", None)


def test_refused_and_closed_udp(node_env, server):
    res = probe(node_env, [
        {"id": "tcp", "dst": "127.0.0.1", "port": server.closed, "protocol": "TCP"},
        {"id": "udp", "dst": "127.0.0.1", "port": server.closed, "protocol": "UDP"},
    ], timeout=0.5)
    assert res["tcp"] == {**res["tcp"], "ok": False, "answer": None,
                          "error": "connection refused"}
    assert res["udp"]["ok"] is False
    assert res["udp"]["error"] in ("connection refused", "timed out")


def test_http_request_gets_http_response(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Length: 4" in head and b"text/plain" in head
    assert body == b"x/b\n"


def test_head_request_has_no_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n")
        data = sock.makefile("rb").read()
    assert data.startswith(b"HTTP/1.0 200 OK") and data.endswith(b"\r\n\r\n")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_gets_pod_name(server):
    out = subprocess.run(["curl", "-s", "--max-time", "5", "--noproxy", "*",
                          "http://127.0.0.1:%d/" % server.port],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout == "x/b\n"


def test_silent_client_still_gets_name(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        started = time.monotonic()
        data = sock.makefile("rb").read()
    assert data == b"x/b\n"
    assert time.monotonic() - started < 2


def test_udp_answers_every_datagram(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        for payload in (b"one", b"", b"x" * 1000):
            sock.sendto(payload, ("127.0.0.1", server.port))
            assert sock.recvfrom(100)[0] == b"x/b\n"


def test_sctp_reported_as_unsupported_or_served(node_env, server):
    res = probe(node_env, [{"id": "s", "dst": "127.0.0.1", "port": server.port,
                            "protocol": "SCTP"}])["s"]
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132).close()
    except OSError:
        assert res["ok"] is False and res["unsupported"] is True
        assert res["error"] == "SCTP not supported by this kernel"
        assert any("SCTP not supported" in line for line in server.lines)
    else:
        assert res["ok"] is True and res["answer"] == "x/b"


def test_many_probes_run_in_parallel(node_env, server):
    probes = [{"id": str(i), "dst": "127.0.0.1", "port": server.port,
               "protocol": "TCP" if i % 2 else "UDP"} for i in range(100)]
    started = time.monotonic()
    res = probe(node_env, probes)
    assert len(res) == 100 and all(r["ok"] and r["answer"] == "x/b" for r in res.values())
    assert time.monotonic() - started < 20


def test_bind_error_on_one_port_keeps_others(node_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        good = free_port()
        srv = Server(node_env, "y/c", ["%d/TCP" % busy, "%d/TCP" % good])
        try:
            assert any("cannot listen on %d/TCP" % busy in line for line in srv.lines)
            res = probe(node_env, [{"id": "g", "dst": "127.0.0.1", "port": good}])
            assert res["g"]["answer"] == "y/c"
            assert srv.proc.poll() is None
        finally:
            srv.stop()


def test_sigterm_exits_promptly(node_env):
    srv = Server(node_env, "z/d", ["%d/UDP" % free_port()])
    started = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - started < 2
    assert srv.proc.stdout.read() == ""  # nothing on stdout, ever


def test_hostname_probe_via_dns(node_env, server, tmp_path):
    """dst given as a name: resolved with search/ndots against an in-test DNS server."""
    import struct

    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    asked = []

    def answer():
        while True:
            try:
                data, peer = dns.recvfrom(512)
            except OSError:
                return
            offset, labels = 12, []
            while data[offset]:
                labels.append(data[offset + 1:offset + 1 + data[offset]].decode())
                offset += 1 + data[offset]
            qname = ".".join(labels)
            asked.append(qname)
            question = data[12:offset + 5]
            found = qname == "web.x.svc.cluster.local"
            head = struct.pack("!HHHHHH", struct.unpack("!H", data[:2])[0],
                               0x8180 if found else 0x8183, 1, 1 if found else 0, 0, 0)
            rr = (b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(
                "127.0.0.1")) if found else b""
            dns.sendto(head + question + rr, peer)

    threading.Thread(target=answer, daemon=True).start()
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\nsearch x.svc.cluster.local svc.cluster.local "
                    "cluster.local\noptions ndots:5\n")
    dns_port = dns.getsockname()[1]
    try:
        res = probe(node_env, [
            {"id": "ok", "dst": "web", "port": server.port, "resolv_conf": str(conf),
             "dns_port": dns_port},
            {"id": "nx", "dst": "nope", "port": server.port, "resolv_conf": str(conf),
             "dns_port": dns_port},
        ])
    finally:
        dns.close()
    assert res["ok"]["ok"] is True and res["ok"]["answer"] == "x/b"
    assert res["ok"]["resolved"] == "127.0.0.1"
    assert res["ok"]["dns_queries"] == ["web.x.svc.cluster.local"]
    assert res["nx"]["ok"] is False and res["nx"]["error"] == "NXDOMAIN nope"
    assert res["nx"]["dns_queries"] == ["nope.x.svc.cluster.local", "nope.svc.cluster.local",
                                        "nope.cluster.local", "nope"]
