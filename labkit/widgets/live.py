"""Live traffic: probe the whole matrix again and again while the learner works.

Owns ``LiveTraffic``: an asyncio task on the kernel's running loop that runs one round
of ``lab.matrix`` per period in a thread pool (blocking probes never block the kernel),
hands the results to listeners on the loop thread, throttled so a burst becomes one
redraw, and stops cleanly on ``stop()``, on ``close()`` or after an error (shown in the
error area and recorded in ``lab.events``). ``step()`` does one round synchronously.

A busy cell blocks the kernel's loop, so rounds pause while a cell runs; never write
``time.sleep`` loops around this, use ``start()``/``stop()``.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import ipywidgets as W

from labkit.errors import LabkitError
from labkit.probe.matrix import Matrix
from labkit.widgets.common import ErrorArea, Throttle, running_loop, set_classes


class LiveTraffic(W.HBox):
    """A Live toggle (class ``labkit-live``) and a status line, driving continuous probing.

    Args:
        rate_hz: rounds per second (default 2); a round slower than the period starts the
            next one at once.
        on_result: called with each new Matrix on the loop thread (more via ``listeners``).
        timeout: per-probe timeout of a live round; short, so denied cells do not slow it.
        redraw_interval: at most one delivery per this many seconds (default ``1 / rate_hz``,
            at least 0.25 s); the latest result of a burst wins.
    """

    _task: asyncio.Task | None = None  # class defaults: close() works even if __init__ failed
    _executor: ThreadPoolExecutor | None = None
    _deliver: Throttle | None = None

    def __init__(self, lab: Any, port: int = 80, protocol: str = "TCP", rate_hz: float = 2.0,
                 on_result: Callable[[Matrix], None] | None = None, *, errors: ErrorArea | None = None,
                 timeout: float = 0.4, redraw_interval: float | None = None):
        if not isinstance(rate_hz, (int, float)) or not 0 < rate_hz <= 50:
            raise LabkitError(f"rate_hz={rate_hz!r}: give a number of rounds per second between 0 and 50")
        self.lab, self.port, self.protocol, self.rate_hz, self.timeout = lab, port, protocol, float(rate_hz), timeout
        own_errors = errors is None
        self.errors = errors if errors is not None else ErrorArea(lab)
        self.listeners: list[Callable[[Matrix], None]] = [on_result] if on_result else []
        self.rounds = 0
        self.latest: Matrix | None = None
        self.last_round_ms: float | None = None
        self._syncing = False
        interval = redraw_interval if redraw_interval is not None else max(0.25, 1.0 / self.rate_hz)
        self._deliver = Throttle(self._deliver_now, interval)
        self.toggle = W.ToggleButton(value=False, description="Live", icon="play",
                                     tooltip=f"probe the matrix {self.rate_hz:g} times a second")
        set_classes(self.toggle, "labkit-live")
        self.status = W.HTML("<small>live probing is off</small>")
        set_classes(self.status, "labkit-live-status")
        self.toggle.observe(self._toggled, names="value")
        super().__init__([self.toggle, self.status] + ([self.errors] if own_errors else []))

    # ------------------------------------------------------------ control
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start probing on the running asyncio loop (a Jupyter kernel has one); returns at once."""
        if self.running:
            return
        loop = running_loop()
        if loop is None:
            raise LabkitError("live probing needs a running asyncio loop (a Jupyter kernel has one); "
                              "here, call step() for one round")
        self._task = loop.create_task(self._run(), name=f"labkit-live-{getattr(self.lab, 'name', 'lab')}")
        self._set_toggle(True)
        self.status.value = f"<small>live: probing {self.port}/{self.protocol} at {self.rate_hz:g} Hz</small>"

    def stop(self) -> None:
        """Stop probing (the round in flight is discarded); safe to call twice."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        self._deliver.flush()
        self._set_toggle(False)
        self.status.value = f"<small>live probing is off ({self.rounds} rounds)</small>"

    def close(self) -> None:
        if self._deliver is not None:  # None when __init__ failed early
            self.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        super().close()

    def step(self) -> Matrix:
        """One round now, synchronously (blocking); listeners get the result at once."""
        matrix = self._probe(self.port, self.protocol)
        self._received(matrix)
        self._deliver.flush()
        return matrix

    # ------------------------------------------------------------ internals
    def _set_toggle(self, value: bool) -> None:
        self._syncing = True
        try:
            self.toggle.value = value
            self.toggle.icon = "stop" if value else "play"
        finally:
            self._syncing = False

    def _toggled(self, change: dict) -> None:
        if self._syncing:
            return
        try:
            if change["new"]:
                self.start()
            else:
                self.stop()
        except Exception as exc:  # shown, never lost; the toggle goes back to off
            self.errors.report(exc, "starting live probing")
            self._set_toggle(False)

    def _probe(self, port: int, protocol: str) -> Matrix:
        """One round (in the pool thread). A round that fails while the lab changed under it
        (a pod deleted from another cell mid-round) is retried once; other errors propagate."""
        for attempt in (1, 2):
            seen = self.lab.cluster
            try:
                return self.lab.matrix(port=port, protocol=protocol, timeout=self.timeout)
            except Exception:
                if attempt == 2 or self.lab.cluster is seen:
                    raise
        raise AssertionError("unreachable")

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labkit-live")
        return self._executor

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate_hz
        try:
            while True:
                started = loop.time()
                matrix = await loop.run_in_executor(self._pool(), self._probe, self.port, self.protocol)
                self.last_round_ms = (loop.time() - started) * 1000
                self._received(matrix)  # back on the loop thread
                await asyncio.sleep(max(0.0, period - (loop.time() - started)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # report, record, stop cleanly
            self._fail(exc)

    def _received(self, matrix: Matrix) -> None:
        self.rounds += 1
        self.latest = matrix
        self._deliver(matrix)

    def _deliver_now(self, matrix: Matrix) -> None:
        try:
            for listener in list(self.listeners):
                listener(matrix)
        except Exception as exc:  # a listener failed: same treatment as a failed probe
            self._fail(exc)
            return
        if self.running:
            took = f", last round {self.last_round_ms:.0f} ms" if self.last_round_ms is not None else ""
            self.status.value = (f"<small>live: {matrix.port}/{matrix.protocol} at {self.rate_hz:g} Hz, "
                                 f"{self.rounds} rounds{took}, {time.strftime('%H:%M:%S')}</small>")

    def _fail(self, exc: BaseException) -> None:
        self.errors.report(exc, "live probing")
        events = getattr(self.lab, "events", None)
        if events is not None:
            events.append(f"live traffic stopped after {self.rounds} rounds: {type(exc).__name__}: {exc}")
        task, self._task = self._task, None
        current = asyncio.current_task() if running_loop() is not None else None
        if task is not None and task is not current and not task.done():
            task.cancel()
        self._deliver.cancel()
        self._set_toggle(False)
        self.status.value = "<small>live probing stopped after an error (see the error area)</small>"
