"""Services and cluster DNS as Kubernetes defines them: endpoints, ClusterIPs, names.

Owns: which pods back a Service port (selector, readiness, targetPort by number or by
name per pod), which Service owns a ClusterIP, and how a pod's resolver turns a name into
addresses (search path, ndots:5, ``<svc>.<ns>.svc.cluster.local``, headless Services,
``a-b-c-d.<ns>.pod.cluster.local``).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from labkit.model.addressing import CLUSTER_DOMAIN
from labkit.model.cluster import Cluster
from labkit.model.objects import Pod, Service, ServicePort
from labkit.results import _Reader

NDOTS = 5


@dataclass(frozen=True)
class Endpoint:
    pod: str
    ip: str
    port: int
    protocol: str
    ready: bool

    def to_dict(self) -> dict:
        return {"pod": self.pod, "ip": self.ip, "port": self.port, "protocol": self.protocol, "ready": self.ready}

    @classmethod
    def from_dict(cls, data: Any) -> "Endpoint":
        r = _Reader(data, cls.__name__)
        return cls(r.get("pod", str), r.get("ip", str), r.get("port", int), r.get("protocol", str),
                   r.get("ready", bool))


def target_port(pod: Pod, sport: ServicePort) -> int | None:
    """The pod port a Service port sends to, or None when the pod lacks the named port."""
    target = sport.target
    if isinstance(target, int):
        return target
    for p in pod.spec.ports():
        if p.name == target and p.protocol == sport.protocol:
            return p.container_port
    return None


def endpoints(cluster: Cluster, service: Service, sport: ServicePort) -> list[Endpoint]:
    """Every pod selected by ``service`` for ``sport`` (ready or not), sorted by pod ref."""
    if service.selector is None:
        return []
    out = []
    for ref, pod in sorted(cluster.pods.items()):
        if pod.namespace != service.namespace or ref not in cluster.pod_ips:
            continue
        if any(pod.labels.get(k) != v for k, v in service.selector.items()):
            continue
        port = target_port(pod, sport)
        if port is not None:
            out.append(Endpoint(ref, cluster.pod_ips[ref], port, sport.protocol, cluster.is_ready(ref)))
    return out


def ready_endpoints(cluster: Cluster, service: Service, sport: ServicePort) -> list[Endpoint]:
    return [e for e in endpoints(cluster, service, sport) if e.ready]


def service_by_ip(cluster: Cluster, ip: str) -> Service | None:
    for ref, sip in cluster.service_ips.items():
        if sip == ip:
            return cluster.services[ref]
    return None


def service_port(service: Service, port: int, protocol: str) -> ServicePort | None:
    return next((p for p in service.ports if p.port == port and p.protocol == protocol), None)


def search_path(namespace: str) -> list[str]:
    return [f"{namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN]


def candidates(namespace: str, name: str) -> list[str]:
    """The fully-qualified names a pod's resolver tries, in order (ndots:5)."""
    name = name.lower()
    if name.endswith("."):
        return [name.rstrip(".")]
    searched = [f"{name}.{suffix}" for suffix in search_path(namespace)]
    return [name] + searched if name.count(".") >= NDOTS else searched + [name]


def lookup(cluster: Cluster, fqdn: str) -> list[str] | None:
    """A records for ``fqdn`` as cluster DNS answers them; None means NXDOMAIN."""
    parts = fqdn.lower().rstrip(".").split(".")
    suffix = CLUSTER_DOMAIN.split(".")
    if len(parts) != 3 + len(suffix) or parts[3:] != suffix:
        return None
    first, namespace, zone = parts[0], parts[1], parts[2]
    if zone == "pod":  # like CoreDNS with "pods verified": only a pod of that namespace with that IP
        ip = first.replace("-", ".")
        owner = cluster.pod_by_ip().get(ip)
        return [ip] if owner is not None and owner.split("/")[0] == namespace else None
    if zone != "svc":
        return None
    service = cluster.services.get(f"{namespace}/{first}")
    if service is None:
        return None
    if not service.headless:
        return [cluster.service_ips[service.ref]]
    eps = ([e for p in service.ports for e in ready_endpoints(cluster, service, p)] if service.ports
           else _headless_pods(cluster, service))
    return sorted({e.ip for e in eps}, key=ipaddress.IPv4Address) or None


def _headless_pods(cluster: Cluster, service: Service) -> list[Endpoint]:
    """A headless Service without ports still publishes its ready pods' addresses."""
    if service.selector is None:
        return []
    return [Endpoint(ref, cluster.pod_ips[ref], 0, "TCP", True) for ref, pod in cluster.pods.items()
            if pod.namespace == service.namespace and cluster.is_ready(ref)
            and all(pod.labels.get(k) == v for k, v in service.selector.items())]


@dataclass(frozen=True)
class Resolution:
    name: str
    fqdn: str | None  # the name that answered, None for NXDOMAIN
    ips: tuple[str, ...]
    tried: tuple[str, ...]


def resolve(cluster: Cluster, namespace: str, name: str) -> Resolution:
    """Resolve ``name`` as a pod in ``namespace`` would (its search path, ndots:5)."""
    tried = []
    for fqdn in candidates(namespace, name):
        tried.append(fqdn)
        ips = lookup(cluster, fqdn)
        if ips:
            return Resolution(name, fqdn, tuple(ips), tuple(tried))
    return Resolution(name, None, (), tuple(tried))
