"""Where a connection to a Service goes, as kube-proxy decides it: the oracle's Service half.

Owns the choice of endpoints for ClusterIP traffic (``internalTrafficPolicy``) and for
NodePort traffic (``externalTrafficPolicy``: Local only for traffic from outside the pod
network, which then keeps its client address), the sentences that say why there is no
endpoint (none ready, none on that node: dropped, the ``kubernetes`` Service without an API
server), and what an ExternalName alias means for a connection. Returns plain data; the
oracle (``labkit.semantics.oracle``) turns it into outcomes.
"""
from __future__ import annotations

from dataclasses import dataclass

from labkit.model import addressing as addr
from labkit.model import system
from labkit.model.cluster import Cluster
from labkit.model.objects import Service, ServicePort
from labkit.semantics import services as svc
from labkit.semantics.services import Endpoint

KUBERNETES = "default/kubernetes"


@dataclass(frozen=True)
class Route:
    """The endpoints a connection may reach (empty: ``failure`` and ``error`` say what happens),
    the sentence that names the Service, and whether the node keeps the client's address."""

    endpoints: tuple[Endpoint, ...]
    head: str
    failure: str | None = None
    error: str | None = None
    keeps_client: bool = False  # externalTrafficPolicy: Local from outside: not masqueraded
    note: str | None = None  # a sentence about the traffic policy, when one applies


def targets(endpoints) -> str:
    return ", ".join(f"{e.pod or e.ip} ({e.ip}:{e.port})" if e.pod else f"{e.ip}:{e.port}" for e in endpoints)


def _no_endpoints(service: Service, head: str, port: int, protocol: str) -> Route:
    if service.ref == KUBERNETES:
        return Route((), head, f"{head}: {system.NO_API_SERVER}", "connection refused")
    return Route((), head, f"{head}, which has no ready endpoints for port {port}/{protocol}: the connection is "
                           "rejected", "connection refused")


def cluster_ip(cluster: Cluster, service: Service, sport: ServicePort, ip: str, source_node: int | None) -> Route:
    """ClusterIP traffic from a pod on ``source_node`` (internalTrafficPolicy applies)."""
    head = f"{ip} is the ClusterIP of Service {service.ref}"
    used = svc.used_endpoints(cluster, service, sport)
    if not used:
        return _no_endpoints(service, head, sport.port, sport.protocol)
    note = None
    if service.internal_traffic_policy == "Local" and source_node is not None:
        node = addr.node_name(source_node)
        local = [e for e in used if e.node == source_node]
        if not local:
            return Route((), head, (
                f"Service {service.ref} has internalTrafficPolicy: Local, and none of its ready endpoints "
                f"({targets(used)}) is on {node}, where the client runs: kube-proxy on {node} drops the packet "
                "(\"no local endpoints\"), it does not refuse it, so the connection times out"), "timed out")
        others = targets([e for e in used if e.node != source_node])
        note = (f"internalTrafficPolicy: Local: {node} sends it only to endpoints on {node}, where the client runs"
                + (f" (not to {others})" if others else ""))
        used = local
    return Route(tuple(used), f"{ip}:{sport.port}/{sport.protocol} is Service {service.ref}; it sends to "
                              f"{targets(used)}", note=note)


def node_port(cluster: Cluster, service: Service, sport: ServicePort, ip: str, node: int, outside: bool) -> Route:
    """NodePort traffic arriving at ``node``; ``outside``: from the lab's internet host (not from a pod)."""
    name = addr.node_name(node)
    head = f"{ip}:{sport.node_port}/{sport.protocol} is NodePort {sport.node_port} of Service {service.ref} on {name}"
    used = svc.used_endpoints(cluster, service, sport)
    if not used:
        return Route((), head, f"{head}, which has no ready endpoints: rejected", "connection refused")
    if service.external_traffic_policy != "Local":
        return Route(tuple(used), head)
    if not outside:
        return Route(tuple(used), head, note=(
            "externalTrafficPolicy: Local applies only to traffic from outside the cluster: kube-proxy sends a "
            "pod's NodePort traffic to every endpoint, as with Cluster. (kube-proxy would not masquerade it; "
            "labkit does, as for Cluster, so that the answer always comes back through this node)"))
    local = tuple(e for e in used if e.node == node)
    if not local:
        return Route((), head, (
            f"{head}, which has externalTrafficPolicy: Local and no ready endpoint on {name} (its endpoints: "
            f"{targets(used)}): {name} drops traffic from outside the cluster instead of forwarding it to another "
            "node, so the connection times out"), "timed out")
    return Route(local, head, keeps_client=True, note=(
        f"externalTrafficPolicy: Local: {name} sends traffic from outside only to its own endpoints and does not "
        f"masquerade it, so the endpoint sees the client's own address {addr.INTERNET_HOST_IP}"))


def external_alias(cluster: Cluster, cnames) -> list[str]:
    """Sentences for the ExternalName Services among the CNAMEs a name went through."""
    out = []
    for alias, target in cnames:
        service = next((s for s in cluster.services.values()
                        if s.external and f"{s.name}.{s.namespace}.svc.{addr.CLUSTER_DOMAIN}" == alias), None)
        if service is None:
            continue
        out.append(f"{alias} is Service {service.ref} of type ExternalName: cluster DNS answers with a CNAME to "
                   f"{target}; it has no ClusterIP and no kube-proxy rules, so the client connects to what "
                   f"{target} resolves to, on the port it asked for")
    return out

