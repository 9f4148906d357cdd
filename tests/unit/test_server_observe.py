"""Packet captures and the flow log through the lab server, on the simulated backend in this process:
the calls (capture-start/-stop, flows-start/-poll/-stop) with their fields checked and named, ids
of another lab or learner not found, the limits per lab, everything stopped when its lab closes,
is removed or nobody polls it; and the remote backend's handles over a real unix socket, so
``lab.capture`` and ``lab.flow_log`` work in a classroom as they do locally. The docker side (real
tcpdump, the kernel's flows, as a Unix user) is in tests/integration/test_lab_server.py."""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path

import pytest

import labkit
from labkit.dataplane.nft_trace import TraceEvent
from labkit.errors import ModelError
from labkit.probe import pcap
from labkit.runtime.base import ProbeRequest
from labkit.runtime.flowing import Assembler, SimulatedFlow, TracedFlow, flow_from_dict
from labkit.runtime.remote import RemoteBackend
from labkit.runtime.sim import SimBackend
from labkit.server import observe
from labkit.server.app import LabServer
from labkit.server.http import UnixHTTPServer

WORLD = [
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "labels": {"app": n}},
     "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}} for n in ("a", "b")
]


@pytest.fixture
def clock():
    return [1000.0]


@pytest.fixture
def server(clock):
    app = LabServer(SimBackend(), clock=lambda: clock[0])
    yield app
    app.close_all()


def call(server: LabServer, action: str, body: dict | None = None, owner: str = "ann", lab: str = "one",
         method: str = "POST") -> tuple[int, dict]:
    return server.handle(owner, method, f"/v1/labs/{lab}/{action}" if action else f"/v1/labs/{lab}", body)


def ok(server: LabServer, action: str, body: dict | None = None, **kw) -> dict:
    status, answer = call(server, action, body, **kw)
    assert status == 200, answer
    return answer


def make_lab(server: LabServer, name: str = "one", owner: str = "ann") -> None:
    assert server.handle(owner, "POST", "/v1/labs", {"name": name})[0] == 200
    ok(server, "change", {"op": {"op": "apply", "documents": WORLD}}, lab=name, owner=owner)


def probe(server: LabServer, n: int = 1, **kw) -> None:
    ok(server, "probe", {"requests": [{"src": "default/a", "dst": "default/b", "port": 80, "protocol": "TCP"}] * n},
       **kw)


def test_a_capture_round_trip_brings_the_packets_back_once(server):
    make_lab(server)
    started = ok(server, "capture-start", {"target": "b", "spec": {"filter": "tcp port 80", "seconds": 30}})
    assert started["target"] == "default/b" and started["simulated"] is True
    assert started["spec"] == {"filter": "tcp port 80", "seconds": 30.0, "count": 1000, "max_bytes": 4_000_000}
    probe(server)
    ended = ok(server, "capture-stop", {"id": started["id"], "wait": False})
    assert ended["done"] and ended["reason"] == "stopped" and ended["packets"] == 8
    rows = pcap.parse(base64.b64decode(ended["pcap"]), simulated=True)
    assert [r.summary for r in rows][:3] == ["SYN", "SYN,ACK", "ACK"]
    assert any('"default/b ' in r.summary for r in rows), rows  # the answer line
    status, again = call(server, "capture-stop", {"id": started["id"]})  # handed over once
    assert status == 404 and again["error"]["path"] == "id"
    assert server.observers.count() == {"captures": 0, "flow_logs": 0}


def test_a_capture_stop_that_waits_returns_at_the_captures_own_end_or_at_the_cap(server):
    make_lab(server)
    server.observers.wait_cap = 0.2
    long = ok(server, "capture-start", {"target": "a", "spec": {"seconds": 60}})
    before = time.monotonic()
    assert ok(server, "capture-stop", {"id": long["id"], "wait": True}) == {"done": False}
    assert time.monotonic() - before < 2
    server.observers.wait_cap = 10
    short = ok(server, "capture-start", {"target": "node-1", "spec": {"seconds": 0.3}})
    ended = ok(server, "capture-stop", {"id": short["id"], "wait": True})
    assert ended["done"] and ended["reason"] == "time" and ended["pcap"]


@pytest.mark.parametrize("action, body, path", [
    ("capture-start", {}, "target"),
    ("capture-start", {"target": ["a"]}, "target"),
    ("capture-start", {"target": "a", "spec": "tcp"}, "spec"),
    ("capture-start", {"target": "a", "spec": {"interface": "eth1"}}, "spec.interface"),
    ("capture-start", {"target": "a", "spec": {"seconds": 0}}, "seconds"),
    ("capture-start", {"target": "a", "spec": {"count": True}}, "count"),
    ("capture-start", {"target": "a", "spec": {"max_bytes": 10}}, "max_bytes"),
    ("capture-start", {"target": "a", "spec": {"filter": "tcp\nport 80"}}, "filter"),
    ("capture-start", {"target": "a", "spec": {"filter": "tcp port eightyseven"}}, "filter"),  # the runtime's own
    ("capture-start", {"target": "node-9"}, "target"),
    ("capture-stop", {}, "id"),
    ("capture-stop", {"id": 7}, "id"),
    ("capture-stop", {"id": "x", "wait": "yes"}, "wait"),
    ("flows-poll", {"id": None}, "id"),
    ("flows-poll", {"id": "x", "after": -1}, "after"),
    ("flows-poll", {"id": "x", "after": True}, "after"),
    ("flows-stop", {"id": "x", "after": 1.5}, "after"),
])
def test_every_field_is_checked_and_named(server, action, body, path):
    make_lab(server)
    status, answer = call(server, action, body)
    assert status in (400, 404) and answer["error"]["path"] == path, answer
    assert server.observers.count() == {"captures": 0, "flow_logs": 0}


def test_a_pcap_longer_than_its_bound_is_cut_to_whole_records():
    import dpkt

    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out)
    for k in range(10):
        writer.writepkt(bytes(100), ts=1000 + k)
    data = out.getvalue()
    assert observe.whole_records(data, len(data)) == (data, False, 0)
    cut, was_cut, kept = observe.whole_records(data, 24 + 2 * 116 + 50)
    assert was_cut and kept == 2 and cut == data[:24 + 2 * 116]
    assert len(list(dpkt.pcap.Reader(io.BytesIO(cut)))) == 2


def test_the_flow_log_is_polled_by_number_and_stopped(server):
    make_lab(server)
    started = ok(server, "flows-start", {})
    assert started["simulated"] is True
    assert ok(server, "flows-poll", {"id": started["id"]})["flows"] == []
    probe(server)
    polled = ok(server, "flows-poll", {"id": started["id"], "after": 0})
    assert [f["seq"] for f in polled["flows"]] == [1] and polled["last"] == 1 and polled["running"]
    flow = flow_from_dict(polled["flows"][0]["flow"])
    assert isinstance(flow, SimulatedFlow) and flow.request.src == "default/a" and flow.result.ok
    assert ok(server, "flows-poll", {"id": started["id"], "after": 1})["flows"] == []
    probe(server, 300)  # more than one answer carries
    first = ok(server, "flows-poll", {"id": started["id"], "after": 1})
    assert len(first["flows"]) == observe.PER_POLL and first["more"] and first["missed"] == 0
    rest = ok(server, "flows-poll", {"id": started["id"], "after": first["last"]})
    assert rest["last"] == 301 and not rest["more"]
    probe(server, observe.KEEP + 50)  # the buffer keeps the newest: a late poller is told what it lost
    late = ok(server, "flows-poll", {"id": started["id"], "after": 301})
    assert late["missed"] == 50 and late["flows"][0]["seq"] == 352
    stopped = ok(server, "flows-stop", {"id": started["id"], "after": 1300})
    assert [f["seq"] for f in stopped["flows"]] == list(range(1301, 1352)) and not stopped["running"]
    assert call(server, "flows-poll", {"id": started["id"]})[0] == 404
    assert server.observers.count() == {"captures": 0, "flow_logs": 0}


def test_an_id_of_another_lab_or_learner_is_not_found(server):
    make_lab(server)
    make_lab(server, "two")
    make_lab(server, "one", owner="bob")
    capture = ok(server, "capture-start", {"target": "a", "spec": {"seconds": 30}})["id"]
    flows = ok(server, "flows-start", {})["id"]
    for lab, owner in (("two", "ann"), ("one", "bob")):
        for action, body in (("capture-stop", {"id": capture}), ("flows-poll", {"id": flows}),
                             ("flows-stop", {"id": flows})):
            status, answer = call(server, action, body, lab=lab, owner=owner)
            assert status == 404 and answer["error"]["type"] == "NotFound" and answer["error"]["path"] == "id"
    assert call(server, "flows-poll", {"id": flows}, owner="carol")[0] == 404  # carol has no lab "one"
    assert ok(server, "flows-poll", {"id": flows})["running"]  # untouched, still ann's
    assert server.observers.count(("one", "ann")) == {"captures": 1, "flow_logs": 1}


def test_a_lab_runs_at_most_so_many_captures_and_flow_logs(server):
    make_lab(server)
    ids = [ok(server, "capture-start", {"target": "a", "spec": {"seconds": 30}})["id"]
           for _ in range(observe.MAX_CAPTURES)]
    status, answer = call(server, "capture-start", {"target": "a"})
    assert status == 403 and "cap.stop()" in answer["error"]["message"]
    ok(server, "capture-stop", {"id": ids[0]})
    ok(server, "capture-start", {"target": "a"})  # room again
    for _ in range(observe.MAX_FLOW_LOGS):
        ok(server, "flows-start", {})
    status, answer = call(server, "flows-start", {})
    assert status == 403 and "log.stop()" in answer["error"]["message"]


def test_closing_removing_or_reaping_a_lab_stops_what_it_ran(server, clock):
    for name in ("one", "two", "three"):
        make_lab(server, name)
    ids = {name: ok(server, "flows-start", {}, lab=name)["id"] for name in ("one", "two", "three")}
    for name in ids:
        ok(server, "capture-start", {"target": "a", "spec": {"seconds": 60}}, lab=name)
    ok(server, "", None, lab="one", method="DELETE")
    assert server.observers.count(("one", "ann")) == {"captures": 0, "flow_logs": 0}
    server.limits = type(server.limits)(idle_seconds=60)
    clock[0] += 30
    ok(server, "rules", None, lab="two", method="GET")
    clock[0] += 40
    assert server.reap_idle() == [("three", "ann")]
    assert server.observers.count() == {"captures": 1, "flow_logs": 1}
    server.remove_owner("ann")
    assert server.observers.count() == {"captures": 0, "flow_logs": 0}


def test_a_flow_log_nobody_polls_for_a_minute_is_stopped(server, clock):
    make_lab(server)
    kept, left = ok(server, "flows-start", {})["id"], ok(server, "flows-start", {})["id"]
    capture = ok(server, "capture-start", {"target": "a", "spec": {"seconds": 600}})["id"]
    clock[0] += 40
    ok(server, "flows-poll", {"id": kept})
    clock[0] += 30  # left and the capture: 70 s without a call
    assert server.observers.sweep() == 2
    assert ok(server, "flows-poll", {"id": kept})["running"]
    for action, ident in (("flows-poll", left), ("capture-stop", capture)):
        status, answer = call(server, action, {"id": ident})
        assert status == 404 and "nobody asked about it" in answer["error"]["message"]


def test_flows_cross_as_plain_data_and_bad_data_is_refused():
    data = json.loads((Path(__file__).parent / "data" / "flowlog_trace.json").read_text())
    assembler, flows = Assembler(), []
    for node, t, line in data["lines"]:
        flows += assembler.feed(node, t, line, now=t)
    flows += assembler.flush()
    assert len(flows) > 5 and all(isinstance(f, TracedFlow) for f in flows)
    assert [flow_from_dict(json.loads(json.dumps(f.to_dict()))) for f in flows] == flows
    runtime = SimBackend().start("plain", 1, "ann")
    runtime.change({"op": "apply", "documents": WORLD})
    seen: list = []
    source = runtime.flows(seen.append)
    runtime.probe([ProbeRequest("default/a", "default/b", 80), ProbeRequest("default/b", "1.2.3.4", 53, "UDP")], 1.0)
    source.stop()
    runtime.close()
    assert len(seen) == 2 and all(isinstance(f, SimulatedFlow) for f in seen)
    assert [flow_from_dict(json.loads(json.dumps(f.to_dict()))) for f in seen] == seen
    event = TraceEvent("node-1", 1.0, "1", "ip", "t", "c", "packet").to_dict()
    for bad in (None, {"kind": "other"}, {"kind": "traced", "t": "1", "legs": []},
                {"kind": "traced", "t": 1, "legs": [["node-1", [{"t": "late"}]]]},
                {"kind": "traced", "t": 1, "legs": [[1, [event]]]},
                {"kind": "simulated", "t": 1, "request": {"src": "a"}},
                {**seen[0].to_dict(), "result": {"ok": True}}):
        with pytest.raises(ValueError):
            flow_from_dict(bad)


# ------------------------------------------------------------ the remote backend's handles
@pytest.fixture
def remote(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CAPTURE_DIR", str(tmp_path / "captures"))
    app = LabServer(SimBackend())
    made = []
    for who in ("ann", "bob"):
        made.append(UnixHTTPServer(str(tmp_path / f"{who}.sock"), app, identify=lambda s, h, who=who: who))
        threading.Thread(target=made[-1].serve_forever, args=(0.05,), daemon=True).start()  # quick to shut down
    yield app, {who: RemoteBackend(str(tmp_path / f"{who}.sock")) for who in ("ann", "bob")}
    for server in made:
        server.shutdown()
        server.server_close()
    app.close_all()


def test_capture_and_flow_log_work_through_a_lab_server(remote):
    app, backends = remote
    with labkit.Lab("one", backend=backends["ann"], owner="ann") as lab:
        lab.apply(WORLD)
        with lab.capture("b", filter="tcp port 80", seconds=30) as cap:
            assert cap.running
            assert lab.probe("a", "default/b").ok
        assert cap.reason == "stopped" and cap.simulated and cap.target == "default/b"
        assert [r.summary for r in cap.rows][:3] == ["SYN", "SYN,ACK", "ACK"]
        assert cap.path.is_file() and cap.path.read_bytes() == cap.pcap and "default/a -> default/b" in repr(cap)
        timed = lab.capture("node-1", seconds=0.2)  # ends by itself: the waiter brings it back
        assert timed.wait(5).reason == "time" and timed.path.is_file()
        with pytest.raises(ModelError) as err:
            lab.capture("a", filter="tcp port eightyseven")
        assert err.value.path == "filter" and "eightyseven" in str(err.value)

        log = lab.flow_log()
        before = time.time()
        lab.probe("a", "default/b")
        arrived = log.wait_for(lambda e: (e.src, e.dst, e.port) == ("default/a", "default/b", 80), timeout=2)
        assert arrived is not None and arrived.verdict == "allowed" and time.time() - before < 1.0
        assert log.errors == [] and app.observers.count(("one", "ann"))["flow_logs"] == 1
        log.stop()
        assert not log.running and app.observers.count(("one", "ann"))["flow_logs"] == 0
        still = lab.flow_log()
        running = lab.capture("a", seconds=60)
    assert not still.running and running.reason == "stopped"  # closing the lab stopped both, here and there
    assert app.observers.count() == {"captures": 0, "flow_logs": 0}


def test_a_flow_log_whose_lab_went_stops_polling_and_says_why(remote):
    app, backends = remote
    lab = labkit.Lab("gone", backend=backends["ann"], owner="ann")
    lab.apply(WORLD)
    log = lab.flow_log()
    assert backends["bob"].remove_labs("bob") == 0  # another learner cannot end it
    app.remove_owner("ann")  # the hub says ann's server stopped
    deadline = time.monotonic() + 5
    while log.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not log.running and "no lab named 'gone'" in " ".join(log.errors), log.errors
    lab.close()


def test_a_lab_attached_through_the_server_has_the_servers_node_count(remote):
    _, backends = remote
    lab = labkit.Lab("wide", backend=backends["ann"], nodes=2, owner="ann")
    lab.apply(WORLD)
    ips = {ref: lab.pod_ip(ref) for ref in lab.pods}
    lab.detach()
    again = labkit.Lab.attach("wide", [], backend=backends["ann"], owner="ann")  # nodes not given: the server says
    assert again.cluster.node_count == 2 and {ref: again.pod_ip(ref) for ref in again.pods} == ips
    again.close()
