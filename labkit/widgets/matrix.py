"""The reachability matrix as a grid of buttons: observed results, the oracle, and why.

Owns ``MatrixView``: one button per (source, destination) pod pair with CSS classes
``labkit-cell`` + ``allow``/``deny`` (+ ``differs`` where the observation disagrees with
the oracle); a header with observed vs expected counts and where the results come from
(real packets or the simulation); port and protocol selectors; and the explanation
(``lab.explain``) of the cell that was clicked.
"""
from __future__ import annotations

import html
import re
from typing import Any, Callable

import ipywidgets as W

from labkit.probe.matrix import Matrix
from labkit.widgets.common import ErrorArea, css_widget, guard, pre, replace_children, set_classes


# A ReplicaSet's pod: <deployment>-<pod-template-hash>-<5 random characters>.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_REPLICA = re.compile(rf"^(?P<owner>.+)-{_SAFE}{{6,10}}-(?P<suffix>{_SAFE}{{5}})$")


def short_name(name: str, limit: int = 12) -> str:
    """A pod name short enough for a column header: a replica keeps its Deployment and its
    random suffix (``web-…x7k2p``), other long names their start and end."""
    m = _REPLICA.match(name)
    if m:
        owner = m["owner"] if len(m["owner"]) <= limit - 6 else m["owner"][:limit - 7] + "…"
        return f"{owner}-…{m['suffix']}"
    if len(name) <= limit:
        return name
    keep = (limit - 1) // 2
    return name[:keep] + "…" + name[-(limit - 1 - keep):]


def column_heads(pods: list[str], limit: int = 12) -> dict[str, str]:
    """``{ref: header HTML}``: namespace over the (shortened) name, the full ref as the title
    attribute (shown on hover); a name whose short form is ambiguous is shown whole."""
    shorts = {ref: short_name(ref.split("/", 1)[-1], limit) for ref in pods}
    taken: dict[tuple[str, str], int] = {}
    for ref, short in shorts.items():
        key = (ref.split("/", 1)[0], short)
        taken[key] = taken.get(key, 0) + 1
    out = {}
    for ref in pods:
        namespace, name = ref.split("/", 1) if "/" in ref else ("", ref)
        short = shorts[ref] if taken[(namespace, shorts[ref])] == 1 else name
        out[ref] = (f"<div class='labkit-colhead' title='{html.escape(ref, quote=True)}' style='text-align:center;"
                    f"line-height:1.15;font-size:0.85em;overflow-wrap:anywhere'><span style='color:#57606a'>"
                    f"{html.escape(namespace)}/</span><br><b>{html.escape(short)}</b></div>")
    return out


class MatrixView(W.VBox):
    """``refresh()`` probes (``lab.matrix``, blocking) and shows the result; ``show(matrix)``
    shows a given Matrix; clicking a cell calls ``explain(src, dst)``.

    Attributes: ``matrix`` (the Matrix shown), ``cells`` ({(src, dst): Button}), ``header``,
    ``explanation`` (HTML, class ``labkit-explain``), ``port_input``, ``protocol_input``,
    ``refresh_button``. ``on_matrix(matrix)`` listeners run after every ``show``.
    """

    def __init__(self, lab: Any, port: int = 80, protocol: str = "TCP", *, errors: ErrorArea | None = None,
                 on_matrix: Callable[[Matrix], None] | None = None, probe: bool = True):
        self.lab = lab
        own_errors = errors is None
        self.errors = errors if errors is not None else ErrorArea(lab)
        self.listeners: list[Callable[[Matrix], None]] = [on_matrix] if on_matrix else []
        self.matrix: Matrix | None = None
        self.cells: dict[tuple[str, str], W.Button] = {}
        self._pods: list[str] | None = None
        self.port_input = W.IntText(value=port, description="port", layout=W.Layout(width="11em"),
                                    style={"description_width": "3em"})
        self.protocol_input = W.Dropdown(options=["TCP", "UDP", "SCTP"], value=protocol, description="protocol",
                                         layout=W.Layout(width="13em"), style={"description_width": "5em"})
        self.refresh_button = W.Button(description="Probe again", icon="refresh", layout=W.Layout(width="auto"))
        set_classes(self.refresh_button, "labkit-refresh")
        self.header = W.HTML()
        set_classes(self.header, "labkit-matrix-header")
        self.grid = W.GridBox(layout=W.Layout(grid_gap="2px"))
        set_classes(self.grid, "labkit-matrix")
        self.explanation = W.HTML("<i>click a cell to see why it is allowed or denied</i>")
        set_classes(self.explanation, "labkit-explain")
        self.refresh_button.on_click(guard(lambda _b: self.refresh(), self.errors, "probing the matrix"))
        for w in (self.port_input, self.protocol_input):
            w.observe(guard(lambda _c: self.refresh(), self.errors, "probing the matrix"), names="value")
        children = [css_widget(), W.HBox([self.port_input, self.protocol_input, self.refresh_button]),
                    self.header, self.grid, self.explanation]
        super().__init__(children + ([self.errors] if own_errors else []))
        set_classes(self, "labkit-matrix-view")
        if probe:
            self.refresh()

    @property
    def port(self) -> int:
        return self.port_input.value

    @property
    def protocol(self) -> str:
        return self.protocol_input.value

    def refresh(self) -> Matrix:
        """Probe every pod pair now (blocking: one round of ``lab.matrix``) and show it."""
        matrix = self.lab.matrix(port=self.port, protocol=self.protocol)
        self.show(matrix)
        return matrix

    def _build(self, pods: list[str]) -> None:
        self._pods = list(pods)
        n = len(pods)
        self.grid.layout.grid_template_columns = f"max-content repeat({n}, minmax(2.6em, max-content))"
        corner = W.HTML("<small>from \\ to</small>")
        heads = [W.HTML(head, tooltip=ref) for ref, head in column_heads(pods).items()]
        self.cells = {}
        children: list[W.Widget] = [corner, *heads]
        for src in pods:
            children.append(W.Label(src, layout=W.Layout(justify_content="flex-end")))
            for dst in pods:
                button = W.Button(layout=W.Layout(width="auto", height="2em"))
                button.on_click(guard(lambda _b, s=src, d=dst: self.explain(s, d), self.errors,
                                      f"explaining {src} -> {dst}"))
                self.cells[(src, dst)] = button
                children.append(button)
        replace_children(self.grid, children)

    def show(self, matrix: Matrix) -> None:
        """Show ``matrix`` (rebuilding the grid only when the pods changed)."""
        if matrix.pods != self._pods:
            self._build(matrix.pods)
        self.matrix = matrix
        for (src, dst), button in self.cells.items():
            ok, exp = matrix.allowed(src, dst), matrix.expected_allowed(src, dst)
            differs = ok != exp
            desc = ("✓" if ok else "✗") + ("!" if differs else "")
            tip = f"{src} -> {dst}: {'allowed' if ok else 'denied'}" + (
                f" (the oracle expected {'allowed' if exp else 'denied'})" if differs else "") + "; click: why?"
            if button.description != desc:
                button.description = desc
            if button.tooltip != tip:
                button.tooltip = tip
            style = "success" if ok else "danger"
            if button.button_style != style:
                button.button_style = style
            set_classes(button, "labkit-cell", "allow" if ok else "deny", "differs" if differs else "")
        self.header.value = self._header(matrix)
        for listener in list(self.listeners):
            listener(matrix)

    def _header(self, matrix: Matrix) -> str:
        n = len(matrix.pods)
        if not n:
            return "<i>no pods yet: apply some Pods (or a Deployment) to see who can reach whom</i>"
        expected = sum(bin(row).count("1") for row in matrix.expected)
        diffs = matrix.differences()
        if matrix.source == "observed":
            origin = f"<b>observed</b> with real packets ({html.escape(self.lab.backend_name)} backend)"
        else:
            origin = "<b>SIMULATED</b>: computed by the oracle, no packets were sent"
        diff = (f"<b style='color:#bf8700'>{len(diffs)} cell(s) differ from the oracle (marked !)</b>"
                if diffs else "observed = expected")
        return (f"<div><b>{matrix.port}/{matrix.protocol}</b>, rows = from, columns = to; {origin}<br>"
                f"observed: {matrix.count_allowed} of {n * n} allowed &middot; expected (oracle): {expected} "
                f"allowed &middot; {diff}</div>")

    def explain(self, src: str, dst: str) -> Any:
        """Show (and return) ``lab.explain(src, dst, port, protocol)`` for one cell."""
        port = self.matrix.port if self.matrix else self.port
        protocol = self.matrix.protocol if self.matrix else self.protocol
        explanation = self.lab.explain(src, dst, port, protocol)
        seen = ""
        if self.matrix is not None and src in self.matrix.pods and dst in self.matrix.pods:
            ok = self.matrix.allowed(src, dst)
            result = self.matrix.results.get((src, dst))
            error = f" ({result.error})" if result is not None and result.error else ""
            kind = "simulated" if self.matrix.simulated else "observed"
            seen = f"{kind}: {'allowed' if ok else 'denied'}{error}"
            if ok != explanation.allowed:
                seen += " - this differs from the oracle: a bug, or a lesson (e.g. conntrack kept an old flow)"
        verdict = "#1a7f37" if explanation.allowed else "#cf222e"
        self.explanation.value = (f"<div style='border-left:4px solid {verdict};padding-left:6px'>"
                                  f"{pre(str(explanation))}<small>{html.escape(seen)}</small></div>")
        return explanation
