"""The flow log without a Docker engine: real ``nft monitor trace`` lines replayed, and the sim backend.

``data/flowlog_trace.json`` holds the trace lines two nodes of a docker lab printed while the
flow log's table was armed (``nft_trace.flow_tables``), with the probes made meanwhile: an
allowed and a denied connection on one node, a denied one across nodes (its SYN sent four
times), an allowed one across nodes, one through a Service (after its DNS lookup), UDP, a port
nothing listens on, a Service without endpoints, and a packet walk (``lab.trace``) whose own
table marks every packet of its connection. Replayed through the docker source's assembler
(``runtime.docker.flows.Assembler``) in any interleaving of the two nodes' streams, they must
give the same rows.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import yaml

import labkit
from labkit.errors import LabkitError, ModelError
from labkit.probe.flowlog import FlowEvent, FlowLog, table_html
from labkit.runtime.base import replay
from labkit.runtime.flowing import QUIET, Assembler, FlowSource

DATA = json.loads((Path(__file__).parent / "data" / "flowlog_trace.json").read_text())
WALK_SPORTS = range(20000, 30000)


class FakeLab:
    """What a FlowLog reads of its lab: the model, and whether it is simulated."""

    simulated = False

    def __init__(self):
        self.cluster = replay(DATA["nodes"], [{"op": "apply", "documents": list(yaml.safe_load_all(DATA["world"]))}])


class FakeSource(FlowSource):
    def _stop(self) -> None:
        pass


def interleavings(seed: int):
    """The recorded lines as they might have arrived: each node's stream late by its own varying delay
    (up to 60 ms), so the two nodes' lines mix differently (each node's own order kept)."""
    rng = random.Random(seed)
    out = []
    for node in ("node-1", "node-2"):
        arrival = 0.0
        for _, t, line in (x for x in DATA["lines"] if x[0] == node):
            arrival = max(arrival, t + rng.uniform(0, 0.06))
            out.append((arrival, node, t, line))
    return [(node, t, line, arrival) for arrival, node, t, line in sorted(out, key=lambda x: x[0])]


def replayed(lines) -> tuple[list, list[float]]:
    """TracedFlows of the lines (each read at its own time), and how long after its first line each came."""
    assembler, flows, delays = Assembler(), [], []

    def took(found, now):
        flows.extend(found)
        delays.extend(now - f.t for f in found)

    now = 0.0
    for node, t, line, *arrived in lines:
        now = arrived[0] if arrived else t
        took(assembler.feed(node, t, line, now=now), now)
        took(assembler.due(now=now)[0], now)
    end = now + 1
    took(assembler.due(now=end)[0], end)
    assert assembler.pending == 0
    return flows, delays


def logged(flows) -> FlowLog:
    sources = []
    log = FlowLog(FakeLab(), lambda on_event: sources.append(FakeSource(on_event)) or sources[0])
    for flow in flows:
        sources[0].emit(flow)
    return log


def test_the_fixture_lab_has_the_recorded_addresses():
    assert FakeLab().cluster.pod_ips == DATA["pod_ips"]
    # the recording predates default/kubernetes (10.96.0.1), which no recorded line involves
    assert {k: v for k, v in FakeLab().cluster.service_ips.items() if k != "default/kubernetes"} == DATA["service_ips"]


def test_recorded_trace_gives_one_row_per_connection_with_its_verdict_and_deciding_rule():
    flows, delays = replayed(DATA["lines"])
    rows = logged(flows).events()
    got = [(e.src, e.dst, e.port, e.protocol, e.verdict, e.count, e.deciding, e.node) for e in rows]
    assert sorted(got) == sorted([  # the same call again with the same verdict joins its row (count)
        ("x/a", "x/c", 80, "TCP", "allowed", 2, "NetworkPolicy x/only-a ingress rule 0", "node-1"),
        ("x/b", "x/c", 80, "TCP", "denied", 4, "no policy allows it: ingress of x/c", "node-1"),
        ("x/a", "x/b", 80, "TCP", "allowed", 1, "not isolated", "node-2"),
        ("x/a", "Service kube-system/kube-dns", 53, "UDP", "allowed", 2,
         "Service kube-system/kube-dns -> kube-system/coredns; not isolated", "node-1"),
        ("x/a", "Service x/web", 80, "TCP", "allowed", 1, "Service x/web -> x/b; not isolated", "node-2"),
        ("x/a", "x/b", 53, "UDP", "allowed", 1, "not isolated", "node-2"),
        ("x/a", "x/c", 81, "TCP", "denied", 1, "no policy allows it: ingress of x/c", "node-1"),
        ("x/c", "x/b", 81, "TCP", "allowed", 1, "not isolated", "node-2"),  # nothing listens: the pod refuses
        ("x/a", "Service x/empty", 80, "TCP", "rejected", 1,
         "Service x/empty: the Service has no ready endpoint for this port (map svc-empty)", "node-1"),
    ])  # by the time of their latest attempt
    assert got[-1][:3] == ("x/a", "x/c", 80)  # the walk's own connection came last, and joined the first one
    assert next(e for e in rows if e.dst == "Service x/web").endpoint == "x/b"
    assert not any(e.simulated for e in rows)
    assert max(delays) <= QUIET + 0.05  # every flow is handed over within the quiet time of its first line


def test_a_connection_between_two_nodes_is_one_flow_with_both_nodes_in_travel_order():
    flows, _ = replayed(DATA["lines"])
    across = [f for f in flows if [n for n, _ in f.legs] == ["node-2", "node-1"]]
    assert len(across) == 4  # x/b (node-2) -> x/c (node-1): the SYN and its three retransmissions
    a_to_b = [f for f in flows if any(e.kind == "packet" and e.packet.get("daddr") == DATA["pod_ips"]["x/b"]
                                      and e.packet.get("dport") == 80 for _, evs in f.legs for e in evs)]
    assert len(a_to_b) == 2 and all([n for n, _ in f.legs] == ["node-1", "node-2"] for f in a_to_b)


@pytest.mark.parametrize("seed", range(6))
def test_the_same_rows_whatever_order_the_nodes_lines_arrive_in(seed):
    expected = [(e.src, e.dst, e.port, e.verdict, e.count, e.deciding, e.node)
                for e in logged(replayed(DATA["lines"])[0]).events()]
    flows, delays = replayed(interleavings(seed))
    got = [(e.src, e.dst, e.port, e.verdict, e.count, e.deciding, e.node) for e in logged(flows).events()]
    assert sorted(got) == sorted(expected)
    assert max(delays) <= QUIET + 0.12


@pytest.mark.parametrize("seed", range(3))
def test_a_node_whose_lines_come_late_still_gives_the_same_rows(seed):
    """node-2's lines up to 1.5 s late (a busy reader under a live matrix): flows that crossed the fabric
    wait for them instead of being handed over half-seen."""
    rng, out = random.Random(seed), []
    for node in ("node-1", "node-2"):
        arrival = 0.0
        for _, t, line in (x for x in DATA["lines"] if x[0] == node):
            arrival = max(arrival, t + (rng.uniform(0.5, 1.5) if node == "node-2" else 0.0))
            out.append((arrival, node, t, line))
    flows, _ = replayed([(n, t, line, a) for a, n, t, line in sorted(out, key=lambda x: x[0])])
    expected = [(e.src, e.dst, e.port, e.verdict, e.count, e.deciding) for e in logged(replayed(DATA["lines"])[0]).events()]
    got = [(e.src, e.dst, e.port, e.verdict, e.count, e.deciding) for e in logged(flows).events()]
    assert sorted(got) == sorted(expected)


def test_a_flow_whose_last_node_never_reported_is_unknown_never_allowed():
    """x/b (node-2) -> x/c (node-1) is dropped on node-1; with node-1's lines lost, the row must not say allowed."""
    flows, _ = replayed([x for x in DATA["lines"] if x[0] == "node-2"])
    rows = [e for e in logged(flows).events() if (e.src, e.dst) == ("x/b", "x/c")]
    assert rows and all(e.verdict == "unknown" for e in rows), rows
    assert "seen on node-2 only" in rows[0].deciding


def test_lines_of_a_packet_walk_alone_make_no_flow():
    walk = [x for x in DATA["lines"] if x[1] >= DATA["marks"][-1][1]]
    ours = [x for x in walk if "labkit-flows" not in x[2]]  # as if only the walk's table had been armed
    flows, _ = replayed(ours)
    assert flows == []


def test_filters_by_pod_namespace_and_verdict():
    log = logged(replayed(DATA["lines"])[0])
    assert {e.verdict for e in log.events(verdict="denied")} == {"denied"}
    assert len(log.events(verdict="denied")) == 2 and len(log.events(verdict="rejected")) == 1
    assert all("x/c" in (e.src, e.dst) for e in log.events(pod="x/c")) and len(log.events(pod="x/c")) == 4
    assert [e.dst for e in log.events(pod="x/b", verdict="allowed")].count("Service x/web") == 1  # its endpoint
    assert len(log.events(namespace="kube-system")) == 1 and log.events(namespace="kube-system")[0].count == 2
    assert log.events(pod="c") == []  # "c" is default/c
    assert log.events(namespace="x") == log.events()
    with pytest.raises(ModelError, match="verdict"):
        log.events(verdict="blocked")


def test_the_table_shows_denied_rows_in_bold_red_newest_first():
    log = logged(replayed(DATA["lines"])[0])
    text = log._repr_html_()
    rows = text.split("<tr class=")[1:]
    assert "x/only-a ingress rule 0" in rows[0]  # the walk's connection came last
    denied = [r for r in rows if "no policy allows it" in r]
    assert denied and all(r.startswith("'labkit-flow denied' style='color:#cf222e;font-weight:bold'") for r in denied)
    assert "simulated" not in text
    assert "denied x4" in text and "running, 9 flow(s), 3 denied or rejected" in repr(log)
    data = json.loads(json.dumps(log.to_dict()))["events"]
    assert next(e for e in data if e["src"] == "x/b" and e["dst"] == "x/c")["count"] == 4
    assert "x/b -> x/c:80/TCP DENIED x4: no policy allows it: ingress of x/c on node-1" in str(log)


def test_a_listener_sees_each_new_and_updated_row():
    seen = []
    flows, _ = replayed(DATA["lines"])
    sources = []
    log = FlowLog(FakeLab(), lambda on_event: sources.append(FakeSource(on_event)) or sources[0])
    log.listeners.append(seen.append)
    for flow in flows:
        sources[0].emit(flow)
    assert len(seen) == len(flows) and [e.count for e in seen if e.dst == "x/c" and e.port == 80][1:5] == [1, 2, 3, 4]
    log.stop()
    assert not log.running and log.stopped is not None
    log.stop()  # idempotent


# ------------------------------------------------------------------ sim
WORLD = DATA["world"]


@pytest.fixture
def lab():
    with labkit.Lab("flows", backend="sim", nodes=2) as lab:
        lab.apply(WORLD)
        yield lab


def test_sim_flow_log_shows_an_allowed_and_a_denied_probe_marked_simulated(lab):
    with lab.flow_log() as log:
        before = time.time()
        assert lab.probe("x/a", "x/c").ok and not lab.probe("x/b", "x/c").ok
        lab.probe("x/a", "web")
        lab.probe("x/a", "empty")
        rows = log.events()
    assert [(e.src, e.dst, e.verdict, e.deciding, e.node, e.simulated) for e in rows] == [
        ("x/a", "x/c", "allowed", "NetworkPolicy x/only-a ingress rule 0", "node-1", True),
        ("x/b", "x/c", "denied", "no policy allows it: ingress of x/c", "node-1", True),
        ("x/a", "Service x/web", "allowed", "Service x/web -> x/b; not isolated", "node-2", True),
        ("x/a", "Service x/empty", "rejected", rows[3].deciding, "", True),
    ]
    assert "no ready endpoints" in rows[3].deciding
    assert all(before <= e.t <= time.time() for e in rows)
    assert not log.running
    lab.probe("x/b", "x/c")
    assert len(log.events()) == 4  # a stopped log takes no more rows
    assert "simulated" in log._repr_html_() and "SIMULATED" in repr(log)


def test_sim_repeated_attempts_of_one_call_are_one_row(lab):
    log = lab.flow_log()
    lab.sample("x/b", "x/c", count=5)
    lab.probe("x/b", "x/c")
    lab.probe("x/b", "x/c", port=81)
    assert [(e.port, e.count) for e in log.events()] == [(80, 6), (81, 1)]  # the same call again joins its row


def test_a_flow_log_stops_by_itself_after_its_seconds_and_when_the_lab_closes():
    with labkit.Lab("flows-2", backend="sim", nodes=2) as lab:
        lab.apply(WORLD)
        short, long = lab.flow_log(seconds=0.05), lab.flow_log()
        time.sleep(0.3)
        assert not short.running and long.running
        with pytest.raises(ModelError, match="seconds"):
            lab.flow_log(seconds=0)
    assert not long.running
    with pytest.raises(LabkitError, match="closed"):
        lab.flow_log()


def test_flow_event_plain_data_and_text():
    e = FlowEvent(0.0, "x/a", "Service x/web", 80, "TCP", "allowed", "Service x/web -> x/b; not isolated",
                  "node-2", 3, False, "x/b", 40000)
    assert e.to_dict()["endpoint"] == "x/b" and not e.denied
    assert e.pods() == {"x/a", "x/b"} and e.namespaces() == {"x"}
    assert str(e).endswith("x/a -> Service x/web:80/TCP ALLOWED x3: Service x/web -> x/b; not isolated on node-2")
    assert "no connection attempts yet" in table_html([], True) and "simulated" in table_html([], True)


def test_a_runtime_without_a_flow_log_says_so():
    from labkit.runtime.base import LabRuntime

    class Bare(LabRuntime):
        def _enforce(self, old, new): ...
        def probe(self, requests, timeout): return []
        def exec(self, pod, argv, container=None): ...
        def rules(self): return ""
        def connect(self, src, dst, port, timeout): ...
        def close(self): ...

    with pytest.raises(LabkitError, match="no flow log"):
        Bare("b", "me", FakeLab().cluster).flows(print)
