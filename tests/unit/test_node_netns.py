"""labkit.node in a throw-away network namespace: probes via setns(2) in worker threads,
sysctl, exec-in. Namespace tests need root and unshare; traffic stays on loopback."""

import importlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.nsholder import can_unshare_net, pod_namespace

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


@pytest.fixture(scope="module")
def node_env(tmp_path_factory):
    """PYTHONPATH holding a copy of labkit/node ALONE (as in the lab image)."""
    root = tmp_path_factory.mktemp("nodepkg")
    shutil.copytree(NODE_DIR, root / "labkit" / "node",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return {"PYTHONPATH": str(root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}, root


def run_node(env, command, request):
    proc = subprocess.run([sys.executable, "-m", "labkit.node", command],
                          input=json.dumps(request), capture_output=True, text=True,
                          env=env[0], cwd=env[1], timeout=60)
    return proc.returncode, json.loads(proc.stdout)


def free_port():
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        return tcp.getsockname()[1]


needs_netns = pytest.mark.skipif(
    not can_unshare_net() or not shutil.which("nsenter") or not shutil.which("ip"),
    reason="needs root with CAP_SYS_ADMIN (unshare --net), nsenter and ip to create "
           "a throw-away network namespace")


@pytest.fixture(scope="module")
def pod(node_env):
    """`serve` running as PID 1-of-its-netns in a new network namespace (lo up)."""
    port = free_port()
    script = 'ip link set lo up && exec "$0" -m labkit.node serve --name ns1/pod ' \
             '--bind 127.0.0.1 --port %d/TCP --port %d/UDP' % (port, port)
    with pod_namespace(["sh", "-c", script, sys.executable], env=node_env[0], cwd=node_env[1],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) \
            as (proc, netns):
        ready = threading.Event()

        def collect():
            for line in proc.stderr:
                if " serving " in line:
                    ready.set()
        threading.Thread(target=collect, daemon=True).start()
        assert ready.wait(10), "serve did not start in the namespace"
        yield {"netns": netns, "port": port}


@needs_netns
def test_probe_enters_namespace_per_probe(node_env, pod):
    probes = []
    for i in range(40):
        probes.append({"id": "in%d" % i, "dst": "127.0.0.1", "port": pod["port"],
                       "protocol": "TCP" if i % 2 else "UDP", "netns": pod["netns"]})
        probes.append({"id": "out%d" % i, "dst": "127.0.0.1", "port": pod["port"],
                       "protocol": "TCP"})
    code, reply = run_node(node_env, "probe", {"timeout": 1.0, "probes": probes})
    assert code == 0
    res = {r["id"]: r for r in reply["results"]}
    assert [r["id"] for r in reply["results"]] == [p["id"] for p in probes]
    for i in range(40):
        assert res["in%d" % i]["ok"] and res["in%d" % i]["answer"] == "ns1/pod"
        # the same port in the caller's own namespace: nothing listens there
        assert res["out%d" % i]["ok"] is False
        assert res["out%d" % i]["error"] == "connection refused"


@needs_netns
def test_probe_reports_bad_namespace_paths(node_env):
    code, reply = run_node(node_env, "probe", {"probes": [
        {"id": "a", "dst": "127.0.0.1", "port": 9, "netns": "/proc/999999999/ns/net"},
        {"id": "b", "dst": "127.0.0.1", "port": 9, "netns": "/proc/self/ns/uts"},
        {"id": "c", "dst": "127.0.0.1", "port": 9, "netns": "/nonexistent/ns"},
    ]})
    assert code == 0
    a, b, c = reply["results"]
    assert a["ok"] is False and a["error"] == \
        "cannot open network namespace /proc/999999999/ns/net: No such file or directory"
    for other, path in ((b, "/proc/self/ns/uts"), (c, "/nonexistent/ns")):
        assert other["ok"] is False and other["error"] == (
            "refusing to act in %s: a pod's network namespace is named /proc/<pid>/ns/net" % path)


@needs_netns
def test_worker_threads_do_not_move_the_caller(pod):
    netns = load_node("netns")
    before = os.readlink("/proc/thread-self/ns/net")
    seen = netns.run_parallel(
        [lambda: (netns.enter_netns(pod["netns"]),
                  os.readlink("/proc/thread-self/ns/net"))[1]] * 5
        + [lambda: os.readlink("/proc/thread-self/ns/net")] * 5, max_workers=3)
    assert os.readlink("/proc/thread-self/ns/net") == before
    assert seen[5:] == [before] * 5
    assert seen[:5] == [os.readlink(pod["netns"])] * 5 and seen[0] != before
    assert netns.run_in_netns(pod["netns"], os.readlink, "/proc/thread-self/ns/net") \
        == seen[0]


@needs_netns
def test_sysctl_in_namespace_leaves_host_alone(node_env, pod):
    host = Path("/proc/sys/net/ipv4/icmp_ratelimit").read_text().strip()
    want = "0" if host != "0" else "250"
    code, reply = run_node(node_env, "sysctl", {
        "netns": pod["netns"],
        "values": {"net.ipv4.icmp_ratelimit": want, "net/ipv4/conf/all/rp_filter": 0},
        "keys": ["net.ipv4.ip_forward"]})
    assert code == 0
    assert reply["values"]["net.ipv4.icmp_ratelimit"] == want
    assert reply["values"]["net/ipv4/conf/all/rp_filter"] == "0"
    assert reply["values"]["net.ipv4.ip_forward"] in ("0", "1")
    assert Path("/proc/sys/net/ipv4/icmp_ratelimit").read_text().strip() == host
    code, reply = run_node(node_env, "sysctl", {"netns": pod["netns"],
                                                "values": {"net.ipv4.no_such_knob": "1"}})
    assert code == 2 and reply["error"].startswith(
        "net.ipv4.no_such_knob: cannot write /proc/sys/net/ipv4/no_such_knob")
    code, reply = run_node(node_env, "sysctl", {"netns": "/proc/999999999/ns/net",
                                                "values": {"net.ipv4.ip_forward": "1"}})
    assert code == 2 and "cannot open network namespace /proc/999999999/ns/net" in reply["error"]


@needs_netns
def test_exec_in_namespace(node_env, pod):
    code, reply = run_node(node_env, "exec-in", {"netns": pod["netns"],
                                                 "argv": ["ip", "-o", "link"]})
    assert code == 0 and reply["exit_code"] == 0 and reply["timed_out"] is False
    assert [l.split(":")[1].strip() for l in reply["output"].splitlines()] == ["lo"]
    code, reply = run_node(node_env, "exec-in", {"netns": pod["netns"],
                                                 "argv": ["no-such-command-xyz"]})
    assert code == 0 and reply["exit_code"] != 0 and "no-such-command-xyz" in reply["output"]


def test_exec_in_without_namespace(node_env):
    code, reply = run_node(node_env, "exec-in", {
        "argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]})
    assert code == 0 and reply["exit_code"] == 3
    assert "out" in reply["output"] and "err" in reply["output"]
    code, reply = run_node(node_env, "exec-in", {"argv": ["cat"], "stdin": "hello"})
    assert reply["output"] == "hello"
    code, reply = run_node(node_env, "exec-in", {"argv": ["/no/such/binary"]})
    assert code == 0 and reply["exit_code"] == 127 and "cannot run" in reply["output"]


def test_exec_in_timeout_kills_the_group(node_env):
    started = time.monotonic()
    code, reply = run_node(node_env, "exec-in", {
        "argv": ["sh", "-c", "echo started; sleep 30 & sleep 30"], "timeout": 0.5})
    assert code == 0 and reply["exit_code"] == 124 and reply["timed_out"] is True
    assert reply["output"].startswith("started")
    assert time.monotonic() - started < 10


@needs_netns
def test_refuse_host_netns_compares_namespaces_not_paths(pod):
    """The guard matches a namespace by identity: the same namespace under another path
    is refused, a different namespace passes, an unreadable path is left to the caller."""
    netns = load_node("netns")
    pid = pod["netns"].split("/")[2]
    with pytest.raises(netns.HostNamespaceError, match="host's network namespace"):
        netns.refuse_host_netns(pod["netns"], host="/proc/%s/task/%s/ns/net" % (pid, pid))
    netns.refuse_host_netns(pod["netns"])  # a pod: its own net and PID namespaces
    netns.refuse_host_netns("/proc/999999999/ns/net", host=pod["netns"])  # gone: opening it fails later
    netns.refuse_host_netns(None, host=pod["netns"])
    # any other spelling of a path is refused, so none can slip past the PID-namespace check
    for odd in ("/proc//%s/ns/net" % os.getpid(), "/proc/%s/./ns/net" % os.getpid(),
                "/proc/self/root/proc/%s/ns/net" % os.getpid(), "/proc/%s/task/%s/ns/net" % (pid, pid),
                "/proc/self/ns/net", "/var/run/netns/x"):
        with pytest.raises(netns.HostNamespaceError, match="is named /proc/<pid>/ns/net"):
            netns.refuse_host_netns(odd)


HOST_SIDE = "/proc/%d/ns/net" % os.getpid()  # this test process: not in a pod


def _refusals(path):
    return [
        ("exec-in", {"netns": path, "argv": ["true"]}),
        ("sysctl", {"netns": path, "keys": ["net.ipv4.ip_forward"]}),
        ("nft", {"netns": path, "ruleset": "table ip labkit-x {\n}\n", "check": True}),
        ("cni", {"command": "CHECK", "netns": path, "container_id": "x",
                 "config": {"cniVersion": "1.0.0", "name": "n", "type": "bridge"}}),
    ]


def _assert_refused(node_env, path, why):
    """Every agent command that takes a namespace path refuses ``path``, with ``why``."""
    for command, request in _refusals(path):
        code, reply = run_node(node_env, command, request)
        assert code == 2, (command, reply)
        assert reply["error"].startswith("netns: refusing to act in %s" % path) or \
            reply["error"].startswith("refusing to act in %s" % path), (command, reply)
        assert why in reply["error"], (command, reply)
    code, reply = run_node(node_env, "probe", {"probes": [
        {"id": "h", "dst": "127.0.0.1", "port": 9, "netns": path}]})
    assert code == 0 and reply["results"][0]["ok"] is False
    assert reply["results"][0]["error"].startswith("refusing to act in %s" % path)
    proc = subprocess.run([sys.executable, "-m", "labkit.node", "connect"],
                          input=json.dumps({"netns": path, "dst": "127.0.0.1", "port": 9}) + "\n",
                          capture_output=True, text=True, env=node_env[0], cwd=node_env[1],
                          timeout=30)
    assert proc.returncode == 2, proc.stdout
    assert json.loads(proc.stdout.splitlines()[0])["error"].startswith("refusing to act in %s" % path)


def test_agent_refuses_namespaces_of_processes_outside_pods(node_env):
    """Nodes run with --pid host, so every host process's /proc/<pid>/ns/net is within
    their reach. A process that shares the agent's PID namespace is not a pod: refused,
    whatever the agent was asked to do there (here: this very test process)."""
    _assert_refused(node_env, HOST_SIDE, "shares the node's PID namespace")


@pytest.mark.skipif(not os.access("/proc/1/ns/net", os.R_OK),
                    reason="/proc/1/ns/net is not readable here (not root, or PID 1 is "
                           "protected, as in a Firecracker VM): the PID-1 check cannot be shown")
def test_agent_refuses_pid_1s_namespace(node_env):
    _assert_refused(node_env, "/proc/1/ns/net", "host's network namespace (that of PID 1)")
