"""Where everything goes in the topology picture: a fixed grid, computed from the model.

Owns positions only (no matplotlib): one box per node, side by side; inside it one
column per namespace, pods stacked in name order; Services in a band above, each near
the pods it sends to; with ``wiring`` each node's bridge ``cni0`` below its pods; with
``internet`` the lab's internet host left of the nodes and the NodePorts on each node's
top edge; ``namespace_positions`` for the one-box-per-namespace view; which Services a
picture shows (``shown_services``: all, or the ones asked for). The same cluster
always gives the same layout, and adding a pod moves only the pods of its own column, so
live redraws never make the picture jump.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from labkit.errors import ModelError
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster, pod_ref
from labkit.model.system import is_system
from labkit.semantics import services as svc

COLUMN = 2.2      # distance between namespace columns
ROW = 1.35        # distance between pods of one column
BRIDGE_DROP = 1.0  # extra height of a node box for its bridge (wiring)
INTERNET_X = -2.3  # the internet host, left of node-1
NODE_GAP = 0.7    # space between node boxes
SERVICE_GAP = 2.2  # minimum distance between two Services
NAMESPACE_TOP = 0.85  # top edge of the namespace boxes (the first pod of a column sits at y = 0)
SYSTEM_NAMESPACE = "kube-system"


@dataclass(frozen=True)
class Box:
    """A rectangle with a caption: a node (``kind="node"``) or a namespace inside a node."""

    kind: str
    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    namespace: str | None = None


@dataclass
class Layout:
    """Positions (data coordinates, y up) of pods and Services, and the boxes around them."""

    pods: dict[str, tuple[float, float]] = field(default_factory=dict)
    services: dict[str, tuple[float, float]] = field(default_factory=dict)
    boxes: list[Box] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)  # colour order
    extent: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)  # xmin, xmax, ymin, ymax
    bridges: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # node -> (x0, x1, y)
    internet: tuple[float, float] | None = None
    node_ports: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)  # (node, port) -> xy

    def colour_index(self, namespace: str) -> int:
        return self.namespaces.index(namespace) if namespace in self.namespaces else len(self.namespaces)


def shown_pods(cluster: Cluster, include_system: bool = False) -> list[str]:
    return sorted(ref for ref, p in cluster.pods.items()
                  if include_system or p.namespace != SYSTEM_NAMESPACE)


def shown_services(cluster: Cluster, include_system: bool = False, only: list[str] | None = None) -> list[str]:
    """The Services a picture draws: every one (kube-system's only with ``include_system``),
    or the ``only`` ones (``"ns/name"``, ``"name"`` for default); a name the lab lacks is a ModelError."""
    every = sorted(ref for ref, s in cluster.services.items()
                   if include_system or (s.namespace != SYSTEM_NAMESPACE and not is_system("Service", ref)))
    if only is None:
        return every
    if isinstance(only, str):
        only = [only]
    wanted = [pod_ref(ref) for ref in only]
    unknown = [ref for ref in wanted if ref not in cluster.services]
    if unknown:
        raise ModelError(f"services={list(only)!r}: this lab has no Service {', '.join(unknown)}; choose among "
                         f"{', '.join(every) or 'none yet'} (or services=None for all)", path="services")
    return sorted(set(wanted))


def node_port_numbers(cluster: Cluster, include_system: bool = False, services: list[str] | None = None) -> list[int]:
    """Every NodePort of the shown Services, in order."""
    return sorted({p.node_port for ref in shown_services(cluster, include_system, services)
                   for p in cluster.services[ref].ports if p.node_port is not None})


def compute_layout(cluster: Cluster, include_system: bool = False, *, wiring: bool = False,
                   internet: bool = False, services: list[str] | None = None) -> Layout:
    """The grid layout of ``cluster`` (kube-system hidden unless ``include_system``); ``wiring``
    makes room for the bridges, ``internet`` for the internet host and the NodePorts;
    ``services`` keeps only those Services (``shown_services``)."""
    out = Layout()
    pods = shown_pods(cluster, include_system)
    out.namespaces = sorted(ns for ns in cluster.namespaces if include_system or ns != SYSTEM_NAMESPACE)
    by_column: dict[tuple[int, str], list[str]] = {}
    for ref in pods:
        by_column.setdefault((cluster.pod_nodes[ref], cluster.pods[ref].namespace), []).append(ref)
    rows = max((len(v) for v in by_column.values()), default=1)
    top, bottom = 1.45, -(rows - 1) * ROW - 0.95 - (BRIDGE_DROP if wiring else 0.0)
    ports = node_port_numbers(cluster, include_system, services) if internet else []
    x = 0.0
    for index in range(1, cluster.node_count + 1):
        namespaces = sorted({ns for (i, ns) in by_column if i == index})
        width = max(1, len(namespaces)) * COLUMN
        name = addr.node_name(index)
        out.boxes.append(Box("node", f"{name}  (pods {addr.node_pod_cidr(index)})", x, bottom, x + width, top))
        if wiring:
            out.bridges[index] = (x + 0.2, x + width - 0.2, bottom + 0.45)
        for k, port in enumerate(ports):
            out.node_ports[(index, port)] = (x + 0.45 + k * 1.1, top)
        for k, ns in enumerate(namespaces):
            cx = x + COLUMN / 2 + k * COLUMN
            members = by_column[(index, ns)]
            out.boxes.append(Box("namespace", f"ns {ns}", cx - COLUMN / 2 + 0.15, -(len(members) - 1) * ROW - 0.8,
                                 cx + COLUMN / 2 - 0.15, NAMESPACE_TOP, ns))
            for r, ref in enumerate(members):
                out.pods[ref] = (cx, -r * ROW)
        x += width + NODE_GAP
    xmax = x - NODE_GAP
    _place_services(cluster, out, shown_services(cluster, include_system, services), xmax, top + 1.1)
    xs = [p[0] for p in out.services.values()]
    if internet:
        out.internet = (INTERNET_X, top - 0.2)
    out.extent = (min([0.0, *xs, *([INTERNET_X - 0.5] if internet else [])]) - 0.6, max([xmax, *xs]) + 0.6,
                  bottom - 0.2, top + (2.1 if out.services else 0.45))
    return out


def namespace_positions(namespaces: list[str], spacing: float = 3.4) -> dict[str, tuple[float, float]]:
    """One spot per namespace: a row for up to three, a circle for more (so arrows miss boxes)."""
    n = len(namespaces)
    if n <= 3:
        return {ns: (i * spacing, 0.0) for i, ns in enumerate(namespaces)}
    radius = spacing * n / (2 * math.pi) * 1.1
    angles = [math.pi / 2 - 2 * math.pi * i / n for i in range(n)]
    return {ns: (radius * math.cos(a), radius * math.sin(a)) for ns, a in zip(namespaces, angles)}


def _place_services(cluster: Cluster, out: Layout, refs: list[str], xmax: float, y: float) -> None:
    """Each Service above the mean of its endpoints, then pushed apart left to right."""
    wanted = []
    for ref in refs:
        service = cluster.services[ref]
        xs = [out.pods[e.pod][0] for p in service.ports for e in svc.endpoints(cluster, service, p)
              if e.pod in out.pods]
        wanted.append((sum(xs) / len(xs) if xs else xmax / 2, ref))
    wanted.sort()
    last = None
    for want, ref in wanted:
        x = want if last is None else max(want, last + SERVICE_GAP)
        out.services[ref] = (x, y)
        last = x
    if wanted and last is not None and last > xmax:  # shift back so the band stays centred
        first = out.services[wanted[0][1]][0]
        shift = min((last - xmax) / 2, first)
        for ref in out.services:
            sx, sy = out.services[ref]
            out.services[ref] = (sx - shift, sy)
