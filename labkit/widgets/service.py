"""The Service editor: a form, a YAML editor, and each Service with its endpoints.

Owns the Service side of the panel: the form builds a ClusterIP, NodePort or headless
Service (selector, port, targetPort, protocol); the list shows every Service's address
and ``lab.endpoints(...)``, ready or not, like ``kubectl get endpoints``. Changes go
through ``lab.apply`` and ``lab.delete`` only.
"""
from __future__ import annotations

from typing import Any, Callable

import ipywidgets as W

from labkit.errors import ModelError
from labkit.widgets import forms
from labkit.widgets.common import (ErrorArea, ObjectEditor, css_widget, guard, namespace_options, pre,
                                   replace_children, set_classes)
from labkit.widgets.yaml_editor import YamlEditor, escape, object_row

SYSTEM_SERVICES = ("kube-system/kube-dns", "default/kubernetes")


class ServiceEditor(ObjectEditor):
    """Form + YAML editor + list of Services with endpoints and Delete buttons.

    ``on_change()`` runs after every successful apply or delete. Attributes: the form
    fields (``namespace``, ``name``, ``selector``, ``port``, ``target_port``, ``protocol``,
    ``type``, ``node_port``), ``preview``, ``use_button``, ``editor``, ``service_list``.
    """

    KIND = "service"

    def __init__(self, lab: Any, on_change: Callable[[], None] | None = None, *, errors: ErrorArea | None = None):
        self.lab, self.on_change = lab, on_change
        own_errors = errors is None
        self.errors = errors if errors is not None else ErrorArea(lab)
        style = {"description_width": "10em"}
        wide = W.Layout(width="32em")
        self.namespace = W.Dropdown(options=namespace_options(lab), description="namespace", style=style)
        self.name = W.Text(value="web", description="name", style=style, layout=wide)
        self.selector = W.Text(value="app=web", description="selector", placeholder="app=web", style=style,
                               layout=wide)
        self.port = W.IntText(value=80, description="port", style=style)
        self.target_port = W.Text(description="targetPort", placeholder="8080 or a port name (empty: = port)",
                                  style=style, layout=wide)
        self.protocol = W.Dropdown(options=["TCP", "UDP", "SCTP"], description="protocol", style=style)
        self.type = W.Dropdown(options=["ClusterIP", "NodePort", "headless"], description="type", style=style)
        self.node_port = W.IntText(value=0, description="nodePort", tooltip="0: the lab picks one",
                                   style=style, layout=W.Layout(display="none"))
        self.preview = W.HTML()
        set_classes(self.preview, "labkit-generated")
        self.use_button = W.Button(description="Use in editor", icon="arrow-down")
        set_classes(self.use_button, "labkit-generate")
        self.editor = YamlEditor(lab, errors=self.errors, on_apply=lambda _c: self._changed(),
                                 kind_class="labkit-service-yaml", placeholder="apiVersion: v1\nkind: Service\n...")
        self._seen: Any = None
        self.service_list = W.VBox()
        set_classes(self.service_list, "labkit-service-list")
        fields = (self.namespace, self.name, self.selector, self.port, self.target_port, self.protocol, self.type,
                  self.node_port)
        for w in fields:
            w.observe(guard(lambda _c: self.update_preview(), self.errors, "building the Service"), names="value")
        self.use_button.on_click(guard(lambda _b: self.use_form(), self.errors, "building the Service"))
        children = [css_widget(), W.HTML("<b>Build a Service</b>"), W.VBox([*fields, self.use_button, self.preview]),
                    W.HTML("<b>YAML</b> (edit freely, then Validate or Apply)"), self.editor,
                    W.HTML("<b>Services and their endpoints</b>"), self.service_list]
        super().__init__(children + ([self.errors] if own_errors else []))
        set_classes(self, "labkit-service-editor")
        self.refresh()
        self.update_preview()

    def manifest(self) -> dict:
        return forms.service_manifest(self.namespace.value or "default", self.name.value.strip(),
                                      self.selector.value, self.port.value, self.target_port.value,
                                      self.protocol.value, self.type.value, self.node_port.value)

    def update_preview(self) -> None:
        self.node_port.layout.display = None if self.type.value == "NodePort" else "none"
        try:
            text = forms.to_yaml(self.manifest())
        except ModelError as exc:
            self.preview.value = f"<div style='color:#cf222e'>the form is not a valid Service yet:{pre(str(exc))}</div>"
            return
        self.preview.value = pre(text)

    def use_form(self) -> str:
        text = forms.to_yaml(self.manifest())
        self.editor.set_yaml(text)
        return text

    def refresh(self) -> None:
        """Re-read namespaces, Services and endpoints from the lab."""
        self._refresh_namespaces()
        cluster = self.lab.cluster
        if cluster is self._seen:
            return
        self._seen = cluster
        rows = []
        for ref, service in sorted(cluster.services.items()):
            ip = (f"(alias of {service.external_name})" if service.external
                  else cluster.service_ips.get(ref) or "None (headless)")
            ports = ", ".join(f"{p.port}/{p.protocol}" + (f"->{p.target_port}" if p.target_port is not None else "")
                              + (f" nodePort {p.node_port}" if p.node_port else "") for p in service.ports)
            selector = ",".join(f"{k}={v}" for k, v in (service.selector or {}).items()) or "(none)"
            text = (f"<code>{escape(ref)}</code> {escape(service.type)} {escape(ip)} {escape(ports)}; "
                    f"selector {escape(selector)}{pre(repr(self.lab.endpoints(ref)))}")
            if ref in SYSTEM_SERVICES:
                why = "the lab's cluster DNS" if ref.startswith("kube-system/") else "the API server's Service"
                rows.append(W.HTML(text + f"<small>({why}: cannot be deleted)</small>"))
            else:
                rows.append(object_row(text, lambda ref=ref: self.delete(ref), self.errors, f"Service {ref}"))
        replace_children(self.service_list, rows)
