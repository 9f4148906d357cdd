"""The Explain tab: pick a source pod and any destination, read the oracle's reasons, walk the packet.

Owns ``ExplainView``: a source pod, a destination (pod ref, Service DNS name, IP; the
suggestions list the lab's pods and Services), port and protocol, the sentences of
``lab.explain`` naming the policy and rule that decided, and beside them the packet walk of
``lab.trace`` (the kernel's hops, or the oracle's on sim), flagged where the two differ.
"""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from labkit.model import addressing as addr
from labkit.widgets.common import ErrorArea, css_widget, guard, pre, set_classes


class ExplainView(W.VBox):
    """``explain()`` (also the button, class ``labkit-explain-button``) fills ``output``
    (HTML, class ``labkit-explain``); ``refresh()`` re-reads the pods and Services."""

    def __init__(self, lab: Any, port: int = 80, protocol: str = "TCP", *, errors: ErrorArea | None = None):
        self.lab = lab
        own_errors = errors is None
        self.errors = errors if errors is not None else ErrorArea(lab)
        style = {"description_width": "6em"}
        self.src = W.Dropdown(description="from pod", style=style)
        self.dst = W.Combobox(description="to", placeholder="pod (x/b), Service name (web.x), or an IP",
                              ensure_option=False, style=style, layout=W.Layout(width="30em"))
        self.port_input = W.IntText(value=port, description="port", style=style, layout=W.Layout(width="12em"))
        self.protocol_input = W.Dropdown(options=["TCP", "UDP", "SCTP"], value=protocol, description="protocol",
                                         style=style, layout=W.Layout(width="14em"))
        self.button = W.Button(description="Explain", icon="question", button_style="info")
        set_classes(self.button, "labkit-explain-button")
        self.trace_button = W.Button(description="Trace the packet", icon="road", button_style="",
                                     tooltip="make one connection and show each rule the kernel applied to it")
        set_classes(self.trace_button, "labkit-trace-button")
        self.walk_output = W.HTML()
        set_classes(self.walk_output, "labkit-walk-output")
        self.output = W.HTML()
        set_classes(self.output, "labkit-explain")
        self.button.on_click(guard(lambda _b: self.explain(), self.errors, "explaining"))
        self.trace_button.on_click(guard(lambda _b: self.trace(), self.errors, "tracing the packet"))
        self._seen: Any = None
        children = [css_widget(), W.HTML("Why can (or can't) one pod reach a destination? The oracle names the "
                                         "policy and the rule that decided."),
                    self.src, self.dst, W.HBox([self.port_input, self.protocol_input]),
                    W.HBox([self.button, self.trace_button]), self.output, self.walk_output]
        super().__init__(children + ([self.errors] if own_errors else []))
        set_classes(self, "labkit-explain-view")
        self.refresh()

    def refresh(self) -> None:
        cluster = self.lab.cluster
        if cluster is self._seen:
            return
        self._seen = cluster
        pods = list(self.lab.pods)
        if list(self.src.options) != pods:
            keep = self.src.value
            self.src.options = pods
            if keep in pods:
                self.src.value = keep
        if self.src.value is None and pods:  # start with a source chosen: one click gives an answer
            self.src.value = pods[0]
        names = [f"{ref.split('/')[1]}.{ref.split('/')[0]}" for ref in sorted(cluster.services)]
        self.dst.options = tuple(pods + names + [addr.INTERNET_HOST_IP])
        if not self.dst.value and len(pods) > 1:
            self.dst.value = next(p for p in pods if p != self.src.value)

    def explain(self, src: str | None = None, dst: str | None = None) -> Any:
        """Explain ``src -> dst`` (default: the form's values); shows and returns the Explanation."""
        src = src or self.src.value
        dst = (dst or self.dst.value or "").strip()
        if not src or not dst:
            self.output.value = "<i>choose a source pod and a destination first</i>"
            return None
        explanation = self.lab.explain(src, dst, self.port_input.value, self.protocol_input.value)
        colour = "#1a7f37" if explanation.allowed else "#cf222e"
        self.output.value = (f"<div style='border-left:4px solid {colour};padding-left:6px'>"
                             f"{pre(str(explanation))}</div>")
        if explanation.may_answer and len(explanation.may_answer) > 1:
            self.output.value += f"<small>may answer: {html.escape(', '.join(explanation.may_answer))}</small>"
        return explanation

    def trace(self, src: str | None = None, dst: str | None = None) -> Any:
        """Walk one packet ``src -> dst`` (default: the form's values) through the kernel's rules, beside
        the explanation; shows and returns the Walk."""
        explanation = self.explain(src, dst)
        if explanation is None:
            return None
        self.walk_output.value = "<i>tracing one connection...</i>"
        walk = self.lab.trace(src or self.src.value, (dst or self.dst.value).strip(), self.port_input.value,
                              self.protocol_input.value)
        self.walk_output.value = walk._repr_html_()
        return walk

