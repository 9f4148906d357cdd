"""The topology picture: the graph of ``labkit.viz.graph`` drawn on a matplotlib ``Figure``.

Owns ``topology_figure`` (pods in their node boxes on the fixed grid of ``labkit.viz.layout``,
or one box per namespace; optional bridges and veths, the internet host and NodePorts; a
legend that lists what each colour and line style in the picture means, and nothing that is
not drawn) and ``png``/``svg`` (Figure ->
bytes). Only the Figure API is used: no pyplot, so nothing leaks between redraws.
"""
from __future__ import annotations

import io
from typing import Any

import networkx as nx
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from labkit.dataplane import names
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.probe.matrix import Matrix
from labkit.viz import colours as C
from labkit.viz.graph import check_options, cluster_of, topology_graph
from labkit.viz.layout import (
    COLUMN, NAMESPACE_TOP, ROW, Layout, compute_layout, namespace_positions, node_port_numbers, shown_pods,
)

__all__ = ["png", "svg", "topology_figure", "topology_graph"]
POD_SIZE, RING_SIZE = 760, 1500  # marker areas in points^2
BUSY = 30  # probe arrows above which the title suggests a filter


def topology_figure(lab: Any, matrix: Matrix | None = None, *, seed: int = 0, include_system: bool = False,
                    layout: Layout | None = None, title: str | None = None, group: str = "pod",
                    focus: str | None = None, only: str | None = None, previous: Matrix | None = None,
                    wiring: bool = False, internet: bool | None = None,
                    services: list[str] | None = None) -> Figure:
    """Draw the lab (a ``Lab`` or a ``Cluster``), with probe arrows when ``matrix`` is given.

    Pods are circles coloured by namespace (the same colour in every notebook), in one box
    per node; Services are diamonds linked by dashed lines to their ready endpoints; a black
    ring marks pods isolated for ingress, a dashed purple ring pods isolated for egress.
    Arrows: green = allowed; solid red = no answer (dropped, as a NetworkPolicy does);
    dotted red = refused at once (nothing listens on the port); an amber halo = the
    observation differs from the oracle. Options for a readable picture:

    * ``group="namespace"``: one box per namespace, one arrow per pair of namespaces
      with its counts of allowed and denied pod pairs;
    * ``focus="ns/pod"``: only the arrows from and to that pod;
    * ``only="denied"`` (or ``"allowed"``, ``"differs"``, ``"changes"`` with
      ``previous=<the matrix before a change>``: what the change did);
    * ``wiring=True``: each node's bridge ``cni0`` and the pods' veth pairs (and, with
      several nodes, the node fabric and its routes);
    * ``internet``: the lab's internet host and the NodePorts on every node (default: when
      the lab has a NodePort Service);
    * ``services=["ns/name", ...]``: only those Services (and their NodePorts); each Service
      has its own colour, also on its dashed lines to its ready endpoints.

    Self-connections (a pod to itself) are probed but not drawn; the title says so.
    ``seed`` is accepted for API stability: the layout has no randomness.
    """
    cluster, owner = cluster_of(lab)
    check_options(matrix, group=group, focus=focus, only=only, previous=previous)
    if internet is None:
        internet = bool(node_port_numbers(cluster, include_system, services))
    layout = layout or compute_layout(cluster, include_system, wiring=wiring, internet=internet, services=services)
    g = topology_graph(cluster, matrix, include_system=include_system, layout=layout, previous=previous,
                       focus=focus, only=only, group=group, services=services)
    if group == "namespace":
        fig, ax = _namespace_axes(g)
        _draw_namespaces(ax, g)
    else:
        fig, ax = _axes(layout.extent)
        _draw_boxes(ax, layout, cluster, wiring)
        if wiring:
            _draw_wiring(ax, g, layout, cluster)
        if internet:
            _draw_internet(ax, g, layout)
        _draw_edges(ax, g, wiring)
        _draw_pods(ax, g, layout)
        _draw_services(ax, g)
    probes = sum(1 for *_, d in g.edges(data=True) if d["kind"] == "probe")
    ax.set_title(title if title is not None else _title(cluster, owner, matrix, probes, group, focus, only),
                 fontsize=10, loc="left")
    pods = group == "pod"
    fig.legend(handles=_legend(g, group, wiring and pods, internet and pods and layout.internet is not None),
               loc="outside right upper", fontsize=8, frameon=False)
    return fig


def _axes(extent: tuple[float, float, float, float]) -> tuple[Figure, Any]:
    xmin, xmax, ymin, ymax = extent
    fig = Figure(figsize=(min(16.0, max(6.5, (xmax - xmin) * 1.05 + 3.4)), max(3.8, (ymax - ymin) * 0.95 + 0.9)),
                 dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def _title(cluster: Cluster, lab: Any, matrix: Matrix | None, probes: int, group: str, focus: str | None,
           only: str | None) -> str:
    head = f"lab {lab.name} ({'SIMULATED' if lab.simulated else lab.backend_name})" if lab is not None else "cluster"
    head += f": {cluster.node_count} node(s), {len(shown_pods(cluster))} pods, {len(cluster.policies)} policies"
    if matrix is None:
        return head
    n = len(matrix.pods)
    diffs = len(matrix.differences())
    head += (f"\n{matrix.port}/{matrix.protocol} {matrix.source}: {matrix.count_allowed} of {n * n} allowed"
             + (f", {diffs} differ from the oracle" if diffs else "")
             + (f" (self-connections not {'drawn' if group == 'pod' else 'counted'})" if n else ""))
    shown = [f"only {only}" if only else "", f"around {focus}" if focus else "",
             "per namespace" if group == "namespace" else ""]
    if any(shown):
        head += f"; showing {', '.join(s for s in shown if s)}"
    elif probes > BUSY:
        head += "; busy? try group='namespace', focus='ns/pod' or only='denied'"
    return head


# ---------------------------------------------------------------- one box per namespace
def _namespace_axes(g: nx.DiGraph) -> tuple[Figure, Any]:
    pos = namespace_positions(sorted(d["namespace"] for _, d in g.nodes(data=True)))
    for name, d in g.nodes(data=True):
        d["pos"] = pos[d["namespace"]]
    xs, ys = [p[0] for p in pos.values()] or [0.0], [p[1] for p in pos.values()] or [0.0]
    return _axes((min(xs) - 1.9, max(xs) + 1.9, min(ys) - 1.6, max(ys) + 1.9))


def _draw_namespaces(ax: Any, g: nx.DiGraph) -> None:
    if not g.number_of_nodes():
        ax.text(0, 0, "no pods yet: lab.apply(...) some", ha="center", va="center", fontsize=9, color=C.INFRA)
        return
    for u, v, d in g.edges(data=True):
        a, b = g.nodes[u]["pos"], g.nodes[v]["pos"]
        colour = {"allowed": C.ALLOWED, "denied": C.DENIED, "mixed": C.MIXED}[d["verdict"]]
        if d["differs"]:
            ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-", connectionstyle="arc3,rad=0.22", color=C.DIFFERS,
                                         linewidth=7, alpha=0.5, shrinkA=48, shrinkB=48, zorder=1.8))
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=13, connectionstyle="arc3,rad=0.22",
                                     color=colour, linewidth=2.0, shrinkA=48, shrinkB=48, zorder=2))
        mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
        dx, dy = b[0] - a[0], b[1] - a[1]  # the arc bulges to the right of the direction a -> b
        ax.text(mx + 0.11 * dy, my - 0.11 * dx, _counts(d), fontsize=7, ha="center", va="center", color=colour,
                zorder=5, bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": colour,
                                "linewidth": 0.6})
    for _, d in g.nodes(data=True):
        x, y = d["pos"]
        colour = C.namespace_colour(d["namespace"])
        ax.add_patch(FancyBboxPatch((x - 1.15, y - 0.75), 2.3, 1.5, boxstyle="round,pad=0.02,rounding_size=0.2",
                                    facecolor=colour, alpha=0.18, edgecolor=colour,
                                    linewidth=3.0 if d["focus"] else 1.4, zorder=3))
        within = d["within"]
        inside = f"within: {_counts(within)}" if sum(within[k] for k in ("allowed", "policy", "refused")) else ""
        ax.text(x, y + 0.5, f"ns {d['namespace']}", fontsize=9, fontweight="bold", ha="center", va="top",
                color=colour, zorder=4)
        ax.text(x, y - 0.02, f"{len(d['pods'])} pod(s)\n{inside}", fontsize=7.5, ha="center", va="center",
                color="#24292f", zorder=4)


def _counts(d: dict) -> str:
    parts = [f"{d['allowed']} allowed"]
    if d["policy"]:
        parts.append(f"{d['policy']} dropped")
    if d["refused"]:
        parts.append(f"{d['refused']} refused")
    if d["differs"]:
        parts.append(f"{d['differs']} differ")
    return ", ".join(parts)


# ---------------------------------------------------------------- one circle per pod
def _draw_boxes(ax: Any, layout: Layout, cluster: Cluster, wiring: bool) -> None:
    for box in layout.boxes:
        if box.kind == "node":
            ax.add_patch(FancyBboxPatch((box.x0, box.y0), box.x1 - box.x0, box.y1 - box.y0,
                                        boxstyle="round,pad=0.02,rounding_size=0.2", facecolor="#f6f8fa",
                                        edgecolor="#57606a", linewidth=1.4, zorder=0))
            label = box.label
            if wiring and cluster.node_count > 1:  # node-1's uplink is the fabric bridge itself
                index = int(box.label.split()[0].split("-")[1])
                uplink = f"{names.FABRIC_BRIDGE} (fabric bridge)" if index == 1 else names.FABRIC_LINK
                label += f"\n{uplink} {addr.node_ip(index)}"
            ax.text(box.x0 + 0.15, box.y1 - 0.12, label, fontsize=8, va="top", color="#24292f", zorder=1.7,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "#f6f8fa", "edgecolor": "none"})
        else:
            colour = C.namespace_colour(box.namespace or "")
            ax.add_patch(FancyBboxPatch((box.x0, box.y0), box.x1 - box.x0, box.y1 - box.y0,
                                        boxstyle="round,pad=0.02,rounding_size=0.15", facecolor=colour,
                                        alpha=0.12, edgecolor=colour, linewidth=1.0, zorder=0.5))
            ax.text((box.x0 + box.x1) / 2, box.y1 - 0.08, box.label, fontsize=7.5, ha="center", va="top",
                    color=colour, fontweight="bold", zorder=1)


def _draw_wiring(ax: Any, g: nx.DiGraph, layout: Layout, cluster: Cluster) -> None:
    """Each node's bridge cni0 (the pods' gateway), a veth pair per pod, the fabric between nodes."""
    for index, (x0, x1, y) in layout.bridges.items():
        ax.add_patch(Rectangle((x0, y - 0.08), x1 - x0, 0.16, facecolor="#d0d7de", edgecolor=C.INFRA, zorder=1.2))
        text = f"bridge {names.BRIDGE}  {addr.node_gateway(index)} (gateway)"
        ax.text(x0 + 0.05, y - 0.14, text, fontsize=7, va="top", color="#24292f", zorder=1.3)
        if cluster.node_count > 1:
            routes = [f"{addr.node_pod_cidr(j)} via {addr.node_ip(j)}" for j in range(1, cluster.node_count + 1)
                      if j != index]
            ax.text(x0 + 0.05, y - 0.36, "routes: " + "; ".join(routes), fontsize=6.5, va="top", color=C.INFRA,
                    zorder=1.3)
    pods = [(ref, d) for ref, d in g.nodes(data=True)
            if d["kind"] == "pod" and cluster.pod_nodes[ref] in layout.bridges]
    below: dict[float, int] = {}  # pods of a column under this one: the upper pod's veth runs outside theirs
    for _, d in pods:
        below[d["pos"][0]] = below.get(d["pos"][0], 0) + 1
    for ref, d in sorted(pods, key=lambda item: -item[1]["pos"][1]):
        index = cluster.pod_nodes[ref]
        x, y = d["pos"]
        below[x] -= 1
        vx, by = x + 0.62 + 0.12 * below[x], layout.bridges[index][2]
        ax.plot([x + 0.2, vx, vx], [y, y, by + 0.08], color=C.INFRA, linewidth=1.0, zorder=1.1)
        ax.text(vx - 0.02, y + 0.03, "eth0", fontsize=5.5, color=C.INFRA, va="bottom", ha="right", zorder=1.3)
        ax.text(vx + 0.03, by + 0.12, names.pod_port(d["ip"]) if d["ip"] != "?" else "veth", fontsize=5.5,
                rotation=90, va="bottom", ha="left", color=C.INFRA, zorder=1.3)
    if cluster.node_count > 1 and layout.bridges:
        nodes = [b for b in layout.boxes if b.kind == "node"]
        y = nodes[0].y0 - 0.12
        ax.plot([nodes[0].x0 + 0.3, nodes[-1].x1 - 0.3], [y, y], color=C.INFRA, linewidth=2.0, zorder=0.8)
        ax.text(nodes[0].x0 + 0.3, y - 0.05, f"node fabric {addr.NODE_FABRIC} (routed: pod addresses kept, no NAT)",
                fontsize=7, va="top", color=C.INFRA)


def _draw_internet(ax: Any, g: nx.DiGraph, layout: Layout) -> None:
    """The lab's internet host and, on every node, the NodePorts it may connect to."""
    if layout.internet is None:
        return
    ix, iy = layout.internet
    ax.scatter([ix], [iy], s=900, marker="s", c="#eaeef2", edgecolors=C.INFRA, linewidths=1.5, zorder=4)
    ax.text(ix, iy - 0.38, f"internet\n{addr.INTERNET_HOST_IP}\n(outside the cluster)", fontsize=7, ha="center",
            va="top", color="#24292f", zorder=5)
    services = {p: n for n, d in g.nodes(data=True) if d["kind"] == "service" for p in d.get("node_ports", [])}
    for (index, port), (x, y) in layout.node_ports.items():
        colour = g.nodes[services[port]]["colour"] if port in services else C.SERVICE
        ax.scatter([x], [y], s=110, marker="s", c="white", edgecolors=colour, linewidths=1.5, zorder=4)
        ax.text(x, y + 0.13, f"{addr.node_ip(index)}:{port}", fontsize=6.5, color=colour, ha="center",
                va="bottom", zorder=5, bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none"})
        ax.add_patch(FancyArrowPatch((ix, iy), (x, y), arrowstyle="-|>", mutation_scale=9, color=C.INFRA,
                                     linestyle=(0, (2, 2)), linewidth=1.0, connectionstyle="arc3,rad=-0.15",
                                     shrinkA=15, shrinkB=5, zorder=1.6))
        if port in services:
            ax.add_patch(FancyArrowPatch((x, y), g.nodes[services[port]]["pos"], arrowstyle="-|>",
                                         mutation_scale=9, color=colour, linestyle=(0, (4, 3)), linewidth=1.0,
                                         shrinkA=5, shrinkB=12, zorder=1.6))


def _gap_side(a: tuple[float, float], b: tuple[float, float], wiring: bool) -> tuple[float, float]:
    """(column x, side) of the gap a Service's line runs down to reach the pod at ``b``: the side
    facing the Service, or the left with ``wiring`` (the veths run on the right)."""
    return round(b[0], 3), -1.0 if wiring or a[0] <= b[0] else 1.0


def _endpoint_route(a: tuple[float, float], b: tuple[float, float], side: float,
                    lane: int) -> tuple[list[float], list[float]]:
    """A Service's dashed line to an endpoint: down the gap beside the pod's column (clear of
    the pod labels), then sideways into the pod; ``lane`` keeps the Services of one gap apart."""
    (sx, sy), (px, py) = a, b
    gx = px + side * (COLUMN / 2 - 0.37 + 0.09 * min(lane, 2))
    y = py + 0.08 * min(lane, 2)  # into the pod a little higher per lane, so lines do not overlap
    return [sx, gx, gx, px + side * 0.22], [sy - 0.2, NAMESPACE_TOP + 0.12 + 0.06 * lane, y, y]


def _draw_edges(ax: Any, g: nx.DiGraph, wiring: bool = False) -> None:
    gaps: dict[tuple[float, float], list[str]] = {}  # the Services that run down each gap, in name order
    for u, v, data in g.edges(data=True):
        if data["kind"] == "endpoint":
            gaps.setdefault(_gap_side(g.nodes[u]["pos"], g.nodes[v]["pos"], wiring), []).append(u)
    for u, v, data in g.edges(data=True):
        a, b = g.nodes[u]["pos"], g.nodes[v]["pos"]
        if data["kind"] == "endpoint":
            gap = _gap_side(a, b, wiring)
            xs, ys = _endpoint_route(a, b, gap[1], sorted(set(gaps[gap])).index(u))
            ax.plot(xs, ys, linestyle=(0, (4, 3)), color=g.nodes[u]["colour"], linewidth=1.1, zorder=1.5)
            continue
        # pods of one column: bend further when a pod sits between the two ends
        skip = abs(a[0] - b[0]) < 0.5 and abs(a[1] - b[1]) > ROW * 1.5
        style = f"arc3,rad={0.45 if skip else 0.16}"
        if data["differs"]:
            ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-", connectionstyle=style, color=C.DIFFERS,
                                         linewidth=6, alpha=0.55, shrinkA=16, shrinkB=16, zorder=1.8))
        if data["allowed"]:
            colour, width, alpha, line = C.ALLOWED, 1.6, 0.9, "-"
        elif data["why"] == "refused":
            colour, width, alpha, line = C.REFUSED, 1.2, 0.8, (0, (1, 2))
        else:
            colour, width, alpha, line = C.DENIED, 1.2, 0.7, "-"
        if data.get("changed"):
            width += 1.4
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=11, connectionstyle=style,
                                     color=colour, linewidth=width, alpha=alpha, linestyle=line, shrinkA=16,
                                     shrinkB=16, zorder=2))


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
        colour = C.namespace_colour(d["namespace"])
        if d.get("focus"):
            ax.scatter([x], [y], s=RING_SIZE * 1.5, c=[colour], alpha=0.25, edgecolors="none", zorder=2.5)
        if d["egress_isolated"]:
            ax.scatter([x], [y], s=RING_SIZE, facecolors="none", edgecolors=C.EGRESS_RING, linewidths=1.8,
                       linestyles="--", zorder=3)
        ring = (C.INGRESS_RING, 3.0) if d["ingress_isolated"] else ("white", 1.0)
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
        ax.scatter([x], [y], s=520, marker="D", c="#ffffff", edgecolors=d["colour"], linewidths=2.0, zorder=4)
        address = "headless" if d["type"] == "headless" else d["ip"]
        kind = "" if d["type"] in ("ClusterIP", "headless") else f" {d['type']}"
        node_ports = "".join(f" nodePort {p}" for p in d.get("node_ports", []))
        ax.text(x, y + 0.32, f"svc {name[4:]}{kind}\n{address} {','.join(d['ports'])}{node_ports}", fontsize=7,
                ha="center", va="bottom", color=d["colour"], zorder=5)


def _legend(g: nx.DiGraph, group: str, wiring: bool, internet: bool) -> list[Line2D]:
    """One entry per colour and line style that the picture draws, and no other."""
    nodes = [d for _, d in g.nodes(data=True)]
    edges = [d for *_, d in g.edges(data=True) if d["kind"] == "probe"]
    shown = sorted({d["namespace"] for d in nodes if d["kind"] in ("pod", "namespace")})
    handles = [Line2D([], [], marker="o" if group == "pod" else "s", linestyle="", markersize=9,
                      markeredgecolor="white", markerfacecolor=C.namespace_colour(ns), label=f"namespace {ns}")
               for ns in shown]
    if any(d.get("ingress_isolated") for d in nodes):
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=9, markerfacecolor="#d0d7de",
                              markeredgecolor=C.INGRESS_RING, markeredgewidth=2.5, label="isolated for ingress"))
    if any(d.get("egress_isolated") for d in nodes):
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=12, markerfacecolor="none",
                              markeredgecolor=C.EGRESS_RING, markeredgewidth=1.5,
                              label="isolated for egress (dashed ring)"))
    services = [d for d in nodes if d["kind"] == "service"]
    if services:
        several = len(services) > 1
        handles += [Line2D([], [], marker="D", linestyle="", markersize=8, markerfacecolor="white",
                           markeredgecolor=services[0]["colour"], label="Service" + (" (one colour each)" if several
                                                                                     else "")),
                    Line2D([], [], color=services[0]["colour"], linestyle=(0, (4, 3)),
                           label="Service -> ready endpoint")]
    if wiring:
        handles += [Line2D([], [], color=C.INFRA, linewidth=4, alpha=0.5, label=f"bridge {names.BRIDGE} in a node"),
                    Line2D([], [], color=C.INFRA, linewidth=1.0, label="veth pair: pod eth0 <-> bridge port")]
    if internet:
        doors = [d["colour"] for d in services if d.get("node_ports")]
        handles.append(Line2D([], [], marker="s", linestyle="", markersize=9, markerfacecolor="#eaeef2",
                              markeredgecolor=C.INFRA, label="internet host (outside)"))
        if doors:
            handles.append(Line2D([], [], marker="s", linestyle="", markersize=6, markerfacecolor="white",
                                  markeredgecolor=doors[0], label="NodePort on a node"))
    if group == "namespace":
        verdicts = {d["verdict"] for d in edges}
        dropped = any(d["verdict"] == "denied" for d in edges)
    else:
        verdicts = {"allowed" if d["allowed"] else d["why"] for d in edges}
        dropped = "policy" in verdicts
    if "allowed" in verdicts:
        handles.append(Line2D([], [], color=C.ALLOWED, linewidth=1.6, label="allowed: the connection worked"))
    if dropped:
        handles.append(Line2D([], [], color=C.DENIED, linewidth=1.2, label="denied: no answer (dropped by policy)"
                              if group == "pod" else "denied: no pod pair allowed"))
    if "refused" in verdicts:
        handles.append(Line2D([], [], color=C.REFUSED, linewidth=1.2, linestyle=(0, (1, 2)),
                              label="refused: nothing listens on the port"))
    if "mixed" in verdicts:
        handles.append(Line2D([], [], color=C.MIXED, linewidth=2.0, label="some pod pairs allowed, some not"))
    if any(d["differs"] for d in edges):
        handles.append(Line2D([], [], color=C.DIFFERS, linewidth=6, alpha=0.55,
                              label="observed differs from the oracle"))
    if any(d.get("changed") for d in edges):
        handles.append(Line2D([], [], color="#24292f", linewidth=2.8, label="thick: changed by the last change"))
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
