"""The NetworkPolicy editor: a form with presets, a YAML editor, and the current policies.

Owns the learner's path from intent to manifest: the form (which pods, direction,
allowed peers, ports) builds a NetworkPolicy whose YAML and meaning are shown live;
"Use in editor" (or a preset) copies that YAML into the editor, where it can be edited,
validated and applied. Changes go through ``lab.apply`` and ``lab.delete`` only.
"""
from __future__ import annotations

from typing import Any, Callable

import ipywidgets as W

from labkit.errors import ModelError
from labkit.model.manifests import parse_document
from labkit.semantics import policy as pol
from labkit.widgets import forms
from labkit.widgets.common import (ErrorArea, ObjectEditor, css_widget, guard, namespace_options, pre,
                                   replace_children, set_classes)
from labkit.widgets.yaml_editor import YamlEditor, escape, object_row

CUSTOM = "(custom)"


def describe_policy(obj: Any) -> list[str]:
    """A NetworkPolicy model object in sentences: what it selects, isolates and allows."""
    lines = [f"selects pods with {obj.pod_selector} in namespace {obj.namespace}; "
             f"isolates them for {' and '.join(obj.policy_types)}"]
    for direction in ("Ingress", "Egress"):
        if direction not in obj.policy_types:
            continue
        rules = obj.ingress if direction == "Ingress" else obj.egress
        if not rules:
            lines.append(f"no {direction.lower()} rules: all {direction.lower()} of those pods is denied "
                         "(unless another policy allows it)")
        lines += [f"{direction.lower()} rule {i}: allows {pol.describe_rule(r, obj, direction.lower())}"
                  for i, r in enumerate(rules)]
    return lines


class PolicyEditor(ObjectEditor):
    """Form + presets + YAML editor + list of policies with Delete buttons.

    ``on_change()`` runs after every successful apply or delete. Attributes: the form
    fields (``namespace``, ``name``, ``pods``, ``direction``, ``peer_pods``,
    ``peer_namespaces``, ``ports``, ``preset``), ``preview`` (HTML, ``labkit-generated``),
    ``use_button`` (``labkit-generate``), ``editor`` (a ``YamlEditor``), ``policy_list``.
    """

    KIND = "networkpolicy"

    def __init__(self, lab: Any, on_change: Callable[[], None] | None = None, *, errors: ErrorArea | None = None):
        self.lab, self.on_change = lab, on_change
        own_errors = errors is None
        self.errors = errors if errors is not None else ErrorArea(lab)
        wide = W.Layout(width="32em")
        style = {"description_width": "10em"}
        self.preset = W.Dropdown(options=[CUSTOM, *forms.PRESETS], value=CUSTOM, description="preset",
                                 style=style)
        self.namespace = W.Dropdown(options=namespace_options(lab), description="namespace", style=style)
        self.name = W.Text(value="my-policy", description="name", style=style, layout=wide)
        self.pods = W.Text(description="which pods", placeholder="app=web   (empty: every pod in the namespace)",
                           style=style, layout=wide)
        self.direction = W.ToggleButtons(options=["Ingress", "Egress"], description="direction", style=style)
        self.peer_pods = W.Text(description="allow pods", style=style, layout=wide,
                                placeholder="role=frontend   (* = any pod; empty + no namespaces = nobody)")
        self.peer_namespaces = W.Text(description="in namespaces", style=style, layout=wide,
                                      placeholder="team=a   (* = any namespace; empty = this namespace)")
        self.ports = W.Text(description="on ports", placeholder="80/TCP, 53/UDP   (empty: every port)",
                            style=style, layout=wide)
        self.preview = W.HTML()
        set_classes(self.preview, "labkit-generated")
        self.use_button = W.Button(description="Use in editor", icon="arrow-down",
                                   tooltip="copy the generated YAML into the editor below")
        set_classes(self.use_button, "labkit-generate")
        self.editor = YamlEditor(lab, errors=self.errors, on_apply=lambda _c: self._changed(),
                                 kind_class="labkit-policy-yaml",
                                 placeholder="apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n...")
        self._seen: Any = None
        self.policy_list = W.VBox()
        set_classes(self.policy_list, "labkit-policy-list")
        self._fields = (self.namespace, self.name, self.pods, self.direction, self.peer_pods,
                        self.peer_namespaces, self.ports)
        for w in self._fields:
            w.observe(guard(lambda _c: self.update_preview(), self.errors, "building the policy"), names="value")
        self.preset.observe(guard(self._preset_chosen, self.errors, "choosing a preset"), names="value")
        self.use_button.on_click(guard(lambda _b: self.use_form(), self.errors, "building the policy"))
        form = W.VBox([self.preset, *self._fields, W.HBox([self.use_button]), self.preview])
        children = [css_widget(), W.HTML("<b>Build a NetworkPolicy</b>"), form,
                    W.HTML("<b>YAML</b> (edit freely, then Validate or Apply)"), self.editor,
                    W.HTML("<b>Policies in the lab</b>"), self.policy_list]
        super().__init__(children + ([self.errors] if own_errors else []))
        set_classes(self, "labkit-policy-editor")
        self.refresh()
        self.update_preview()

    # ------------------------------------------------------------ form
    def manifest(self) -> dict:
        """The NetworkPolicy the form describes (ModelError if a field cannot be read)."""
        return forms.policy_manifest(self.namespace.value or "default", self.name.value.strip(),
                                     self.pods.value, self.direction.value, self.peer_pods.value,
                                     self.peer_namespaces.value, self.ports.value)

    def update_preview(self) -> None:
        try:
            doc = self.manifest()
            meaning = describe_policy(parse_document(doc))
        except ModelError as exc:
            self.preview.value = f"<div style='color:#cf222e'>the form is not a valid policy yet:{pre(str(exc))}</div>"
            return
        items = "".join(f"<li>{escape(line)}</li>" for line in meaning)
        self.preview.value = f"<ul>{items}</ul>{pre(forms.to_yaml(doc))}"

    def use_form(self) -> str:
        """Copy the form's manifest into the YAML editor; returns the YAML."""
        text = forms.to_yaml(self.manifest())
        self.editor.set_yaml(text)
        return text

    def _preset_chosen(self, change: dict) -> None:
        values = forms.PRESETS.get(change["new"])
        if values is None:
            return
        for key, value in values.items():
            getattr(self, key).value = value
        self.update_preview()
        self.use_form()

    # ------------------------------------------------------------ lab state
    def refresh(self) -> None:
        """Re-read namespaces and policies from the lab (after changes made in code)."""
        self._refresh_namespaces()
        cluster = self.lab.cluster
        if cluster is self._seen:
            return
        self._seen = cluster
        rows = []
        for ref, obj in sorted(cluster.policies.items()):
            selected = [p for p, pod in sorted(cluster.pods.items())
                        if pod.namespace == obj.namespace and obj.pod_selector.matches(pod.labels)]
            text = (f"<code>{escape(ref)}</code> {escape(', '.join(obj.policy_types))}: selects "
                    f"{escape(', '.join(selected) or 'no pod yet')}<br><small>"
                    + "<br>".join(escape(line) for line in describe_policy(obj)[1:]) + "</small>")
            rows.append(object_row(text, lambda ref=ref: self.delete(ref), self.errors, f"policy {ref}"))
        replace_children(self.policy_list, rows or [W.HTML("<i>no NetworkPolicy yet: every pod accepts and sends "
                                                    "everything</i>")])
