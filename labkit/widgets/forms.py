"""The editors' forms as pure functions: field text in, Kubernetes manifests out.

Owns the small languages of the form fields (label selectors like ``app=web, tier in
(a,b), !legacy``; ports like ``80/TCP, 53/UDP, 8000-8080``), the policy presets, and the
dry run that validates YAML against the lab's current model without changing anything.
No ipywidgets here, so all of it is tested without a browser.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from labkit.errors import ModelError
from labkit.model.cluster import Cluster
from labkit.model.manifests import load_documents, parse_document

DNS_NAMESPACE_SELECTOR = "kubernetes.io/metadata.name=kube-system"
DNS_POD_SELECTOR = "k8s-app=kube-dns"

# preset -> form values (namespace is kept from the form)
PRESETS: dict[str, dict[str, str]] = {
    "deny all ingress": {"name": "deny-all-ingress", "pods": "", "direction": "Ingress",
                         "peer_pods": "", "peer_namespaces": "", "ports": ""},
    "deny all egress": {"name": "deny-all-egress", "pods": "", "direction": "Egress",
                        "peer_pods": "", "peer_namespaces": "", "ports": ""},
    "allow DNS egress": {"name": "allow-dns-egress", "pods": "", "direction": "Egress",
                         "peer_pods": DNS_POD_SELECTOR, "peer_namespaces": DNS_NAMESPACE_SELECTOR,
                         "ports": "53/UDP, 53/TCP"},
}

_SET = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)$")
_EQ = re.compile(r"^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$")
_KEY = re.compile(r"^(!?)\s*([^\s!=(),]+)$")


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += ch
    terms.append(current.strip())
    return [t for t in terms if t]


def parse_selector(text: str, field: str) -> dict[str, Any] | None:
    """``"app=web, tier in (a,b)"`` -> a LabelSelector dict; ``""`` -> None; ``"*"`` -> ``{}`` (all)."""
    text = (text or "").strip()
    if not text:
        return None
    if text in ("*", "{}"):
        return {}
    labels: dict[str, str] = {}
    exprs: list[dict[str, Any]] = []
    for term in _split_terms(text):
        if m := _SET.match(term):
            values = [v.strip() for v in m.group(3).split(",") if v.strip()]
            if not values:
                raise ModelError(f"{term!r}: give at least one value inside the parentheses", path=field)
            exprs.append({"key": m.group(1), "operator": "In" if m.group(2) == "in" else "NotIn", "values": values})
        elif m := _EQ.match(term):
            key, op, value = m.groups()
            if op == "!=":
                exprs.append({"key": key, "operator": "NotIn", "values": [value]})
            else:
                labels[key] = value
        elif m := _KEY.match(term):
            exprs.append({"key": m.group(2), "operator": "DoesNotExist" if m.group(1) else "Exists"})
        else:
            raise ModelError(f"cannot read {term!r}: write key=value, key!=value, key, !key, "
                             "key in (a,b) or key notin (a,b), separated by commas", path=field)
    out: dict[str, Any] = {}
    if labels:
        out["matchLabels"] = labels
    if exprs:
        out["matchExpressions"] = exprs
    return out


def parse_labels(text: str, field: str) -> dict[str, str]:
    """``"app=web, tier=db"`` -> a plain label map (a Service selector allows nothing else)."""
    selector = parse_selector(text, field) or {}
    if "matchExpressions" in selector:
        raise ModelError("a Service selector is a plain map: write key=value pairs separated by commas",
                         path=field)
    return dict(selector.get("matchLabels", {}))


def parse_ports(text: str, field: str) -> list[dict[str, Any]]:
    """``"80/TCP, 53/UDP, 8000-8080, http"`` -> NetworkPolicy ports (protocol TCP by default)."""
    out = []
    for term in (t.strip() for t in (text or "").split(",")):
        if not term:
            continue
        port, _, protocol = term.partition("/")
        entry: dict[str, Any] = {"protocol": (protocol.strip() or "TCP").upper()}
        port = port.strip()
        if re.fullmatch(r"\d+\s*-\s*\d+", port):
            start, end = (int(p) for p in port.split("-"))
            entry.update(port=start, endPort=end)
        elif port.isdigit():
            entry["port"] = int(port)
        elif port and port not in ("*", "any"):
            entry["port"] = port  # a named port; the model checks the name
        out.append(entry)
    if not out and (text or "").strip():
        raise ModelError(f"cannot read ports {text!r}: write e.g. 80/TCP, 53/UDP, 8000-8080/TCP", path=field)
    return out


def policy_manifest(namespace: str, name: str, pods: str = "", direction: str = "Ingress",
                    peer_pods: str = "", peer_namespaces: str = "", ports: str = "") -> dict[str, Any]:
    """One NetworkPolicy from the form. Empty peers and ports: deny everything in ``direction``.

    ``peer_pods``/``peer_namespaces`` are selectors (``*`` = any); ports alone allow any peer
    on those ports; a namespace selector alone allows every pod of those namespaces.
    """
    if direction not in ("Ingress", "Egress"):
        raise ModelError(f"direction {direction!r}: choose Ingress or Egress", path="direction")
    spec: dict[str, Any] = {"podSelector": parse_selector(pods, "pods") or {}, "policyTypes": [direction]}
    peer: dict[str, Any] = {}
    pod_sel = parse_selector(peer_pods, "peer pods")
    ns_sel = parse_selector(peer_namespaces, "peer namespaces")
    if pod_sel is not None:
        peer["podSelector"] = pod_sel
    if ns_sel is not None:
        peer["namespaceSelector"] = ns_sel
    port_list = parse_ports(ports, "ports")
    if peer or port_list:
        rule: dict[str, Any] = {}
        if peer:
            rule["from" if direction == "Ingress" else "to"] = [peer]
        if port_list:
            rule["ports"] = port_list
        spec[direction.lower()] = [rule]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def service_manifest(namespace: str, name: str, selector: str, port: int, target_port: str = "",
                     protocol: str = "TCP", kind: str = "ClusterIP", node_port: int = 0) -> dict[str, Any]:
    """One Service from the form; ``kind`` is ClusterIP, NodePort or headless."""
    if kind not in ("ClusterIP", "NodePort", "headless"):
        raise ModelError(f"type {kind!r}: choose ClusterIP, NodePort or headless", path="type")
    entry: dict[str, Any] = {"port": port, "protocol": protocol}
    target = (target_port or "").strip()
    if target:
        entry["targetPort"] = int(target) if target.isdigit() else target
    if kind == "NodePort" and node_port:
        entry["nodePort"] = node_port
    spec: dict[str, Any] = {"selector": parse_labels(selector, "selector"), "ports": [entry]}
    if kind == "headless":
        spec["clusterIP"] = "None"
    else:
        spec["type"] = kind
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def to_yaml(doc: dict[str, Any] | list[dict[str, Any]]) -> str:
    if isinstance(doc, list):
        return yaml.safe_dump_all(doc, sort_keys=False)
    return yaml.safe_dump(doc, sort_keys=False)


def dry_run(cluster: Cluster, text: str) -> list[str]:
    """What applying YAML ``text`` would do (``["networkpolicy/x/deny created"]``), or ModelError.

    The lab is not touched: the documents are parsed and applied to a copy of its model.
    """
    docs = load_documents(text + "\n")  # never read as a file name
    if not docs:
        raise ModelError("nothing to apply: the editor is empty")
    _, changes = cluster.applied(parse_document(doc, i) for i, doc in enumerate(docs))
    return [str(c) for c in changes]
