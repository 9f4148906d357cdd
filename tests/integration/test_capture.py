"""``lab.capture`` on real packets: tcpdump in a pod's namespace sees the connection a probe made
(handshake, the answer), a DNS lookup by name (the query and the ClusterIP in the answer); the
count and byte bounds end it with their reason; a filter tcpdump rejects is a ModelError on
``filter`` that leaves no tcpdump behind; and no capture process outlives its lab (nor a Ctrl-C)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import dpkt
import pytest

import labkit
from labkit import ModelError
from tests.integration.helpers import node_exec, wait_until

pytestmark = pytest.mark.docker

WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: app, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec: {selector: {app: b}, ports: [{port: 80, targetPort: 8080}]}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("captures"))  # the captures/ folder goes there, not into the repository
    try:
        with labkit.Lab("it-capture", backend="docker") as lab:
            lab.apply(WORLD)
            yield lab
    finally:
        os.chdir(here)


def _tcpdumps(lab_name: str, marker: str) -> list[str]:
    """The node's view of running tcpdump processes whose command line holds ``marker`` (nodes see the
    host's processes: the marker, a filter no other test uses, keeps other labs' captures out)."""
    lines = node_exec(lab_name, ["ps", "-eo", "pid=,args="]).splitlines()
    return [line.split()[0] for line in lines if "tcpdump" in line and marker in line]


def test_a_pod_capture_shows_the_handshake_and_the_answer(lab):
    a, b = lab.pod_ip("x/a"), lab.pod_ip("x/b")
    with lab.capture("x/b", filter="tcp port 8080", seconds=30) as cap:
        assert cap.running and not cap.simulated
        result = lab.probe("x/a", "x/b", port=8080)
    assert result.ok and cap.reason == "stopped"
    rows = cap.rows
    syn = next(r for r in rows if r.summary == "SYN")
    client = syn.src
    assert client.startswith(f"{a}:") and syn.dst == f"{b}:8080" and syn.who == "x/a -> x/b"
    assert any(r.summary == "SYN,ACK" and (r.src, r.dst) == (f"{b}:8080", client) for r in rows)
    assert any(r.src == f"{b}:8080" and f'"x/b {client}"' in r.summary for r in rows), rows  # the answer line
    assert cap.path.is_file() and cap.path.read_bytes() == cap.pcap
    with open(cap.path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB and len(list(reader)) == len(rows)
    assert "SYN,ACK" in repr(cap) and "SIMULATED" not in repr(cap)


def test_a_dns_capture_shows_the_query_and_the_cluster_ip(lab):
    with lab.capture("x/a", filter="udp port 53", seconds=30) as cap:
        assert lab.probe("x/a", "web.x", port=80).ok
    dns = [r for r in cap.rows if r.protocol == "DNS"]
    query = next(r for r in dns if r.summary == "DNS query A web.x.svc.cluster.local")
    assert query.src.startswith(f"{lab.pod_ip('x/a')}:") and query.dst == "10.96.0.10:53"
    answer = f"DNS answer web.x.svc.cluster.local A {lab.service_ip('x/web')}"
    assert any(r.summary == answer and r.dst == query.src for r in dns), dns


def test_count_and_byte_bounds_end_the_capture(lab):
    cap = lab.capture("x/b", filter="tcp port 8080", count=3, seconds=30)
    lab.probe("x/a", "x/b", port=8080)
    assert cap.wait(15).reason == "count"
    assert [r.summary for r in cap.rows] == ["SYN", "SYN,ACK", "ACK"]
    cap = lab.capture("x/b", filter="tcp port 8080", max_bytes=1024, seconds=30)
    for _ in range(3):  # each connection is about ten frames of 66-90 bytes
        lab.probe("x/a", "x/b", port=8080)
    assert cap.wait(15).reason == "bytes" and len(cap.pcap) <= 1024 and len(cap.rows) >= 8


def test_a_filter_tcpdump_rejects_names_filter_and_leaves_nothing_running(lab):
    with pytest.raises(ModelError) as err:
        lab.capture("x/b", filter="tcp port eightyseven")
    assert err.value.path == "filter" and "unknown port 'eightyseven'" in str(err.value)
    assert _tcpdumps("it-capture", "eightyseven") == []
    assert all(p.stat().st_size > 0 for p in Path("captures").glob("*.pcap"))  # no empty file of the failure


def test_no_capture_outlives_its_lab_or_a_ctrl_c(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with labkit.Lab("it-capture-2", backend="docker") as lab:
        lab.apply(WORLD)
        with pytest.raises(KeyboardInterrupt):
            with lab.capture("x/a", filter="port 7171", seconds=120) as interrupted:
                assert len(_tcpdumps("it-capture-2", "7171")) == 1
                raise KeyboardInterrupt
        assert interrupted.reason == "stopped"
        assert wait_until(lambda: _tcpdumps("it-capture-2", "7171") == [], timeout=5)
        running = [lab.capture("x/b", filter="port 7272", seconds=120),
                   lab.capture("node-1", filter="port 7272", seconds=120)]
        pids = _tcpdumps("it-capture-2", "7272")
        assert len(pids) == 2
        # nodes see the engine's PID namespace; where it is this one's, check the processes here after the close
        here = [p for p in pids if b"tcpdump" in _cmdline(p)]
        started = time.monotonic()
    assert all(c.reason == "stopped" for c in running) and time.monotonic() - started < 20
    assert all(b"tcpdump" not in _cmdline(p) for p in here)


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
