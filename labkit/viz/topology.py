"""The topology picture: a networkx graph of the lab drawn on a matplotlib ``Figure``.

Owns ``topology_graph`` (pods, Services, endpoint and probe edges as a ``DiGraph`` with
plain attributes, handy for tests and custom drawings), ``topology_figure`` (that graph
drawn on the fixed grid of ``labkit.viz.layout``) and ``png``/``svg`` (Figure -> bytes).
Only the Figure API is used: no pyplot, so nothing leaks between redraws.
"""
from __future__ import annotations

import io
from typing import Any

import networkx as nx
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from labkit.errors import LabkitError
from labkit.model.cluster import Cluster
from labkit.probe.matrix import Matrix
from labkit.semantics import policy as pol
from labkit.semantics import services as svc
from labkit.viz.layout import ROW, Layout, compute_layout, shown_pods, shown_services

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
           "#bab0ac", "#e15759"]
ALLOWED, DENIED, DIFFERS = "#1a7f37", "#cf222e", "#bf8700"
INGRESS_RING, EGRESS_RING = "#24292f", "#8250df"
POD_SIZE, RING_SIZE = 760, 1500  # marker areas in points^2


def _cluster_of(source: Any) -> tuple[Cluster, Any]:
    if isinstance(source, Cluster):
        return source, None
    cluster = getattr(source, "cluster", None)
    if isinstance(cluster, Cluster):
        return cluster, source
    raise LabkitError(f"topology needs a labkit.Lab or a Cluster, not {type(source).__name__}")


def topology_graph(source: Any, matrix: Matrix | None = None, *, include_system: bool = False,
                   layout: Layout | None = None) -> nx.DiGraph:
    """The lab as a graph: pod and Service nodes (with ``pos``), endpoint and probe edges.

    Pod nodes carry ``namespace``, ``node``, ``ip``, ``ingress_isolated``/``egress_isolated``
    (the refs of the policies that isolate them); probe edges carry ``allowed``,
    ``expected`` and ``differs``. Service nodes are named ``svc:<ns>/<name>``.
    """
    cluster, _ = _cluster_of(source)
    layout = layout or compute_layout(cluster, include_system)
    g = nx.DiGraph()
    for ref in shown_pods(cluster, include_system):
        pod = cluster.pods[ref]
        g.add_node(ref, kind="pod", namespace=pod.namespace, node=cluster.node_of(ref),
                   ip=cluster.pod_ips.get(ref, "?"), ready=cluster.is_ready(ref), pos=layout.pods.get(ref, (0, 0)),
                   ingress_isolated=[p.ref for p in pol.selecting(cluster, pod, "Ingress")],
                   egress_isolated=[p.ref for p in pol.selecting(cluster, pod, "Egress")])
    for ref in shown_services(cluster, include_system):
        service = cluster.services[ref]
        kind = "headless" if service.headless else service.type
        g.add_node(f"svc:{ref}", kind="service", type=kind, ip=cluster.service_ips.get(ref),
                   ports=[f"{p.port}/{p.protocol}" for p in service.ports], pos=layout.services.get(ref, (0, 0)))
        for sport in service.ports:
            for e in svc.endpoints(cluster, service, sport):
                if e.pod in g and e.ready:
                    g.add_edge(f"svc:{ref}", e.pod, kind="endpoint", port=f"{e.port}/{e.protocol}")
    if matrix is not None:
        for src in matrix.pods:
            for dst in matrix.pods:
                if src == dst or src not in g or dst not in g:
                    continue  # a stale matrix may name pods deleted since
                ok, exp = matrix.allowed(src, dst), matrix.expected_allowed(src, dst)
                g.add_edge(src, dst, kind="probe", allowed=ok, expected=exp, differs=ok != exp)
    return g


def topology_figure(lab: Any, matrix: Matrix | None = None, *, seed: int = 0, include_system: bool = False,
                    layout: Layout | None = None, title: str | None = None) -> Figure:
    """Draw the lab (a ``Lab`` or a ``Cluster``), with probe edges when ``matrix`` is given.

    Pods are circles coloured by namespace, in one box per node; Services are diamonds
    linked by dashed lines to their ready endpoints; a black ring marks pods isolated for
    ingress and a dashed purple ring pods isolated for egress. Probe edges are green
    (allowed) or red (denied), with an amber halo where observation differs from the
    oracle. ``seed`` is accepted for API stability: the grid layout has no randomness.
    """
    cluster, owner = _cluster_of(lab)
    layout = layout or compute_layout(cluster, include_system)
    g = topology_graph(cluster, matrix, include_system=include_system, layout=layout)
    xmin, xmax, ymin, ymax = layout.extent
    fig = Figure(figsize=(min(16.0, max(6.5, (xmax - xmin) * 1.05 + 3.2)), max(3.8, (ymax - ymin) * 0.95 + 0.9)),
                 dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.axis("off")
    _draw_boxes(ax, layout)
    _draw_edges(ax, g)
    _draw_pods(ax, g, layout)
    _draw_services(ax, g)
    ax.set_title(title if title is not None else _title(cluster, owner, matrix), fontsize=10, loc="left")
    fig.legend(handles=_legend(layout, g, matrix is not None), loc="outside right upper", fontsize=8,
               frameon=False)
    return fig


def _title(cluster: Cluster, lab: Any, matrix: Matrix | None) -> str:
    head = f"lab {lab.name} ({'SIMULATED' if lab.simulated else lab.backend_name})" if lab is not None else "cluster"
    head += f": {cluster.node_count} node(s), {len(shown_pods(cluster))} pods, {len(cluster.policies)} policies"
    if matrix is None:
        return head
    n = len(matrix.pods)
    diffs = len(matrix.differences())
    return (f"{head}\n{matrix.port}/{matrix.protocol} {matrix.source}: {matrix.count_allowed} of {n * n} allowed"
            + (f", {diffs} differ from the oracle" if diffs else ""))


def _draw_boxes(ax: Any, layout: Layout) -> None:
    for box in layout.boxes:
        if box.kind == "node":
            ax.add_patch(FancyBboxPatch((box.x0, box.y0), box.x1 - box.x0, box.y1 - box.y0,
                                        boxstyle="round,pad=0.02,rounding_size=0.2", facecolor="#f6f8fa",
                                        edgecolor="#57606a", linewidth=1.4, zorder=0))
            ax.text(box.x0 + 0.15, box.y1 - 0.12, box.label, fontsize=8, va="top", color="#24292f", zorder=1)
        else:
            colour = PALETTE[layout.colour_index(box.namespace or "") % len(PALETTE)]
            ax.add_patch(FancyBboxPatch((box.x0, box.y0), box.x1 - box.x0, box.y1 - box.y0,
                                        boxstyle="round,pad=0.02,rounding_size=0.15", facecolor=colour,
                                        alpha=0.12, edgecolor=colour, linewidth=1.0, zorder=0.5))
            ax.text((box.x0 + box.x1) / 2, box.y1 - 0.08, box.label, fontsize=7.5, ha="center", va="top",
                    color=colour, fontweight="bold", zorder=1)


def _draw_edges(ax: Any, g: nx.DiGraph) -> None:
    for u, v, data in g.edges(data=True):
        a, b = g.nodes[u]["pos"], g.nodes[v]["pos"]
        if data["kind"] == "endpoint":
            bend = 0.0 if abs(a[0] - b[0]) > 0.5 else -0.25  # straight down would cross the column
            ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-", linestyle=(0, (4, 3)), color="#6e7781",
                                         connectionstyle=f"arc3,rad={bend}", linewidth=1.1, shrinkA=9,
                                         shrinkB=16, zorder=1.5))
            continue
        # pods of one column: bend further when a pod sits between the two ends
        skip = abs(a[0] - b[0]) < 0.5 and abs(a[1] - b[1]) > ROW * 1.5
        style = f"arc3,rad={0.45 if skip else 0.16}"
        if data["differs"]:
            ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-", connectionstyle=style, color=DIFFERS,
                                         linewidth=6, alpha=0.55, shrinkA=16, shrinkB=16, zorder=1.8))
        colour, width, alpha = (ALLOWED, 1.6, 0.9) if data["allowed"] else (DENIED, 1.0, 0.5)
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=11, connectionstyle=style,
                                     color=colour, linewidth=width, alpha=alpha, shrinkA=16, shrinkB=16,
                                     zorder=2))


def _draw_pods(ax: Any, g: nx.DiGraph, layout: Layout) -> None:
    pods = [n for n, d in g.nodes(data=True) if d["kind"] == "pod"]
    if not pods:
        xmin, xmax, ymin, ymax = layout.extent
        ax.text((xmin + xmax) / 2, (ymin + ymax) / 2, "no pods yet: lab.apply(...) some",
                ha="center", va="center", fontsize=9, color="#57606a")
        return
    for ref in pods:
        d = g.nodes[ref]
        x, y = d["pos"]
        colour = PALETTE[layout.colour_index(d["namespace"]) % len(PALETTE)]
        if d["egress_isolated"]:
            ax.scatter([x], [y], s=RING_SIZE, facecolors="none", edgecolors=EGRESS_RING, linewidths=1.8,
                       linestyles="--", zorder=3)
        ring = (INGRESS_RING, 3.0) if d["ingress_isolated"] else ("white", 1.0)
        ax.scatter([x], [y], s=POD_SIZE, c=[colour], edgecolors=ring[0], linewidths=ring[1],
                   alpha=1.0 if d["ready"] else 0.45, zorder=4)
        ax.text(x, y - 0.36, f"{ref}\n{d['ip']}" + ("" if d["ready"] else "\n(not ready)"), fontsize=7,
                ha="center", va="top", zorder=5,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})


def _draw_services(ax: Any, g: nx.DiGraph) -> None:
    for name, d in g.nodes(data=True):
        if d["kind"] != "service":
            continue
        x, y = d["pos"]
        ax.scatter([x], [y], s=520, marker="D", c="#ffffff", edgecolors="#0969da", linewidths=2.0, zorder=4)
        address = "headless" if d["type"] == "headless" else d["ip"]
        kind = "" if d["type"] in ("ClusterIP", "headless") else f" {d['type']}"
        ax.text(x, y + 0.32, f"svc {name[4:]}{kind}\n{address} {','.join(d['ports'])}", fontsize=7,
                ha="center", va="bottom", color="#0969da", zorder=5)


def _legend(layout: Layout, g: nx.DiGraph, probes: bool) -> list[Line2D]:
    shown = sorted({d["namespace"] for _, d in g.nodes(data=True) if d["kind"] == "pod"})
    handles = [Line2D([], [], marker="o", linestyle="", markersize=9, markeredgecolor="white",
                      markerfacecolor=PALETTE[layout.colour_index(ns) % len(PALETTE)], label=f"namespace {ns}")
               for ns in shown]
    handles += [
        Line2D([], [], marker="o", linestyle="", markersize=9, markerfacecolor="#d0d7de",
               markeredgecolor=INGRESS_RING, markeredgewidth=2.5, label="isolated for ingress"),
        Line2D([], [], marker="o", linestyle="", markersize=12, markerfacecolor="none",
               markeredgecolor=EGRESS_RING, markeredgewidth=1.5, label="isolated for egress (dashed ring)"),
    ]
    if any(d["kind"] == "service" for _, d in g.nodes(data=True)):
        handles += [Line2D([], [], marker="D", linestyle="", markersize=8, markerfacecolor="white",
                           markeredgecolor="#0969da", label="Service"),
                    Line2D([], [], color="#6e7781", linestyle=(0, (4, 3)), label="Service -> ready endpoint")]
    if probes:
        handles += [Line2D([], [], color=ALLOWED, linewidth=1.6, label="allowed"),
                    Line2D([], [], color=DENIED, linewidth=1.0, alpha=0.6, label="denied"),
                    Line2D([], [], color=DIFFERS, linewidth=6, alpha=0.55, label="differs from the oracle")]
    return handles


def png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for ``ipywidgets.Image`` or a file)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def svg(fig: Figure) -> bytes:
    """The figure as SVG bytes (crisper, larger)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg")
    return buf.getvalue()
