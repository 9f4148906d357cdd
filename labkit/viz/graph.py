"""The lab as a graph, and the readable views of it: filters and the namespace summary.

Owns ``topology_graph`` (pods, Services, endpoint and probe edges as a networkx ``DiGraph``
with plain attributes, handy for tests and custom drawings), what a red arrow means
(``why``: ``"policy"`` when nothing answered — a NetworkPolicy dropped the packet — or
``"refused"`` when the connection was refused at once: nothing listens on that port), the
filters (``focus`` on one pod, ``only`` denied / allowed / differs / changes since a
``previous`` matrix) and ``group="namespace"`` (one node per namespace, its pods' probe
results counted on one arrow per pair of namespaces).
"""
from __future__ import annotations

from typing import Any

import networkx as nx

from labkit.errors import LabkitError, ModelError
from labkit.model.cluster import Cluster, pod_ref
from labkit.probe.matrix import Matrix
from labkit.semantics import oracle
from labkit.semantics import policy as pol
from labkit.semantics import services as svc
from labkit.viz import colours as C
from labkit.viz.layout import Layout, compute_layout, shown_pods, shown_services

ONLY = ("denied", "allowed", "differs", "changes")
GROUPS = ("pod", "namespace")


def cluster_of(source: Any) -> tuple[Cluster, Any]:
    """``(cluster, lab)`` of a ``Lab`` (or ``(cluster, None)`` of a ``Cluster``)."""
    if isinstance(source, Cluster):
        return source, None
    cluster = getattr(source, "cluster", None)
    if isinstance(cluster, Cluster):
        return cluster, source
    raise LabkitError(f"topology needs a labkit.Lab or a Cluster, not {type(source).__name__}: "
                      "pass the lab itself, e.g. topology_figure(lab, lab.matrix())")


def check_options(matrix: Matrix | None, *, group: str, focus: str | None, only: str | None,
                  previous: Matrix | None) -> str | None:
    """Validate the view options (errors name the keyword and the fix); returns ``focus`` as a ref."""
    if group not in GROUPS:
        raise ModelError(f"group={group!r}: choose 'pod' (one circle per pod) or 'namespace' "
                         "(one box per namespace)", path="group")
    if only is not None and only not in ONLY:
        raise ModelError(f"only={only!r}: choose one of {', '.join(ONLY)} (or None for every arrow)", path="only")
    if only is not None and matrix is None:
        raise ModelError(f"only={only!r} filters probe arrows: pass a matrix too, e.g. "
                         "topology_figure(lab, lab.matrix(), only=...)", path="only")
    if only == "changes" and previous is None:
        raise ModelError("only='changes' compares with the matrix before the change: pass previous=<that matrix> "
                         "(before = lab.matrix(); lab.apply(...); topology_figure(lab, lab.matrix(), "
                         "only='changes', previous=before))", path="previous")
    if focus is None:
        return None
    ref = pod_ref(focus)
    if matrix is not None and ref not in matrix.pods:
        raise ModelError(f"focus={focus!r} is not a pod of the matrix (pods: {', '.join(matrix.pods) or 'none'})",
                         path="focus")
    return ref


def topology_graph(source: Any, matrix: Matrix | None = None, *, include_system: bool = False,
                   layout: Layout | None = None, previous: Matrix | None = None, focus: str | None = None,
                   only: str | None = None, group: str = "pod", services: list[str] | None = None) -> nx.DiGraph:
    """The lab as a graph: pod and Service nodes (with ``pos``), endpoint and probe edges.

    Pod nodes carry ``namespace``, ``node``, ``ip``, ``ingress_isolated``/``egress_isolated``
    (the refs of the policies that isolate them); probe edges carry ``allowed``, ``expected``,
    ``differs``, ``why`` (None, ``"policy"`` or ``"refused"``) and ``changed`` (None, ``"now
    allowed"``, ``"now denied"`` or ``"new"``; only with ``previous``). Service nodes are named
    ``svc:<ns>/<name>`` and carry ``colour`` (one per Service, the same whichever Services are
    shown). ``focus`` keeps the probe edges from and to one pod, ``only`` those of one kind;
    ``services`` keeps only those Services; ``group="namespace"`` returns the namespace summary
    (``namespace_graph``).
    """
    cluster, _ = cluster_of(source)
    focus = check_options(matrix, group=group, focus=focus, only=only, previous=previous)
    shown = shown_services(cluster, include_system, services)
    layout = layout or compute_layout(cluster, include_system, services=services)
    g = nx.DiGraph()
    for ref in shown_pods(cluster, include_system):
        pod = cluster.pods[ref]
        g.add_node(ref, kind="pod", namespace=pod.namespace, node=cluster.node_of(ref),
                   ip=cluster.pod_ips.get(ref, "?"), ready=cluster.is_ready(ref), pos=layout.pods.get(ref, (0, 0)),
                   ingress_isolated=[p.ref for p in pol.selecting(cluster, pod, "Ingress")],
                   egress_isolated=[p.ref for p in pol.selecting(cluster, pod, "Egress")], focus=ref == focus)
    every = shown_services(cluster, include_system)
    for ref in shown:
        service = cluster.services[ref]
        kind = "headless" if service.headless else service.type
        g.add_node(f"svc:{ref}", kind="service", type=kind, ip=cluster.service_ips.get(ref),
                   colour=C.service_colour(every.index(ref) if ref in every else len(every)),
                   ports=[f"{p.port}/{p.protocol}" for p in service.ports],
                   node_ports=[p.node_port for p in service.ports if p.node_port is not None],
                   pos=layout.services.get(ref, (0, 0)))
        for sport in service.ports:
            for e in svc.endpoints(cluster, service, sport):
                if e.pod in g and e.ready:
                    g.add_edge(f"svc:{ref}", e.pod, kind="endpoint", port=f"{e.port}/{e.protocol}")
    if matrix is not None:
        for src in matrix.pods:
            for dst in matrix.pods:
                if src == dst or src not in g or dst not in g:
                    continue  # a stale matrix may name pods deleted since
                if focus is not None and focus not in (src, dst):
                    continue
                edge = probe_edge(cluster, matrix, src, dst, previous)
                if keep(edge, only):
                    g.add_edge(src, dst, **edge)
    if group == "namespace":
        return namespace_graph(g, matrix, cluster, focus)
    return g


def probe_edge(cluster: Cluster, matrix: Matrix, src: str, dst: str, previous: Matrix | None) -> dict:
    ok, exp = matrix.allowed(src, dst), matrix.expected_allowed(src, dst)
    changed = None
    if previous is not None:
        if src not in previous.pods or dst not in previous.pods:
            changed = "new"
        elif previous.allowed(src, dst) != ok:
            changed = "now allowed" if ok else "now denied"
    return {"kind": "probe", "allowed": ok, "expected": exp, "differs": ok != exp,
            "why": None if ok else denial(cluster, matrix, src, dst), "changed": changed}


def denial(cluster: Cluster, matrix: Matrix, src: str, dst: str) -> str:
    """Why a denied cell is red: ``"refused"`` (answered at once: nothing listens, or rejected)
    or ``"policy"`` (no answer: dropped, as a NetworkPolicy does)."""
    result = matrix.results.get((src, dst))
    if result is not None and result.error:
        error = result.error
    else:
        error = oracle.to_pod(cluster, cluster.pods[src], cluster.pods[dst], matrix.port, matrix.protocol).error or ""
    return "refused" if "refused" in error else "policy"


def keep(edge: dict, only: str | None) -> bool:
    if only is None:
        return True
    return {"denied": not edge["allowed"], "allowed": edge["allowed"], "differs": edge["differs"],
            "changes": edge["changed"] is not None}[only]


def namespace_graph(g: nx.DiGraph, matrix: Matrix | None, cluster: Cluster, focus: str | None) -> nx.DiGraph:
    """One node ``ns:<name>`` per namespace (``pods``, ``within`` counts) and one edge per
    ordered pair with probe edges between their pods, counting ``allowed``, ``policy``
    (dropped), ``refused``, ``differs`` and ``changed``; Services and endpoint edges are left out."""
    out = nx.DiGraph()
    zero = {"allowed": 0, "policy": 0, "refused": 0, "differs": 0, "changed": 0}
    for name, d in g.nodes(data=True):
        if d["kind"] != "pod":
            continue
        ns = f"ns:{d['namespace']}"
        if ns not in out:
            out.add_node(ns, kind="namespace", namespace=d["namespace"], pods=[], within=dict(zero), focus=False)
        out.nodes[ns]["pods"].append(name)
        out.nodes[ns]["focus"] |= d["focus"]
    for u, v, d in g.edges(data=True):
        if d["kind"] != "probe":
            continue
        a, b = f"ns:{g.nodes[u]['namespace']}", f"ns:{g.nodes[v]['namespace']}"
        if a == b:
            counts = out.nodes[a]["within"]
        else:
            if not out.has_edge(a, b):
                out.add_edge(a, b, kind="probe", **zero)
            counts = out.edges[a, b]
        counts["allowed" if d["allowed"] else d["why"]] += 1
        counts["differs"] += d["differs"]
        counts["changed"] += d["changed"] is not None
    for _, _, d in out.edges(data=True):
        d["verdict"] = verdict(d)
    return out


def verdict(counts: dict) -> str:
    denied = counts["policy"] + counts["refused"]
    return "allowed" if not denied else ("denied" if not counts["allowed"] else "mixed")
