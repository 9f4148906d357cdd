"""The flow log on real packets: a two-node lab where only x/a may reach x/c.

The log must show an allowed and a denied attempt, each within one second of the attempt (the
denied probe is still waiting for its answer then), with the verdict the kernel gave and the
policy rule that decided it; a connection between pods of two nodes (traced on both) and a SYN
sent again by the client are one row each; ``stop()`` leaves no trace table and none of the
agents' processes in any node (a second log shares them, and its stop leaves the first running),
and closing the lab stops a log that still runs.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import labkit
from tests.integration.helpers import node_exec, wait_until

pytestmark = pytest.mark.docker

LAB = "it-flowlog"
WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {nodeName: node-2, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}]}]
"""


def alive(pid: int) -> bool:
    """Is ``pid`` still one of the flow log's processes (nodes share the host's PID namespace)?"""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"nft" in args  # "nft monitor trace" or the agent's "nft-watch"


def test_the_flow_log_sees_allowed_and_denied_attempts_within_a_second():
    with labkit.Lab(LAB, backend="docker", nodes=2) as lab:
        lab.apply(WORLD)
        arrived: dict[tuple, float] = {}
        log = lab.flow_log()
        log.listeners.append(lambda e: arrived.setdefault((e.src, e.dst, e.port, e.count), time.time()))
        pids = [p for ps in log.pids.values() for p in ps]
        assert len(pids) == 4 and all(alive(p) for p in pids), log.pids  # an agent and a monitor per node
        assert all("labkit-flows" in node_exec(LAB, ["nft", "list", "tables"], n) for n in ("node-1", "node-2"))

        before_allowed = time.time()
        assert lab.probe("x/a", "x/c", 80).ok
        before_denied = time.time()
        denied_probe = lab.probe("x/b", "x/c", 80, timeout=3.5)  # across nodes; its SYN is sent 3 times
        assert not denied_probe.ok
        before_across = time.time()
        assert lab.probe("x/a", "x/b", 80).ok  # across nodes, traced on both

        allowed = log.wait_for(lambda e: (e.src, e.dst, e.port) == ("x/a", "x/c", 80))
        denied = log.wait_for(lambda e: (e.src, e.dst, e.port) == ("x/b", "x/c", 80))
        across = log.wait_for(lambda e: (e.src, e.dst, e.port) == ("x/a", "x/b", 80))
        assert allowed is not None and denied is not None and across is not None, log.events()
        assert (allowed.verdict, allowed.deciding, allowed.node) == (
            "allowed", "NetworkPolicy x/only-a ingress rule 0", "node-1")
        assert (denied.verdict, denied.deciding, denied.node) == (
            "denied", "no policy allows it: ingress of x/c", "node-1")
        assert (across.verdict, across.deciding, across.node) == ("allowed", "not isolated", "node-2")
        # within a second of the attempt, seen by the listener while the denied probe was still waiting
        for event, before in ((allowed, before_allowed), (denied, before_denied), (across, before_across)):
            assert before - 0.05 <= event.t < before + 1.0, (event, before)
            assert arrived[(event.src, event.dst, event.port, 1)] - before < 1.0, (event, before)
        assert arrived[("x/b", "x/c", 80, 1)] < before_across - 2.0
        # one row per connection: the SYN sent again, and the two nodes' traces of one packet
        assert [e for e in log.events() if (e.src, e.dst) == ("x/b", "x/c")] == [denied]
        assert denied.count >= 3 and across.count == 1
        assert [e for e in log.events() if (e.src, e.dst) == ("x/a", "x/b")] == [across]
        assert len(log.events(verdict="denied")) == 1 and log.errors == []

        other = lab.flow_log()  # a second log shares the nodes' agents; stopping it leaves the first running
        assert other.pids == log.pids
        other.stop()
        again = time.time()
        lab.probe("x/a", "x/c", 80)
        assert log.wait_for(lambda e: e.latest >= again - 0.05 and (e.src, e.dst) == ("x/a", "x/c")) is not None

        log.stop()
        assert not log.running
        assert wait_until(lambda: not any(alive(p) for p in pids), timeout=5), [p for p in pids if alive(p)]
        for node in ("node-1", "node-2"):
            assert "labkit-flows" not in node_exec(LAB, ["nft", "list", "tables"], node)
        rows = log.events()
        lab.probe("x/a", "x/c", 80)
        time.sleep(0.3)
        assert log.events() == rows  # no new row, no count that grew

        still = lab.flow_log()  # closing the lab stops it
        more = [p for ps in still.pids.values() for p in ps]
    assert not still.running
    assert wait_until(lambda: not any(alive(p) for p in more), timeout=5)
