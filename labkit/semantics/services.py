"""Services as Kubernetes defines them: endpoints, ClusterIPs, and the names that forward to DNS.

Owns which addresses back a Service port: the pods its selector matches (readiness,
targetPort by number or by name per pod) and every endpoint of the EndpointSlices labelled
with its name (``kubernetes.io/service-name``), which endpoints are *used* (ready, or all of
them with ``publishNotReadyAddresses``), each endpoint's node (for ``internalTrafficPolicy`` and
``externalTrafficPolicy: Local``), and which Service owns a ClusterIP.

Cluster DNS (records, lookups, a pod's resolver, ``/etc/resolv.conf`` and ``/etc/hosts``) lives
in ``labkit.semantics.cluster_dns``, which imports this module (never the other way).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.objects import EndpointSlice, Pod, Service, ServicePort
from labkit.results import _Reader

NDOTS = 5


@dataclass(frozen=True)
class Endpoint:
    """One address:port behind a Service port. ``pod`` is "" when the address is no pod's (a slice
    endpoint to the internet host or a node); ``node`` is the node index (1-based) or None."""

    pod: str
    ip: str
    port: int
    protocol: str
    ready: bool
    node: int | None = None
    hostname: str | None = None  # its per-endpoint DNS name (pod hostname + subdomain, or the slice's)
    slice: str | None = None  # "ns/name" of the hand-written EndpointSlice it came from

    def to_dict(self) -> dict:
        return {"pod": self.pod, "ip": self.ip, "port": self.port, "protocol": self.protocol, "ready": self.ready,
                "node": self.node, "hostname": self.hostname, "slice": self.slice}

    @classmethod
    def from_dict(cls, data: Any) -> "Endpoint":
        r = _Reader(data, cls.__name__)
        return cls(r.get("pod", str), r.get("ip", str), r.get("port", int), r.get("protocol", str),
                   r.get("ready", bool), r.optional("node", int), r.optional("hostname", str),
                   r.optional("slice", str))


def target_port(pod: Pod, sport: ServicePort) -> int | None:
    """The pod port a Service port sends to, or None when the pod lacks the named port."""
    target = sport.target
    if isinstance(target, int):
        return target
    for p in pod.spec.ports():
        if p.name == target and p.protocol == sport.protocol:
            return p.container_port
    return None


def slices(cluster: Cluster) -> dict[str, EndpointSlice]:
    """The cluster's hand-written EndpointSlices ("ns/name" -> slice)."""
    return getattr(cluster, "slices", None) or {}


def slices_of(cluster: Cluster, service: Service) -> list[EndpointSlice]:
    """The hand-written slices labelled with ``service``'s name, in its namespace, sorted by name."""
    return [s for ref, s in sorted(slices(cluster).items()) if s.service == service.ref]


def selects(service: Service, pod: Pod) -> bool:
    """Does ``service``'s selector pick ``pod`` (same namespace, every label)? False without a selector."""
    return (service.selector is not None and pod.namespace == service.namespace
            and all(pod.labels.get(k) == v for k, v in service.selector.items()))


def endpoint_hostname(service: Service, pod: Pod) -> str | None:
    """The endpoint hostname the EndpointSlice controller writes: the pod's ``hostname`` when its
    ``subdomain`` is this Service's name (that is what makes ``<hostname>.<svc>.<ns>.svc`` exist)."""
    spec = pod.spec
    return spec.hostname if spec.hostname and spec.subdomain == service.name else None


def node_index(cluster: Cluster, name: str | None) -> int | None:
    return cluster.node_names.index(name) + 1 if name in cluster.node_names else None


def _selected(cluster: Cluster, service: Service, sport: ServicePort | None) -> list[Endpoint]:
    out = []
    for ref, pod in sorted(cluster.pods.items()):
        if ref not in cluster.pod_ips or not selects(service, pod):
            continue
        port = 0 if sport is None else target_port(pod, sport)
        if port is not None:
            # the EndpointSlice controller writes ready: true for every pod with publishNotReadyAddresses
            out.append(Endpoint(ref, cluster.pod_ips[ref], port, "TCP" if sport is None else sport.protocol,
                                service.publish_not_ready or cluster.is_ready(ref), cluster.pod_nodes.get(ref),
                                endpoint_hostname(service, pod)))
    return out


def _from_slices(cluster: Cluster, service: Service, sport: ServicePort | None) -> list[Endpoint]:
    by_ip = cluster.pod_by_ip()
    out = []
    for sl in slices_of(cluster, service):
        if sport is None:
            port, protocol = 0, "TCP"
        else:
            match = next((p for p in sl.ports if (p.name or None) == (sport.name or None)
                          and p.protocol == sport.protocol), None)
            if match is None:
                continue
            port, protocol = match.port, match.protocol
        for e in sl.endpoints:  # kube-proxy counts an endpoint as local only by its nodeName
            out.append(Endpoint(by_ip.get(e.address, ""), e.address, port, protocol, e.ready,
                                node_index(cluster, e.node_name), e.hostname, sl.ref))
    return out


def endpoints(cluster: Cluster, service: Service, sport: ServicePort) -> list[Endpoint]:
    """Every endpoint of ``service`` for ``sport``, ready or not: the selected pods (sorted by pod
    ref), then the hand-written slices' endpoints (by slice name, in their order); each address:port
    once. An ExternalName Service has none."""
    if service.external:
        return []
    out, seen = [], set()
    for e in _selected(cluster, service, sport) + _from_slices(cluster, service, sport):
        if (e.ip, e.port) not in seen:
            seen.add((e.ip, e.port))
            out.append(e)
    return out


def is_used(service: Service, endpoint: Endpoint) -> bool:
    """kube-proxy and cluster DNS use an endpoint when its slice says ready. publishNotReadyAddresses
    acts through the EndpointSlice controller, which writes every selected pod as ready (``_selected``);
    a hand-written slice's ``ready: false`` stays unused whatever the Service says."""
    return endpoint.ready


def used_endpoints(cluster: Cluster, service: Service, sport: ServicePort) -> list[Endpoint]:
    """The endpoints traffic to ``sport`` may go to: ready ones, or all with publishNotReadyAddresses."""
    return [e for e in endpoints(cluster, service, sport) if is_used(service, e)]



def local_endpoints(cluster: Cluster, service: Service, sport: ServicePort, node: int) -> list[Endpoint]:
    """The used endpoints on node ``node`` (what a Local traffic policy leaves)."""
    return [e for e in used_endpoints(cluster, service, sport) if e.node == node]


def portless_endpoints(cluster: Cluster, service: Service) -> list[Endpoint]:
    """The used addresses of a Service whatever its ports (port 0): what its DNS A records list, since
    CoreDNS answers them for any port, and a headless Service without ports still publishes them."""
    out, seen = [], set()
    for e in _selected(cluster, service, None) + _from_slices(cluster, service, None):
        if e.ip not in seen and is_used(service, e):
            seen.add(e.ip)
            out.append(e)
    return out


@dataclass(frozen=True)
class SliceView:
    """One EndpointSlice as ``kubectl get endpointslices`` lists it: a hand-written one, or the one the
    EndpointSlice controller makes for a selector Service (``managed``), named ``<svc>-<5 chars>``."""

    namespace: str
    name: str
    service: str | None
    ports: tuple[tuple[str | None, int, str], ...]  # (name, port, protocol)
    endpoints: tuple[tuple[str, bool, str | None], ...]  # (address, ready, node name)
    managed: bool
    address_type: str = "IPv4"


def slice_views(cluster: Cluster, namespace: str | None = None) -> list[SliceView]:
    """Every EndpointSlice of ``namespace`` (all when None): the controller's (selected pods grouped by
    their resolved ports, ready as the controller says: ready, or always with publishNotReadyAddresses),
    then the hand-written ones, sorted by namespace and name."""
    out = []
    for ref, service in sorted(cluster.services.items()):
        if service.selector is None or service.external or namespace not in (None, service.namespace):
            continue
        groups: dict[tuple, list[str]] = {}
        for pref, pod in sorted(cluster.pods.items()):
            if pref in cluster.pod_ips and selects(service, pod):
                ports = tuple((p.name, target_port(pod, p), p.protocol) for p in service.ports
                              if target_port(pod, p) is not None)
                groups.setdefault(ports, []).append(pref)
        for i, (ports, pods) in enumerate(sorted(groups.items(), key=lambda g: g[1][0]) or [((), [])]):
            eps = tuple((cluster.pod_ips[r], service.publish_not_ready or cluster.is_ready(r),
                         addr.node_name(cluster.pod_nodes[r])) for r in pods)
            suffix = addr.safe_suffix(ref if i == 0 else f"{ref}/{i}", 5)
            out.append(SliceView(service.namespace, f"{service.name}-{suffix}", ref, ports, eps, True))
    for ref, sl in sorted(slices(cluster).items()):
        if namespace in (None, sl.namespace):
            eps = tuple((e.address, e.ready, e.node_name) for e in sl.endpoints)
            out.append(SliceView(sl.namespace, sl.name, sl.service, tuple((p.name, p.port, p.protocol)
                                                                          for p in sl.ports), eps, False))
    return sorted(out, key=lambda v: (v.namespace, v.name))


def service_by_ip(cluster: Cluster, ip: str) -> Service | None:
    for ref, sip in cluster.service_ips.items():
        if sip == ip:
            return cluster.services[ref]
    return None


def service_port(service: Service, port: int, protocol: str) -> ServicePort | None:
    return next((p for p in service.ports if p.port == port and p.protocol == protocol), None)


def search_path(namespace: str) -> list[str]:
    """The search list a ClusterFirst pod gets."""
    return [f"{namespace}.svc.{addr.CLUSTER_DOMAIN}", f"svc.{addr.CLUSTER_DOMAIN}", addr.CLUSTER_DOMAIN]


def candidates(namespace: str, name: str) -> list[str]:
    """The fully-qualified names a ClusterFirst pod's resolver tries, in order (ndots:5)."""
    return expand(name, search_path(namespace), NDOTS)


def expand(name: str, searches, ndots: int) -> list[str]:
    """glibc's order: an absolute name alone; else with at least ``ndots`` dots the name first,
    then the search list; with fewer, the search list first."""
    name = name.lower()
    if name.endswith("."):
        return [name.rstrip(".")]
    searched = [f"{name}.{suffix}" for suffix in searches]
    return [name] + searched if name.count(".") >= ndots else searched + [name]
