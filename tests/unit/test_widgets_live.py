"""Live traffic: the asyncio task, the thread pool, throttling and error handling.

The asynchronous parts run under ``asyncio.run`` (the kernel's loop in a notebook);
``step()`` covers environments without a running loop.
"""
from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

import labkit  # noqa: E402
from labkit.errors import LabkitError  # noqa: E402
from labkit.widgets import LabPanel, LiveTraffic, Throttle  # noqa: E402

DENY_ALL_X = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "deny-all", "namespace": "x"},
              "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


@pytest.fixture
def lab():
    with labkit.Lab("live", backend="sim") as lab:
        lab.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in "xy"] + [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": p, "namespace": n, "labels": {"app": p}},
             "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}}
            for n in "xy" for p in "ab"])
        yield lab


def test_step_updates_the_panel_without_a_loop(lab):
    panel = LabPanel(lab)
    assert "allow" in panel.matrix_view.cells[("y/a", "x/a")]._dom_classes
    lab.apply(DENY_ALL_X)  # a change made in code, as from another cell
    matrix = panel.live.step()
    assert panel.live.rounds == 1 and panel.live.latest is matrix
    assert "deny" in panel.matrix_view.cells[("y/a", "x/a")]._dom_classes
    assert "x/deny-all" in panel.policies.policy_list.children[0].children[1].value
    panel.close()


def test_start_without_a_running_loop_is_refused_and_reported(lab):
    live = LiveTraffic(lab)
    with pytest.raises(LabkitError, match="step"):
        live.start()
    live.toggle.value = True  # the learner's click: reported, and the toggle goes back off
    assert live.toggle.value is False and not live.running
    assert "running asyncio loop" in live.errors.html.value
    live.close()


def test_rate_must_be_positive(lab):
    with pytest.raises(LabkitError, match="rate_hz"):
        LiveTraffic(lab, rate_hz=0)


def test_live_probes_in_a_thread_and_delivers_on_the_loop(lab):
    seen: list[tuple[str, str]] = []
    real = lab.matrix

    def matrix(**kwargs):
        seen.append(("probe", threading.current_thread().name))
        return real(**kwargs)

    lab.matrix = matrix
    delivered: list[str] = []

    async def run():
        live = LiveTraffic(lab, rate_hz=5, on_result=lambda m: delivered.append(threading.current_thread().name))
        live.start()
        assert live.running and live.toggle.value is True
        await asyncio.sleep(1.1)
        live.stop()
        assert not live.running and live.toggle.value is False
        await asyncio.sleep(0.3)
        return live

    live = asyncio.run(run())
    assert live.rounds >= 4  # 5 Hz for 1.1 s
    assert len(seen) == live.rounds
    assert all(name.startswith("labkit-live") for _, name in seen)
    assert delivered and set(delivered) == {threading.main_thread().name}
    assert len(delivered) <= live.rounds
    live.close()


def test_a_failing_round_stops_cleanly_and_is_never_lost(lab):
    calls = []

    def matrix(**kwargs):
        calls.append(1)
        if len(calls) >= 3:
            raise RuntimeError("engine went away")
        return lab.expected()

    lab.matrix = matrix

    async def run():
        live = LiveTraffic(lab, rate_hz=20)
        live.toggle.value = True  # as the learner clicks it
        await asyncio.sleep(0.6)
        return live

    live = asyncio.run(run())
    assert not live.running and live.toggle.value is False
    assert len(calls) == 3
    assert "engine went away" in live.errors.html.value
    assert any("live traffic stopped after 2 rounds" in e for e in lab.events)
    assert "stopped after an error" in live.status.value
    live.close()


def test_a_failing_listener_stops_the_loop_too(lab):
    def listener(matrix):
        raise ValueError("cannot draw")

    async def run():
        live = LiveTraffic(lab, rate_hz=10, on_result=listener)
        live.start()
        await asyncio.sleep(0.5)
        return live

    live = asyncio.run(run())
    assert not live.running and "cannot draw" in live.errors.messages[0]


def test_live_panel_follows_changes_made_in_code(lab):
    async def run():
        panel = LabPanel(lab, rate_hz=10, redraw_interval=0.1)
        drawn = panel.drawn
        panel.live.start()
        await asyncio.sleep(0.3)
        lab.apply(DENY_ALL_X)
        await asyncio.sleep(0.6)
        panel.live.stop()
        return panel, drawn

    panel, drawn = asyncio.run(run())
    assert "deny" in panel.matrix_view.cells[("y/a", "x/a")]._dom_classes
    assert panel.drawn == drawn + 1  # redrawn once for the change, not once per round
    assert panel.live.rounds >= 5
    panel.close()


def test_throttle_coalesces_a_burst_into_one_trailing_call():
    calls = []

    async def run():
        throttle = Throttle(calls.append, 0.2)
        for i in range(10):
            throttle(i)
        assert calls == [0] and throttle.pending
        await asyncio.sleep(0.3)
        assert calls == [0, 9] and not throttle.pending  # the trailing call used the latest arguments
        throttle("late")  # 0.1 s after the trailing call: waits for the interval to end
        assert calls == [0, 9] and throttle.pending
        await asyncio.sleep(0.2)
        assert calls == [0, 9, "late"]
        throttle("x")
        throttle.cancel()
        await asyncio.sleep(0.3)
        assert calls == [0, 9, "late"]

    asyncio.run(run())


def test_throttle_without_a_loop_calls_at_once_and_flush_cancel():
    calls = []
    throttle = Throttle(calls.append, 10)
    throttle(1)
    throttle(2)
    assert calls == [1, 2]
    throttle.flush()
    assert calls == [1, 2]


def test_a_round_that_races_a_change_is_retried_once(lab):
    calls = []
    real = lab.matrix

    def matrix(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            lab.apply(DENY_ALL_X)  # another cell changes the lab mid-round...
            raise labkit.NotFound("pod 'y/b' not found")  # ...and the round trips over it
        return real(**kwargs)

    lab.matrix = matrix
    live = LiveTraffic(lab)
    assert not live.step().allowed("y/a", "x/a") and len(calls) == 2
    live.close()
