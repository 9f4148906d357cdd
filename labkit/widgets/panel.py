"""``LabPanel``: the whole lab in one widget — topology, matrix, editors, explain, live.

Owns the composition and the refresh flow: a banner saying where results come from
(real packets on docker, or SIMULATED), Refresh and Live controls, one shared error area
(class ``labkit-error``), and tabs Topology / Matrix / Policies / Services / Explain / Flows
(the live flow log, ``widgets.flows``; it stops when the panel closes).
After an editor applies a change everything refreshes; a change made in code (``lab.apply``
in another cell) reaches the panel through ``lab.change_listeners``: the banner says at once
that the view is stale, and the panel refreshes itself when the cell is done (at once when
no asyncio loop runs; never with ``auto_refresh=False``, where Refresh is the way). The
topology picture is redrawn at most twice a second, and only when the lab or the matrix changed.

``LabPanel`` is an ``ipywidgets.VBox`` subclass: make it the last expression of a cell.
"""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from labkit.probe.matrix import Matrix
from labkit.widgets.common import ErrorArea, Throttle, close_all, css_widget, guard, running_loop, set_classes
from labkit.widgets.explain import ExplainView
from labkit.widgets.flows import FlowsView
from labkit.widgets.live import LiveTraffic
from labkit.widgets.matrix import MatrixView
from labkit.widgets.policy import PolicyEditor
from labkit.widgets.service import ServiceEditor

TABS = ("Topology", "Matrix", "Policies", "Services", "Explain", "Flows")


class LabPanel(W.VBox):
    """The lab's control panel. ``refresh()`` probes once and redraws everything.

    Parts: ``banner``, ``refresh_button``, ``live`` (LiveTraffic), ``errors`` (ErrorArea),
    ``tabs``, ``topology`` (Image), ``matrix_view``, ``policies``, ``services``,
    ``explain_view``, ``flows_view``; ``drawn`` counts topology redraws; ``stale`` is True from a change made
    elsewhere until the next refresh. ``topology_options`` go to ``labkit.viz.topology_figure``
    (e.g. ``{"group": "namespace"}`` or ``{"only": "denied"}``).
    """

    def __init__(self, lab: Any, port: int = 80, protocol: str = "TCP", *, rate_hz: float = 2.0,
                 redraw_interval: float = 0.5, include_system: bool = False, auto_refresh: bool = True,
                 topology_options: dict | None = None):
        self.lab, self.include_system, self.auto_refresh = lab, include_system, auto_refresh
        self.topology_options = dict(topology_options or {})
        self.stale = False
        self._shown: Any = None  # the lab's cluster at the last refresh
        self._scheduled: Any = None
        self._home_loop = running_loop()  # the kernel's loop, if any: listeners from other threads go there
        self._previous: Matrix | None = None  # the matrix before the latest change, for {"only": "changes"}
        self.drawn = 0
        self._drawn_key: tuple | None = None
        self._layout_for: Any = None
        self._layout: Any = None
        self._selection = (port, protocol)
        self.errors = ErrorArea(lab)
        self.banner = W.HTML()
        self.matrix_view = MatrixView(lab, port, protocol, errors=self.errors, probe=False)
        self.policies = PolicyEditor(lab, on_change=self._changed, errors=self.errors)
        self.services = ServiceEditor(lab, on_change=self._changed, errors=self.errors)
        self.explain_view = ExplainView(lab, port, protocol, errors=self.errors)
        self.flows_view = FlowsView(lab, errors=self.errors)
        self.topology = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        set_classes(self.topology, "labkit-topology")
        self.live = LiveTraffic(lab, port, protocol, rate_hz, on_result=self._live_result, errors=self.errors)
        self.refresh_button = W.Button(description="Refresh", icon="refresh", tooltip="probe again, redraw all")
        set_classes(self.refresh_button, "labkit-refresh-all")
        self.refresh_button.on_click(guard(lambda _b: self.refresh(), self.errors, "refreshing the panel"))
        self._redraw = Throttle(self._draw, redraw_interval, self.errors, "drawing the topology")
        self.matrix_view.listeners.append(guard(self._matrix_shown, self.errors, "updating the panel"))
        caption = W.HTML("<small>Pods (coloured by namespace, the same colour in every notebook) in their node; "
                         "Services as diamonds with dashed lines to ready endpoints; arrows: the latest probes "
                         "(green: allowed; solid red: no answer, dropped by a policy; dotted red: refused, nothing "
                         "listens; amber halo: differs from the oracle). Too busy? "
                         "<code>LabPanel(lab, topology_options={'group': 'namespace'})</code> or "
                         "<code>{'only': 'denied'}</code>, <code>{'focus': 'ns/pod'}</code>, "
                         "<code>{'only': 'changes'}</code>.</small>")
        self.tabs = W.Tab(children=[W.VBox([caption, self.topology]), self.matrix_view, self.policies,
                                    self.services, self.explain_view, self.flows_view], titles=TABS)
        set_classes(self.tabs, "labkit-tabs")
        super().__init__([css_widget(), self.banner, W.HBox([self.refresh_button, self.live]), self.errors,
                          self.tabs])
        set_classes(self, "labkit-panel")
        self._listener = guard(self._lab_changed, self.errors, "following a change of the lab")
        listeners = getattr(lab, "change_listeners", None)
        if listeners is not None:
            listeners.append(self._listener)
        self.refresh()

    # ------------------------------------------------------------ public
    @property
    def matrix(self) -> Matrix | None:
        """The latest matrix shown (from Refresh, a port change or a live round)."""
        return self.matrix_view.matrix

    def refresh(self) -> Matrix:
        """Probe once (blocking), then update the matrix, the topology, the editors and the banner."""
        if self._shown is not None and self.lab.cluster is not self._shown:
            self._previous = self.matrix_view.matrix  # what the lab looked like before the change
        self._shown, self.stale = self.lab.cluster, False
        self._show_banner()
        matrix = self.matrix_view.refresh()
        self._redraw.flush()
        return matrix

    def show_tab(self, title: str) -> None:
        self.tabs.selected_index = TABS.index(title)

    def close(self) -> None:
        """Stop live probing and close every widget of the panel."""
        if getattr(self, "flows_view", None) is not None:  # its flow log stops (and disarms every node)
            self.flows_view.close()
        if getattr(self, "live", None) is not None:  # absent when __init__ failed early
            self.live.close()
        if getattr(self, "_redraw", None) is not None:
            self._redraw.cancel()
        if getattr(self, "_scheduled", None) is not None:
            self._scheduled.cancel()
            self._scheduled = None
        listeners = getattr(getattr(self, "lab", None), "change_listeners", None)
        if listeners is not None and getattr(self, "_listener", None) in listeners:
            listeners.remove(self._listener)
        for child in self.children:
            close_all(child)
        super().close()

    # ------------------------------------------------------------ flow
    def _show_banner(self) -> None:
        stale = ""
        if self.stale:
            then = ("refreshing as soon as the cell is done" if self.auto_refresh and self._scheduled is not None
                    else "press Refresh")
            stale = (f"<div class='labkit-stale' style='color:#9a6700'><b>The lab changed since this view</b>: "
                     f"{then}.</div>")
        self.banner.value = self._banner() + stale
        set_classes(self.banner, "labkit-banner", "labkit-header", "simulated" if self.lab.simulated else "real",
                    "stale" if self.stale else "")

    def _lab_changed(self, _changes: Any = None) -> None:
        """A change-listener of the lab: mark the view stale, refresh when the kernel is free."""
        if self.lab.cluster is self._shown:
            return
        loop = running_loop()
        home = self._home_loop
        if loop is None and home is not None and home.is_running():  # another thread changed the lab:
            home.call_soon_threadsafe(self._lab_changed, _changes)     # widgets are updated on the kernel's
            return                                                      # own loop, never from that thread
        self.stale = True
        if self.auto_refresh and loop is not None and self._scheduled is None:
            self._scheduled = loop.call_soon(self._scheduled_refresh)
        self._show_banner()
        if self.auto_refresh and loop is None:  # a script or a test: no loop to wait for
            self.refresh()

    def _scheduled_refresh(self) -> None:
        self._scheduled = None
        if self.stale and self.lab.cluster is not self._shown:
            guard(self.refresh, self.errors, "refreshing after a change")()

    def _banner(self) -> str:
        lab = self.lab
        where = f"lab <b>{html.escape(lab.name)}</b>, {lab.cluster.node_count} node(s)"
        if lab.simulated:
            return (f"<div><b>SIMULATED</b>: results come from the oracle, not from real packets "
                    f"({where}).<br><small>{html.escape(lab.notice)}</small></div>")
        return f"<div><b>{html.escape(lab.backend_name)}: real packets</b> ({where}): every cell is a real " \
               "connection attempt between pods.</div>"

    def _changed(self) -> None:
        self.refresh()

    def _live_result(self, matrix: Matrix) -> None:
        if (matrix.port, matrix.protocol) != (self.matrix_view.port, self.matrix_view.protocol):
            return  # the selection changed while this round was in flight
        self.matrix_view.show(matrix)

    def _matrix_shown(self, matrix: Matrix) -> None:
        selection = (self.matrix_view.port, self.matrix_view.protocol)
        if selection != self._selection:  # the learner picked another port: live and Explain follow
            self._selection = selection
            self.live.port, self.live.protocol = selection
            self.explain_view.port_input.value, self.explain_view.protocol_input.value = selection
        for view in (self.policies, self.services, self.explain_view):
            view.refresh()  # cheap when the lab did not change
        self._redraw(matrix)

    def _draw(self, matrix: Matrix) -> None:
        cluster = self.lab.cluster
        key = (id(cluster), tuple(matrix.pods), tuple(matrix.observed), tuple(matrix.expected), matrix.port,
               matrix.protocol, matrix.source)
        if key == self._drawn_key and self._layout_for is cluster:
            return
        from labkit.viz import compute_layout, png, topology_figure  # noqa: PLC0415 - matplotlib on demand
        from labkit.viz.layout import node_port_numbers  # noqa: PLC0415

        options = dict(self.topology_options)
        if options.get("only") == "changes":
            if self._previous is None:  # nothing changed since the panel opened: every arrow is news
                options.pop("only")
            else:
                options["previous"] = self._previous
        wiring = bool(options.get("wiring", False))
        internet = options.get("internet")
        if internet is None:
            internet = bool(node_port_numbers(cluster, self.include_system))
        if self._layout_for is not cluster:  # positions are computed once per state of the lab
            self._layout = compute_layout(cluster, self.include_system, wiring=wiring, internet=internet)
            self._layout_for = cluster
        self.topology.value = png(topology_figure(self.lab, matrix, layout=self._layout,
                                                  include_system=self.include_system, **options))
        self._drawn_key = key
        self.drawn += 1
