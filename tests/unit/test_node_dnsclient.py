"""labkit.node.dnsclient against a tiny in-test DNS server on 127.0.0.1 (UDP + TCP)."""

import importlib
import importlib.util
import socket
import struct
import sys
import threading
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[2] / "labkit" / "node"


def load_node(module):
    """Import labkit/node/<module> as a package of its own (no other labkit code)."""
    name = "_labkit_node_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, NODE_DIR / "__init__.py", submodule_search_locations=[str(NODE_DIR)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    return importlib.import_module("%s.%s" % (name, module))


dnsclient = load_node("dnsclient")

# name -> list of ("A", ip) / ("CNAME", target); answers follow CNAMEs in-zone unless
# the name is in NO_CHASE (then only the CNAME is returned, forcing a re-query).
ZONE = {
    "web.x.svc.cluster.local": [("A", "10.96.0.20")],
    "multi.x.svc.cluster.local": [("A", "10.244.0.5"), ("A", "10.244.0.6")],
    "alias.x.svc.cluster.local": [("CNAME", "mid.example.test")],
    "mid.example.test": [("CNAME", "web.x.svc.cluster.local")],
    "lazy.example.test": [("CNAME", "web.x.svc.cluster.local")],
    "a.b.c.d.e.f": [("A", "10.0.0.6")],
    "big.example.test": [("A", "10.1.%d.%d" % (i // 200, i % 200)) for i in range(60)],
    "empty.example.test": [],
    "fail.example.test": "SERVFAIL",
}
NO_CHASE = {"lazy.example.test"}


def encode(name):
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"


def build_answer(query, tcp=False):
    qid = struct.unpack("!H", query[:2])[0]
    offset, labels = 12, []
    while query[offset]:
        labels.append(query[offset + 1:offset + 1 + query[offset]].decode().lower())
        offset += 1 + query[offset]
    qname, question = ".".join(labels), query[12:offset + 5]
    entry = ZONE.get(qname)
    if entry == "SERVFAIL":
        return qname, struct.pack("!HHHHHH", qid, 0x8182, 1, 0, 0, 0) + question
    if entry is None:
        return qname, struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
    records, owner, seen = [], qname, set()
    while owner in ZONE and owner not in seen:
        seen.add(owner)
        owner_wire = b"\xc0\x0c" if owner == qname else encode(owner)  # compression
        nxt = None
        for kind, value in ZONE[owner]:
            if kind == "A":
                records.append(owner_wire + struct.pack("!HHIH", 1, 1, 5, 4)
                               + socket.inet_aton(value))
            else:
                target = encode(value)
                records.append(owner_wire + struct.pack("!HHIH", 5, 1, 5, len(target))
                               + target)
                nxt = value
        if nxt is None or owner in NO_CHASE:
            break
        owner = nxt
    flags = 0x8180
    if qname == "big.example.test" and not tcp:
        flags, records = flags | 0x0200, records[:2]  # truncated over UDP
    head = struct.pack("!HHHHHH", qid, flags, 1, len(records), 0, 0)
    return qname, head + question + b"".join(records)


class DNSServer:
    def __init__(self):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(8)
        self.asked, self.tcp_asked = [], []
        self.silent = set()
        threading.Thread(target=self._udp_loop, daemon=True).start()
        threading.Thread(target=self._tcp_loop, daemon=True).start()

    def _udp_loop(self):
        while True:
            try:
                data, peer = self.udp.recvfrom(512)
            except OSError:
                return
            qname, reply = build_answer(data)
            self.asked.append(qname)
            if qname not in self.silent:
                self.udp.sendto(reply, peer)

    def _tcp_loop(self):
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                length = struct.unpack("!H", conn.recv(2))[0]
                data = b""
                while len(data) < length:
                    data += conn.recv(length - len(data))
                qname, reply = build_answer(data, tcp=True)
                self.tcp_asked.append(qname)
                conn.sendall(struct.pack("!H", len(reply)) + reply)

    def close(self):
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def server():
    srv = DNSServer()
    yield srv
    srv.close()


def conf(search=("x.svc.cluster.local", "svc.cluster.local", "cluster.local"), ndots=5):
    return dnsclient.ResolvConf(["127.0.0.1"], list(search), ndots)


def test_build_query_wire_format():
    qid, packet = dnsclient.build_query("web.x", qid=0x1234)
    assert qid == 0x1234
    assert packet == (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                      b"\x03web\x01x\x00\x00\x01\x00\x01")
    with pytest.raises(ValueError):
        dnsclient.encode_name("a" * 64 + ".x")


def test_a_record(server):
    res = dnsclient.query("127.0.0.1", "web.x.svc.cluster.local", port=server.port)
    assert res.rcode == 0 and res.question == "web.x.svc.cluster.local"
    assert res.answers == [("web.x.svc.cluster.local", 1, 5, "10.96.0.20")]
    found = dnsclient.resolve("web.x.svc.cluster.local.", conf(), port=server.port)
    assert found.addresses == ["10.96.0.20"]
    assert found.queries == ["web.x.svc.cluster.local"]


def test_multiple_a_records(server):
    found = dnsclient.resolve("multi", conf(), port=server.port)
    assert found.addresses == ["10.244.0.5", "10.244.0.6"]


def test_cname_chain_in_one_answer(server):
    found = dnsclient.resolve("alias", conf(), port=server.port)
    assert found.addresses == ["10.96.0.20"]
    assert found.canonical == "web.x.svc.cluster.local"
    assert server.asked == ["alias.x.svc.cluster.local"]


def test_cname_without_address_is_chased(server):
    found = dnsclient.resolve("lazy.example.test.", conf(), port=server.port)
    assert found.addresses == ["10.96.0.20"]
    assert found.queries == ["lazy.example.test", "web.x.svc.cluster.local"]


def test_nxdomain_after_whole_search_list(server):
    with pytest.raises(dnsclient.DNSError) as err:
        dnsclient.resolve("nope", conf(), port=server.port)
    assert str(err.value) == "NXDOMAIN nope"
    assert err.value.queries == ["nope.x.svc.cluster.local", "nope.svc.cluster.local",
                                 "nope.cluster.local", "nope"]


def test_search_and_ndots_expansion(server):
    # 1 dot < ndots:5 -> search list first: web.x.x.svc.cluster.local (NXDOMAIN),
    # then web.x.svc.cluster.local (found).
    found = dnsclient.resolve("web.x", conf(), port=server.port)
    assert found.addresses == ["10.96.0.20"]
    assert found.queries == ["web.x.x.svc.cluster.local", "web.x.svc.cluster.local"]
    # 5 dots >= ndots:5 -> the name as given is asked first.
    server.asked.clear()
    found = dnsclient.resolve("a.b.c.d.e.f", conf(), port=server.port)
    assert found.queries == ["a.b.c.d.e.f"] and found.addresses == ["10.0.0.6"]
    # ndots:1 -> "web.x.svc.cluster.local" without dot is absolute first.
    found = dnsclient.resolve("web.x.svc.cluster.local", conf(ndots=1), port=server.port)
    assert found.queries == ["web.x.svc.cluster.local"]


def test_candidates_order():
    assert dnsclient.candidates("web", ["a", "b"], 5) == ["web.a", "web.b", "web"]
    assert dnsclient.candidates("w.x.y", ["a"], 2) == ["w.x.y", "w.x.y.a"]
    assert dnsclient.candidates("web.", ["a"], 5) == ["web"]
    assert dnsclient.candidates("web", [], 1) == ["web"]


def test_resolv_conf_parsing(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# generated\nnameserver 10.96.0.10\nnameserver 10.96.0.11 ; x\n"
                    "search ns1.svc.cluster.local svc.cluster.local cluster.local\n"
                    "options ndots:5 timeout:1\n")
    parsed = dnsclient.ResolvConf.load(str(path))
    assert parsed.nameservers == ["10.96.0.10", "10.96.0.11"]
    assert parsed.search == ["ns1.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert parsed.ndots == 5
    assert dnsclient.ResolvConf.parse("domain example.test\n").search == ["example.test"]
    assert dnsclient.ResolvConf.parse("").ndots == 1


def test_resolve_reads_resolv_conf_path(server, tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 127.0.0.1\nsearch x.svc.cluster.local\noptions ndots:5\n")
    found = dnsclient.resolve("web", str(path), port=server.port)
    assert found.addresses == ["10.96.0.20"]
    with pytest.raises(dnsclient.DNSError, match="cannot read"):
        dnsclient.resolve("web", str(tmp_path / "missing"), port=server.port)
    (tmp_path / "empty").write_text("search a\n")
    with pytest.raises(dnsclient.DNSError, match="no nameserver"):
        dnsclient.resolve("web", str(tmp_path / "empty"), port=server.port)


def test_truncated_udp_answer_falls_back_to_tcp(server):
    found = dnsclient.resolve("big.example.test.", conf(), port=server.port)
    assert len(found.addresses) == 60
    assert server.tcp_asked == ["big.example.test"]


def test_nodata_and_servfail(server):
    with pytest.raises(dnsclient.DNSError, match="^no A record for empty.example.test.$"):
        dnsclient.resolve("empty.example.test.", conf(), port=server.port)
    with pytest.raises(dnsclient.DNSError, match="^SERVFAIL fail.example.test.$"):
        dnsclient.resolve("fail.example.test.", conf(), port=server.port)


def test_timeout_names_server_and_query(server):
    server.silent.add("web.x.svc.cluster.local")
    with pytest.raises(dnsclient.DNSError) as err:
        dnsclient.resolve("web.x.svc.cluster.local.", conf(), timeout=0.3,
                          port=server.port)
    assert "web.x.svc.cluster.local" in str(err.value)
    assert "127.0.0.1 (timed out)" in str(err.value)


def test_ip_literal_and_hosts_file(tmp_path):
    assert dnsclient.resolve("10.96.0.1", conf()).addresses == ["10.96.0.1"]
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.244.0.7 mypod mypod.x\n")
    found = dnsclient.resolve("mypod", conf(), hosts=str(hosts))
    assert found.addresses == ["10.244.0.7"] and found.queries == []


def test_bad_name_is_rejected():
    with pytest.raises(dnsclient.DNSError, match="bad DNS name"):
        dnsclient.resolve("a..b", conf())


def test_parse_rejects_garbage():
    with pytest.raises(ValueError):
        dnsclient.parse_response(b"\x00\x01")
    with pytest.raises(ValueError):  # a query, not a response
        dnsclient.parse_response(dnsclient.build_query("x")[1])
    loop = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c"
    with pytest.raises(ValueError):
        dnsclient.parse_response(loop)
