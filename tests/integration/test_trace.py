"""``lab.trace`` on real kernels: every kind of hop of a two-node lab, each compared with the oracle's walk,
and tracing switched off afterwards, also when the walk fails, without marking any other connection."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import labkit
from labkit.dataplane import names
from labkit.runtime import neighbours
from tests.integration.helpers import node_container, node_exec, wait_until

pytestmark = pytest.mark.docker
WORLD = (Path(__file__).resolve().parents[1] / "unit" / "data" / "walks" / "two-nodes.json")


@pytest.fixture(scope="module")
def lab():
    import json
    data = json.loads(WORLD.read_text())
    with labkit.Lab("it-trace", backend="docker", nodes=2) as lab:
        lab.apply(data["yaml"])
        yield lab


def trace_tables(lab) -> list[str]:
    """Trace tables left in any node of the lab (there must never be one after a walk)."""
    out = []
    for node in ("node-1", "node-2"):
        tables = node_exec("it-trace", ["nft", "list", "tables"], node)
        out += [f"{node}: {line}" for line in tables.splitlines() if names.TRACE_TABLE in line]
    return out


def monitors(lab_name: str = "it-trace") -> list[str]:
    """``nft monitor trace`` processes in this lab's nodes (they share the host's PID namespace; a process
    belongs to a node if its cgroup names the node's container)."""
    ids = [node_container(lab_name, n).id for n in ("node-1", "node-2")]
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args[:3] == [b"nft", b"monitor", b"trace"]:
            try:
                cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            except OSError:
                continue
            if any(cid in cgroup for cid in ids):
                found.append(pid)
    return found


CASES = [  # (src, dst, port, protocol, verdict, nodes crossed by the first packet, masqueraded)
    ("x/c", "x/a", 80, "TCP", "delivered to x/a", ["node-1"], False),            # same node, allowed by a policy
    ("x/a", "x/b", 80, "TCP", "delivered to x/b", ["node-1", "node-2"], False),  # the other node
    ("x/a", "web.x", 80, "TCP", "delivered to x/b", ["node-1", "node-2"], False),  # a Service
    ("internet", "198.18.0.1", 30080, "TCP", "delivered to x/b", ["node-1", "node-2"], True),  # NodePort
    ("internet", "198.18.0.2", 30080, "TCP", "delivered to x/b", ["node-1", "node-2"], True),  # on node-2's address
    ("x/b", "web.x", 80, "TCP", "delivered to x/b", ["node-2"], True),          # hairpin
    ("x/a", "x/c", 80, "TCP", "dropped", ["node-1"], False),                     # denied ingress
    ("x/c", "x/b", 80, "TCP", "dropped", ["node-1"], False),                     # denied egress
    ("x/a", "x/b", 53, "UDP", "delivered to x/b", ["node-1", "node-2"], False),  # UDP and its answer
    ("x/a", "203.0.113.10", 443, "TCP", "delivered to internet", ["node-1"], True),  # out to the lab's internet
    ("x/a", "x/a", 80, "TCP", "delivered to x/a", [], False),                    # itself: loopback, no node
    ("x/a", "10.244.1.77", 80, "TCP", "dropped", ["node-1"], False),             # nobody has that address
    ("x/a", "8.8.8.8", 80, "TCP", "dropped", ["node-1"], False),                 # outside the lab: no route
]


@pytest.mark.parametrize("src, dst, port, protocol, verdict, nodes, masquerade", CASES,
                         ids=[f"{c[0]}->{c[1]}:{c[2]}/{c[3]}" for c in CASES])
def test_each_kind_of_hop_is_traced_as_the_oracle_says(lab, src, dst, port, protocol, verdict, nodes, masquerade):
    walk = lab.trace(src, dst, port, protocol, timeout=0.5)
    twin = lab.explain(src, dst, port, protocol)
    assert walk.verdict == verdict, str(walk)
    assert walk.agrees and walk.complete, str(walk)
    assert walk.facts.nodes == nodes, str(walk)
    assert (walk.verdict != "dropped") == twin.allowed
    assert walk.facts.masquerade == masquerade, str(walk)
    if walk.facts.outcome == "delivered" and nodes:  # the answer's way back: "established" on every node
        assert {h.node for h in walk.reply if h.kind == "conntrack"} == set(nodes), str(walk)
        assert walk.result.ok and walk.result.answered_by == walk.facts.endpoint
    elif walk.facts.outcome == "dropped":
        assert walk.request[-1].kind == "drop" and not walk.reply, str(walk)
        if twin.outcomes and twin.outcomes[0].decisions and not all(d.allowed for d in twin.outcomes[0].decisions):
            assert walk.facts.deciding_rule.startswith(f"inet {names.POL_TABLE} "), str(walk)
    assert not trace_tables(lab) and not monitors()


def test_sctp_without_sockets_is_said_not_guessed(lab):
    if "SCTP" in lab.capabilities.protocols:
        pytest.skip("this kernel has SCTP sockets: the walk is a real one (covered like TCP)")
    walk = lab.trace("x/a", "x/b", 80, "SCTP")
    assert walk.verdict == "unsent" and walk.agrees and "SCTP not supported" in walk.request[0].text


def test_only_the_traced_connection_is_marked(lab):
    """Other traffic during walks (a busy client in the same node) leaves no packet in their trace."""
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            lab.probe("x/c", "x/a", 80)

    other = threading.Thread(target=busy)
    other.start()
    try:
        walks = [lab.trace("x/a", "x/b", 80, timeout=0.5) for _ in range(3)]
    finally:
        stop.set()
        other.join()
    assert all(w.agrees and w.result.ok for w in walks)
    assert [w.unrelated_packets for w in walks] == [0, 0, 0]


def test_walks_beside_a_running_flow_log(lab):
    """The flow log traces every new connection in the same nodes: walks still arm, read only their own
    connection, and count none of the flow log's packets as theirs."""
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            lab.probe("x/c", "x/a", 80)

    with lab.flow_log() as log:
        other = threading.Thread(target=busy)
        other.start()
        try:
            walks = [lab.trace(s, d, 80, timeout=0.5) for s, d in [("x/a", "x/b"), ("x/a", "x/c"), ("x/a", "web.x")] * 2]
        finally:
            stop.set()
            other.join()
        assert log.wait_for(lambda e: e.src == "x/c" and e.dst == "x/a", timeout=5)
    assert all(w.agrees and w.complete for w in walks), [str(w) for w in walks if not w.agrees]
    assert [w.unrelated_packets for w in walks] == [0] * 6
    assert not trace_tables(lab) and not monitors()


def test_tracing_is_switched_off_when_the_walk_fails(lab, monkeypatch):
    def broken(local):
        raise RuntimeError("a failure in the middle of a walk, after every node was armed")

    monkeypatch.setattr(neighbours, "read", broken)
    with pytest.raises(RuntimeError):
        lab.trace("x/a", "x/b", 80)
    monkeypatch.undo()
    wait_until(lambda: not trace_tables(lab) and not monitors(), timeout=10)  # disarmed when its stdin ends
    assert not trace_tables(lab) and not monitors()
    assert lab.trace("x/a", "x/b", 80).agrees  # and the next walk works


def test_many_walks_at_once_each_see_their_own_connection(lab):
    probes = [(s, d, 80, "TCP") for s in ("x/a", "x/b", "x/c") for d in ("x/a", "x/b", "x/c") if s != d]
    walks = lab.trace_many(probes, timeout=0.5)
    matrix = lab.expected(80, "TCP", pods=["x/a", "x/b", "x/c"])
    for (s, d, _, _), walk in zip(probes, walks):
        assert walk.agrees, str(walk)
        assert (walk.facts.outcome == "delivered") == matrix.allowed(s, d), str(walk)
