"""The Flows tab without a browser or kernel: start/stop, the live table, filters, throttled redraws.

On the sim backend each probe becomes a simulated flow at once (in the prober's thread), so
the table can be checked right after a probe; in a kernel the flows of other threads are
handed to the loop and redrawn at most once a second.
"""
from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

import labkit  # noqa: E402
from labkit.widgets import FlowsView, LabPanel  # noqa: E402

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
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}]}]
"""
RED = "style='color:#cf222e;font-weight:bold'"


@pytest.fixture
def lab():
    with labkit.Lab("wflows", backend="sim") as lab:
        lab.apply(WORLD)
        yield lab


def rows(view: FlowsView) -> list[str]:
    return view.table.value.split("<tr class=")[1:]


def test_the_flows_tab_shows_a_denied_simulated_flow_in_red_and_filters(lab):
    panel = LabPanel(lab)
    view = panel.flows_view
    assert panel.tabs.titles[-1] == "Flows" and panel.tabs.children[-1] is view
    assert "press Start" in view.status.value and not view.running
    view.toggle.value = True
    assert view.running and view.toggle.description == "Stop"
    lab.probe("x/b", "x/c")
    lab.probe("x/a", "x/c")
    shown = rows(view)
    assert len(shown) == 2 and "simulated" in view.table.value
    assert "x/a" in shown[0] and RED not in shown[0]  # newest first
    assert "no policy allows it: ingress of x/c" in shown[1] and RED in shown[1]
    view.filter.value = "x/b"
    assert len(rows(view)) == 1 and "x/b" in rows(view)[0]
    view.filter.value = "x"
    assert len(rows(view)) == 2
    view.verdict.value = "allowed"
    assert len(rows(view)) == 1 and "NetworkPolicy x/only-a ingress rule 0" in rows(view)[0]
    view.verdict.value, view.filter.value = "denied", ""
    assert len(rows(view)) == 1 and RED in rows(view)[0]
    assert "1 of 2 row(s) shown" in view.status.value and "SIMULATED" in view.status.value
    log = view.log
    panel.close()
    assert not log.running
    lab.probe("x/b", "x/c")
    assert len(log.events()) == 2  # the closed panel's log takes no more rows


def test_stop_keeps_the_rows_and_start_begins_a_new_log(lab):
    view = FlowsView(lab, start=True)
    lab.probe("x/b", "x/c")
    view.toggle.value = False
    assert not view.running and view.toggle.description == "Start" and len(rows(view)) == 1
    assert "stopped" in view.status.value
    lab.probe("x/b", "x/c")
    assert len(rows(view)) == 1
    view.start()
    assert view.running and rows(view) == []
    view.close()
    assert not view.log.running


def test_in_a_kernel_flows_from_other_threads_are_redrawn_at_most_once_a_second(lab):
    async def cell():
        loop = asyncio.get_running_loop()
        view = FlowsView(lab, start=True, redraw_interval=1.0)
        first = view.drawn
        for _ in range(8):  # probes from a worker thread, as a live matrix makes them
            await loop.run_in_executor(None, lab.probe, "x/b", "x/c")
            await asyncio.sleep(0.05)
        during = view.drawn - first
        await asyncio.sleep(1.1)
        after = view.drawn - first
        await asyncio.sleep(1.1)  # nothing new: no redraw
        idle = view.drawn - first
        view.close()
        return during, after, idle, len(rows(view)), [e.count for e in view.log.events()]

    during, after, idle, shown, counts = asyncio.run(cell())
    assert during == 1 and after == 2 and idle == 2
    assert shown == 1 and counts == [8]  # the same call eight times: one row, "x8"
