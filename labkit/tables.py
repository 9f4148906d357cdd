"""``lab.get(kind)``: what ``kubectl get`` shows, as a value (rows and columns, text and HTML).

Owns the tables of pods (ready, IP, node, labels, ports), Services (type, ClusterIP, external
name, selector, ports with targetPort) and NetworkPolicies (pod selector, policy types) read from the lab's
model; the debugging steps of the course ("are the labels what the selector says?") use them.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from labkit.errors import ModelError
from labkit.model.cluster import Cluster

KINDS = {"pod": "pods", "pods": "pods", "po": "pods", "service": "services", "services": "services",
         "svc": "services", "networkpolicy": "policies", "networkpolicies": "policies", "netpol": "policies"}


@dataclass(frozen=True)
class Table:
    """Rows under a header, printed like ``kubectl get`` (``rows`` are tuples of strings)."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __repr__(self) -> str:
        if not self.rows:
            return "No resources found."
        widths = [max(len(r[i]) for r in (self.header, *self.rows)) for i in range(len(self.header))]
        return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (self.header, *self.rows))

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td><code>{html.escape(c)}</code></td>" for c in r) + "</tr>"
                       for r in self.rows)
        return f"<table class='labkit-get'><tr>{head}</tr>{body}</table>"


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def get(cluster: Cluster, kind: str, namespace: str | None = None) -> Table:
    """The objects of ``kind`` (pods, services, networkpolicies), of one namespace or all but kube-system."""
    store = KINDS.get(str(kind).lower()) if isinstance(kind, str) else None
    if store is None:
        raise ModelError(f"get({kind!r}): choose one of pods, services, networkpolicies", path="kind")
    if namespace is not None and namespace not in cluster.namespaces:
        raise ModelError(f"get({kind!r}, namespace={namespace!r}): no such namespace; the lab has "
                         f"{', '.join(sorted(cluster.namespaces))}", path="namespace")
    objects = [o for ref, o in sorted(getattr(cluster, store).items())
               if (o.namespace == namespace if namespace else o.namespace != "kube-system")]
    return {"pods": _pods, "services": _services, "policies": _policies}[store](cluster, objects)


def _pods(cluster: Cluster, pods: list[Any]) -> Table:
    rows = []
    for p in pods:
        ports = ",".join(f"{c.name}:{pt.container_port}/{pt.protocol}" + (f"({pt.name})" if pt.name else "")
                         for c in p.spec.containers for pt in c.ports) or "<none>"
        rows.append((p.ref, "yes" if cluster.is_ready(p.ref) else "no", cluster.pod_ips.get(p.ref, ""),
                     cluster.node_of(p.ref), ports, _labels(p.labels)))
    return Table(("POD", "READY", "IP", "NODE", "PORTS", "LABELS"), tuple(rows))


def _services(cluster: Cluster, services: list[Any]) -> Table:
    rows = []
    for s in services:
        ports = ",".join(f"{p.port}->{p.target}/{p.protocol}" + (f" nodePort {p.node_port}" if p.node_port else "")
                         for p in s.ports)
        selector = _labels(s.selector) if s.selector is not None else "<none>"
        rows.append((s.ref, s.type, cluster.service_ips.get(s.ref) or "None", s.external_name or "<none>",
                     selector, ports or "<none>"))
    return Table(("SERVICE", "TYPE", "CLUSTER-IP", "EXTERNAL-NAME", "SELECTOR", "PORT->TARGET"), tuple(rows))


def _policies(cluster: Cluster, policies: list[Any]) -> Table:
    rows = [(p.ref, "{" + str(p.pod_selector) + "}" if not p.pod_selector.empty else "{} (every pod)",
             ",".join(p.policy_types)) for p in policies]
    return Table(("NETWORKPOLICY", "POD-SELECTOR", "POLICY-TYPES"), tuple(rows))
