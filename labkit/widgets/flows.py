"""The Flows tab: the lab's connection attempts, live, as the kernel (or, on sim, the oracle) judged them.

Owns ``FlowsView``: a Start/Stop toggle that runs ``lab.flow_log()``, a text filter (a pod
``ns/name`` or a namespace), a verdict dropdown and the table (``labkit.probe.flowlog.table_html``:
newest first, denied and rejected rows in bold red, a "simulated" banner on sim). Flows arrive
on the log's own thread; the view hands them to the kernel's asyncio loop
(``call_soon_threadsafe``) and redraws at most once per ``redraw_interval`` seconds, only when
something new arrived or the filter changed. Without a loop (scripts, tests) it redraws at once.
``close()`` stops the log.
"""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from labkit.probe.flowlog import VERDICTS, FlowLog, filtered, table_html
from labkit.widgets.common import ErrorArea, Throttle, guard, running_loop, set_classes

VERDICT_OPTIONS = ("all",) + VERDICTS


class FlowsView(W.VBox):
    """Live flow log controls and table. ``log`` is the running (or last) ``FlowLog``; ``drawn``
    counts table redraws."""

    log: FlowLog | None = None  # class default: close() works even if __init__ failed
    _redraw: Throttle | None = None

    def __init__(self, lab: Any, *, errors: ErrorArea | None = None, redraw_interval: float = 1.0,
                 start: bool = False, limit: int = 100):
        self.lab, self.limit = lab, limit
        own_errors = errors is None
        self.errors = errors if errors is not None else ErrorArea(lab)
        self.drawn = 0
        self._drawn_key: tuple | None = None
        self._home_loop = running_loop()  # the kernel's loop, if any: flows arrive on other threads
        self._syncing = False
        self.toggle = W.ToggleButton(value=False, description="Start", icon="play",
                                     tooltip="log every connection attempt in the lab as it happens")
        set_classes(self.toggle, "labkit-flows-toggle")
        self.filter = W.Text(placeholder="pod ns/name or namespace", description="Filter",
                             layout=W.Layout(width="260px"))
        set_classes(self.filter, "labkit-flows-filter")
        self.verdict = W.Dropdown(options=VERDICT_OPTIONS, value="all", description="Verdict",
                                  layout=W.Layout(width="200px"))
        set_classes(self.verdict, "labkit-flows-verdict")
        self.status = W.HTML()
        self.table = W.HTML()
        set_classes(self.table, "labkit-flows-table")
        self._redraw = Throttle(self.render, redraw_interval, self.errors, "drawing the flow log")
        self.toggle.observe(guard(self._toggled, self.errors, "starting or stopping the flow log"), names="value")
        for control in (self.filter, self.verdict):
            control.observe(guard(lambda _c: self.render(), self.errors, "filtering the flow log"), names="value")
        super().__init__([W.HBox([self.toggle, self.filter, self.verdict]), self.status, self.table]
                         + ([self.errors] if own_errors else []))
        set_classes(self, "labkit-flows-view")
        self.render()
        if start:
            self.start()

    # ------------------------------------------------------------ control
    @property
    def running(self) -> bool:
        return self.log is not None and self.log.running

    def start(self) -> None:
        """Start a new flow log (the rows of the previous one are dropped); returns once it runs."""
        if self.running:
            return
        log = self.lab.flow_log()
        log.listeners.append(self._arrived)
        self.log = log
        self._set_toggle(True)
        self.render()

    def stop(self) -> None:
        """Stop the flow log (its rows stay shown). Safe to call twice."""
        if self.log is not None:
            self.log.stop()
        if self._redraw is not None:
            self._redraw.flush()
        self._set_toggle(False)
        self.render()

    def close(self) -> None:
        if self.log is not None:
            self.log.stop()
        if self._redraw is not None:
            self._redraw.cancel()
        super().close()

    def events(self) -> list:
        """The rows the table shows now (the filters applied), oldest first."""
        if self.log is None:
            return []
        text = self.filter.value.strip()
        verdict = None if self.verdict.value == "all" else self.verdict.value
        pod, namespace = (text, None) if "/" in text else (None, text or None)
        return filtered(self.log.events(), pod, namespace, verdict)

    # ------------------------------------------------------------ drawing
    def render(self) -> None:
        """Redraw the table when the log or the filters changed since the last time."""
        log = self.log
        key = (id(log), log.version if log else 0, log.running if log else False, self.filter.value,
               self.verdict.value)
        if key == self._drawn_key:
            return
        self._drawn_key = key
        simulated = bool(self.lab.simulated)
        if log is None:
            self.status.value = ("<small>The flow log is off: press Start, then make connections (probes, the "
                                 "matrix, Live) and watch them appear" + (" (simulated: the oracle's answers to the "
                                 "lab's probes)" if simulated else ", as the kernel traced them") + ".</small>")
            self.table.value = ""
            return
        if not log.running and self.toggle.value:  # it ended by itself (its seconds, the lab closed)
            self._set_toggle(False)
        rows = self.events()
        total = len(log.events())
        errors = "".join(f"<div class='labkit-error'>{html.escape(e)}</div>" for e in log.errors)
        state = "running" if log.running else "stopped"
        self.status.value = (f"<small>flow log {state}: {len(rows)} of {total} row(s) shown"
                             + (", SIMULATED" if simulated else "") + "</small>" + errors)
        set_classes(self.status, "labkit-flows-status", state)
        self.table.value = table_html(rows, simulated, self.limit)
        self.drawn += 1

    def _arrived(self, _event: Any) -> None:
        """A listener of the log (its thread): redraw on the kernel's loop, throttled."""
        loop = running_loop()
        home = self._home_loop
        if loop is None and home is not None and home.is_running():
            home.call_soon_threadsafe(self._redraw)
            return
        self._redraw()

    def _set_toggle(self, value: bool) -> None:
        self._syncing = True
        try:
            self.toggle.value = value
            self.toggle.description = "Stop" if value else "Start"
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
        except Exception:
            self._set_toggle(self.running)
            raise
