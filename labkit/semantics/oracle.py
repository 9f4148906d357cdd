"""The oracle: should this connection work, and why? Answered from the model alone.

Owns the path of one connection as Kubernetes defines it: name resolution (subject to
the source's DNS egress), Service VIP to ready endpoint (targetPort per pod), a node's
own address (its NodePorts), the lab's internet host, and what the kernel does with
anything else (no route out of the lab; unanswered ARP on a lab link), then egress of the
source and ingress of the destination. Every verdict carries sentences naming the deciding
policy and rule (each sentence once), and every allowed outcome the source address the
server sees: the client's own IP, or the node's address when the node masquerades
(NodePort traffic, a pod reaching itself through its own Service, pods going to the internet).
"""
from __future__ import annotations

import html
import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

from labkit.model import addressing as addr
from labkit.model.cluster import Cluster, pod_ref
from labkit.model.objects import Pod
from labkit.results import _Reader
from labkit.semantics import cluster_dns
from labkit.semantics import policy as pol
from labkit.semantics import service_paths as paths
from labkit.semantics import services as svc

INTERNET = "internet"
INTERNET_PORTS = {(80, "TCP"), (443, "TCP"), (80, "UDP"), (443, "UDP")}
DNS_POD = "kube-system/coredns"


@dataclass(frozen=True)
class Outcome:
    """One way the connection can go: to an endpoint pod (or a host), allowed or not."""

    allowed: bool
    answered_by: str | None
    reasons: tuple[str, ...]
    error: str | None = None  # what a client would see: "connection refused", "timed out", ...
    decisions: tuple[pol.Decision, ...] = ()
    client_ip: str | None = None  # the source address the server sees (None: nothing answers)
    service: str | None = None  # "ns/name port/PROTO" when a Service port chose the endpoint (ClientIP affinity)
    endpoint: str | None = None  # "ip:port" of that Service endpoint

    def to_dict(self) -> dict:
        return {"allowed": self.allowed, "answered_by": self.answered_by, "reasons": list(self.reasons),
                "error": self.error, "decisions": [d.to_dict() for d in self.decisions],
                "client_ip": self.client_ip, "service": self.service, "endpoint": self.endpoint}

    @classmethod
    def from_dict(cls, data: Any) -> "Outcome":
        r = _Reader(data, cls.__name__)
        return cls(r.get("allowed", bool), r.get("answered_by", str, null=True), r.strings("reasons"),
                   r.get("error", str, null=True), tuple(r.objects("decisions", pol.Decision.from_dict)),
                   r.optional("client_ip", str), r.optional("service", str), r.optional("endpoint", str))


@dataclass
class Explanation:
    """The oracle's verdict for ``src -> dst`` on ``port/protocol``; ``str()`` reads as sentences."""

    src: str
    dst: str
    port: int
    protocol: str
    allowed: bool
    reasons: list[str]
    outcomes: list[Outcome] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)  # filled by a real backend: nft chains that decided

    def __post_init__(self) -> None:
        self.reasons = unique(self.reasons)

    @property
    def may_answer(self) -> list[str]:
        """Pods (or hosts) that may answer: with several endpoints the load balancer picks one."""
        return [o.answered_by for o in self.outcomes if o.allowed and o.answered_by]

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        head = f"{self.src} -> {self.dst} on {self.port}/{self.protocol}: {verdict}."
        lines = [head] + [f"  - {r}." for r in self.reasons]
        if self.chains:
            lines += ["  In the kernel:"] + [f"    {c}" for c in self.chains]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Explanation {self.src} -> {self.dst} {self.port}/{self.protocol}: " \
               f"{'allowed' if self.allowed else 'denied'}>"

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "port": self.port, "protocol": self.protocol,
                "allowed": self.allowed, "reasons": list(self.reasons),
                "outcomes": [o.to_dict() for o in self.outcomes], "chains": list(self.chains)}

    @classmethod
    def from_dict(cls, data: Any) -> "Explanation":
        r = _Reader(data, cls.__name__)
        return cls(r.get("src", str), r.get("dst", str), r.get("port", int), r.get("protocol", str),
                   r.get("allowed", bool), list(r.strings("reasons")), r.objects("outcomes", Outcome.from_dict),
                   list(r.strings("chains")))

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.allowed else "#cf222e"
        items = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        if self.chains:
            items += "<li>In the kernel:<ul>" + "".join(f"<li><code>{html.escape(c)}</code></li>"
                                                         for c in self.chains) + "</ul></li>"
        return (f"<div><b style='color:{colour}'>{'ALLOWED' if self.allowed else 'DENIED'}</b> "
                f"<code>{html.escape(self.src)} &rarr; {html.escape(self.dst)}</code> on "
                f"{self.port}/{self.protocol}<ul>{items}</ul></div>")


def unique(reasons) -> list[str]:
    """Each sentence once, in the order first given (several endpoints share most sentences)."""
    return list(dict.fromkeys(reasons))


def is_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return False


def explain(cluster: Cluster, src: str, dst: str, port: int, protocol: str = "TCP") -> Explanation:
    """Explain whether pod ``src`` can open ``port/protocol`` on ``dst`` (pod ref, IP or DNS name).

    ``src="internet"`` is the lab's internet host, which reaches only the nodes (NodePorts)."""
    if src == INTERNET:
        return _from_internet(cluster, dst, port, protocol)
    source = cluster.pod(src)
    reasons: list[str] = []
    if is_ip(dst):
        ips = [dst]
    elif "/" in dst:
        target = cluster.pod(dst)
        ips = [cluster.pod_ips[target.ref]]
        reasons.append(f"{target.ref} has IP {ips[0]}")
    else:
        dns = dns_outcome(cluster, source)
        if not dns.allowed:
            return _result(source, dst, port, protocol, reasons, [Outcome(
                False, None, (f"{source.ref} cannot resolve {dst!r}: {_dns_blocked_why(cluster, source, dns)}",),
                "DNS lookup timed out")])
        res = cluster_dns.resolve_for(cluster, source.ref, dst)
        if not res.ips:
            return _result(source, dst, port, protocol, reasons + paths.external_alias(cluster, res.cnames),
                           [Outcome(False, None, (res.why,), f"NXDOMAIN {dst}")])
        ips = list(res.ips)
        via = f", through the CNAME {res.cnames[-1][1]}" if res.cnames else ""
        reasons.append(f"{dst!r} resolves to {', '.join(ips)} (as {res.fqdn}{via})")
        reasons.extend(paths.external_alias(cluster, res.cnames))
    outcomes = [o for ip in ips for o in to_ip(cluster, source, ip, port, protocol)]
    return _result(source, dst, port, protocol, reasons, outcomes)


def _result(source: Pod, dst: str, port: int, protocol: str, reasons: list[str],
            outcomes: list[Outcome]) -> Explanation:
    allowed = [o for o in outcomes if o.allowed]
    if len(outcomes) > 1 and allowed and len(allowed) < len(outcomes):
        reasons.append(f"{len(allowed)} of {len(outcomes)} endpoints allow it, so the result depends on "
                       "which endpoint the load balancer picks")
    for o in outcomes:
        reasons.extend(o.reasons)
    return Explanation(source.ref, dst, port, protocol, bool(allowed), unique(reasons), outcomes)


def dns_outcome(cluster: Cluster, source: Pod) -> Outcome:
    """Can ``source`` reach cluster DNS (53/UDP) through the nameservers of its own resolv.conf? Only
    kube-dns and the coredns pod answer; DNS obeys egress policy too."""
    if source.ref == DNS_POD:
        return Outcome(True, DNS_POD, ("the DNS pod resolves names itself",))
    server, why = cluster_dns.nameserver_for(cluster, cluster_dns.resolver(cluster, source))
    if server is None:
        return Outcome(False, None, (why,), "DNS lookup timed out")
    return to_ip(cluster, source, server, 53, "UDP")[0]


def _dns_blocked_why(cluster: Cluster, source: Pod, dns: Outcome) -> str:
    """Why ``source``'s query gets no answer: the policy decision that blocks it, or its resolver."""
    why = next((d.reason for d in dns.decisions if not d.allowed), None)
    if why is None:
        return dns.reasons[-1]
    server, _ = cluster_dns.nameserver_for(cluster, cluster_dns.resolver(cluster, source))
    name = "kube-dns" if server == addr.DNS_SERVICE_IP else "the coredns pod"
    return f"its DNS query to {name} ({server}:53/UDP) is blocked, because {why}"


def to_ip(cluster: Cluster, source: Pod, ip: str, port: int, protocol: str) -> list[Outcome]:
    """Outcomes of a connection from ``source`` to address ``ip`` (Service VIP, pod, host)."""
    service = svc.service_by_ip(cluster, ip)
    if service is not None:
        sport = svc.service_port(service, port, protocol)
        if sport is None:
            return [Outcome(False, None, (f"{ip} is the ClusterIP of Service {service.ref}, which has no port "
                                          f"{port}/{protocol}: the connection is rejected",), "connection refused")]
        route = paths.cluster_ip(cluster, service, sport, ip, cluster.pod_nodes.get(source.ref))
        if not route.endpoints:
            return [Outcome(False, None, (route.failure,), route.error)]
        heads = (route.head,) + ((route.note,) if route.note else ())
        return [_via(service, sport, e, _prefixed(heads, o))
                for e in route.endpoints for o in _to_endpoint(cluster, source, e, protocol)]
    owner = cluster.pod_by_ip().get(ip)
    if owner is not None:
        return [to_pod(cluster, source, cluster.pods[owner], port, protocol)]
    if ipaddress.IPv4Address(ip).is_loopback:
        return [_loopback(source, ip, port, protocol)]
    if ip == addr.INTERNET_HOST_IP:
        return [_to_internet(cluster, source, ip, port, protocol)]
    if ipaddress.IPv4Address(ip) in addr.SERVICE_CIDR:
        return [Outcome(False, None, (f"{ip} is in the Service range but no Service has it: the connection is "
                                      "rejected",), "connection refused")]
    node = _node_owning(cluster, ip)
    if node is not None:
        return _to_node(cluster, ip, node, port, protocol, source)
    if _on_a_lab_link(cluster, ip):
        return [Outcome(False, None, (f"nothing in the lab has the address {ip}: the node's ARP request for it goes "
                                      "unanswered",), "timed out")]
    # No node has a route out of the lab, so the kernel fails the connection at once; the
    # fence would reject anything that got further. UDP sends get no answer at all.
    return [Outcome(False, None, (f"{ip} is outside the lab, and no node has a route out of it: nothing addressed "
                                  "outside ever leaves (the fence rejects it too)",),
                    "timed out" if protocol == "UDP" else "network unreachable")]


def _to_endpoint(cluster: Cluster, source: Pod, e: svc.Endpoint, protocol: str) -> list[Outcome]:
    """After the DNAT: a pod endpoint, or an EndpointSlice address that is no pod's (a node, the internet host)."""
    if e.pod:
        return [_hairpin(cluster, to_pod(cluster, source, cluster.pods[e.pod], e.port, protocol), source, e.pod)]
    return to_ip(cluster, source, e.ip, e.port, protocol)


def _loopback(source: Pod, ip: str, port: int, protocol: str) -> Outcome:
    """``127.0.0.1`` in a pod is the pod itself: its containers share one network namespace, and the
    connection never leaves it (no node, no NetworkPolicy sees it)."""
    head = (f"{ip} is {source.ref}'s own loopback: its containers share one network namespace, so the connection "
            "stays inside the pod (no node and no NetworkPolicy sees it)")
    if _serves(source, port, protocol):
        return Outcome(True, source.ref, (head,), client_ip=ip)
    return Outcome(False, None, (f"{head}, and nothing in {source.ref} listens on {port}/{protocol}: the pod's own "
                                 "kernel refuses the connection",), "connection refused")


def _hairpin(cluster: Cluster, outcome: Outcome, source: Pod, endpoint: str) -> Outcome:
    """A pod that reaches itself through its own Service: its node masquerades the connection
    (else the reply, from and to the same address, would never go back through the DNAT)."""
    if endpoint != source.ref or not outcome.allowed:
        return outcome
    gateway = addr.node_gateway(cluster.pod_nodes[source.ref])
    return replace(outcome, client_ip=gateway, reasons=outcome.reasons + (
        f"the connection comes back to the pod it came from (hairpin), so its node masquerades it: "
        f"{source.ref} sees it come from {gateway}, the node's address on cni0",))


def _masquerade_address(cluster: Cluster, node: int, endpoint: str) -> str:
    """The source address ``node`` gives a connection it masquerades towards ``endpoint``:
    the address of the interface the packet leaves by (cni0 for its own pods, the fabric else)."""
    return addr.node_gateway(node) if cluster.pod_nodes[endpoint] == node else addr.node_ip(node)


def _node_owning(cluster: Cluster, ip: str) -> int | None:
    """The node whose own address (fabric IP, cni0 gateway, node-1's internet-side) ``ip`` is."""
    for i in range(1, cluster.node_count + 1):
        if ip in (addr.node_ip(i), addr.node_gateway(i)) or (i == 1 and ip == addr.INTERNET_GATEWAY):
            return i
    return None


def _on_a_lab_link(cluster: Cluster, ip: str) -> bool:
    """On a link of the lab (a node's pod subnet, the fabric, the internet host's subnet)."""
    links = [addr.node_pod_cidr(i) for i in range(1, cluster.node_count + 1)] + [addr.NODE_FABRIC,
                                                                                  addr.INTERNET_CIDR]
    return any(ipaddress.IPv4Address(ip) in net for net in links)


def _to_node(cluster: Cluster, ip: str, node: int, port: int, protocol: str, source: Pod | None) -> list[Outcome]:
    """A connection to a node's own address, from ``source`` (None: the internet host).

    A NodePort (on the fabric address) goes to the Service's ready endpoints along the
    lab's real path; anything else is refused by the node's kernel (nothing on a node listens)."""
    name = addr.node_name(node)
    match = [(s, p) for s in cluster.services.values() for p in s.ports
             if p.node_port == port and p.protocol == protocol]
    if not match or ip != addr.node_ip(node):
        why = (f"no Service has NodePort {port}/{protocol}" if not match else
               f"NodePorts answer on the node's fabric address {addr.node_ip(node)}, not on {ip}")
        return [Outcome(False, None, (f"{ip} is {name} itself; {why}, and nothing on a node listens on "
                                      f"{port}/{protocol}: the node refuses the connection",), "connection refused")]
    service, sport = match[0]
    route = paths.node_port(cluster, service, sport, ip, node, outside=source is None)
    if not route.endpoints:
        return [Outcome(False, None, (route.failure,), route.error)]
    note = (route.note,) if route.note else ()
    return [_via(service, sport, e, _prefixed((f"{route.head}; it sends to {paths.targets([e])}",) + note,
                                              _node_port_hop(cluster, node, port, e, protocol, source,
                                                             route.keeps_client)))
            for e in route.endpoints]


def _node_port_to_address(cluster: Cluster, node: int, node_port: int, e, protocol: str,
                          source: Pod | None) -> Outcome:
    """A NodePort whose endpoint (from an EndpointSlice) is no pod: only the internet host answers."""
    decisions: list[pol.Decision] = []
    if source is not None:
        here = cluster.pod_nodes[source.ref] == node
        eg = pol.egress(cluster, source, None, e.ip if here else addr.node_ip(node), e.port if here else node_port,
                        protocol)
        decisions.append(eg)
        if not eg.allowed:
            return Outcome(False, None, (eg.reason,), "timed out", tuple(decisions))
    reasons = tuple(d.reason for d in decisions)
    if e.ip == addr.INTERNET_HOST_IP and (e.port, protocol) in INTERNET_PORTS:
        seen = addr.INTERNET_GATEWAY if node == 1 else addr.node_ip(node)
        return Outcome(True, INTERNET, reasons + (f"the lab's internet host answers; {addr.node_name(node)} "
                                                  f"masquerades the connection, so it sees {seen}",),
                       None, tuple(decisions), seen)
    refused = e.ip == addr.INTERNET_HOST_IP or _node_owning(cluster, e.ip) is not None
    return Outcome(False, None, reasons + (f"nothing at {e.ip} answers on {e.port}/{protocol}",),
                   "connection refused" if refused else "timed out", tuple(decisions))


def _node_port_hop(cluster: Cluster, node: int, node_port: int, e, protocol: str, source: Pod | None,
                   keeps_client: bool = False) -> Outcome:
    """One endpoint behind a NodePort, judged where the lab's nodes judge it: each node
    enforces policies for its own pods on its forward hook. The source's egress is judged on
    its node: against the endpoint when that node translates (DNAT comes first), else
    against the node address it sent to. The endpoint's ingress is judged against the real
    source when the translating node is its own, else against that node's fabric address
    (NodePort traffic is masqueraded before it crosses to another node)."""
    if not e.pod:
        return _node_port_to_address(cluster, node, node_port, e, protocol, source)
    target = cluster.pods[e.pod]
    if not _serves(target, e.port, protocol):
        return Outcome(False, None, (f"nothing in {e.pod} listens on {e.port}/{protocol}",), "connection refused")
    translated_here = source is not None and cluster.pod_nodes[source.ref] == node
    if translated_here and source.ref == target.ref:  # the per-pod chains accept the pod's own address
        return Outcome(True, target.ref, (f"a pod can always reach itself ({target.ref})",),
                       client_ip=_masquerade_address(cluster, node, target.ref))
    decisions: list[pol.Decision] = []
    if source is not None:
        eg = (pol.egress(cluster, source, target, e.ip, e.port, protocol) if translated_here else
              pol.egress(cluster, source, None, addr.node_ip(node), node_port, protocol))
        decisions.append(eg)
        if not eg.allowed:
            return Outcome(False, None, (eg.reason,), "timed out", tuple(decisions))
    masqueraded = cluster.pod_nodes[e.pod] != node
    if masqueraded:
        ing = pol.ingress(cluster, target, None, addr.node_ip(node), e.port, protocol)
    else:
        src_ip = cluster.pod_ips[source.ref] if source is not None else addr.INTERNET_HOST_IP
        ing = pol.ingress(cluster, target, source, src_ip, e.port, protocol)
    decisions.append(ing)
    reasons = tuple(d.reason for d in decisions)
    if masqueraded:
        reasons = (f"{addr.node_name(node)} masquerades the connection to {e.pod} on another node, which sees it "
                   f"come from {addr.node_ip(node)}",) + reasons
    client = addr.INTERNET_HOST_IP if keeps_client else _masquerade_address(cluster, node, e.pod)
    if ing.allowed and not masqueraded and not keeps_client:
        reasons += (f"{addr.node_name(node)} masquerades NodePort traffic after its policies have judged it: "
                    f"{e.pod} sees the connection come from {client}, {addr.node_name(node)}'s address on cni0",)
    return Outcome(ing.allowed, e.pod if ing.allowed else None, reasons, None if ing.allowed else "timed out",
                   tuple(decisions), client if ing.allowed else None)


def _from_internet(cluster: Cluster, dst: str, port: int, protocol: str) -> Explanation:
    nodes = {addr.node_ip(i): i for i in range(1, cluster.node_count + 1)}
    nodes[addr.INTERNET_GATEWAY] = 1  # node-1's side of the internet host's link
    ip = addr.node_ip(cluster.node_names.index(dst) + 1) if dst in cluster.node_names else dst
    result = Explanation(INTERNET, dst, port, protocol, False, [])
    if ip == addr.INTERNET_HOST_IP or is_ip(ip) and ipaddress.IPv4Address(ip).is_loopback:
        serves = (port, protocol) in INTERNET_PORTS
        said = (f"{ip} is the internet host itself: the connection never leaves it, and it "
                f"{'answers' if serves else 'does not listen'} on {port}/{protocol}")
        result.reasons.append(said)
        result.outcomes.append(Outcome(True, INTERNET, (said,), client_ip=ip) if serves else
                               Outcome(False, None, (said,), "connection refused"))
        return _finish(result)
    if ip not in nodes:
        result.reasons.append(f"the internet host routes only to the nodes ({addr.NODE_FABRIC}); {dst} is not a "
                              "node address, so pods and ClusterIPs are unreachable from outside the cluster")
        result.outcomes.append(Outcome(False, None, tuple(result.reasons), "network unreachable"))
        return result
    result.outcomes.extend(_to_node(cluster, ip, nodes[ip], port, protocol, None))
    return _finish(result)


def _finish(result: Explanation) -> Explanation:
    allowed = [o for o in result.outcomes if o.allowed]
    result.allowed = bool(allowed)
    for o in result.outcomes:
        result.reasons.extend(o.reasons)
    result.reasons = unique(result.reasons)
    return result


def _via(service, sport, e: svc.Endpoint, outcome: Outcome) -> Outcome:
    return replace(outcome, service=f"{service.ref} {sport.port}/{sport.protocol}", endpoint=f"{e.ip}:{e.port}")


def _prefixed(heads: tuple[str, ...], outcome: Outcome) -> Outcome:
    return replace(outcome, reasons=tuple(heads) + outcome.reasons)


def _to_internet(cluster: Cluster, source: Pod, ip: str, port: int, protocol: str) -> Outcome:
    eg = pol.egress(cluster, source, None, ip, port, protocol)
    if not eg.allowed:
        return Outcome(False, None, (eg.reason,), "timed out", (eg,))
    if (port, protocol) not in INTERNET_PORTS:
        return Outcome(False, None, (f"the lab's internet host {ip} does not listen on {port}/{protocol}",),
                       "connection refused", (eg,))
    node = cluster.pod_nodes[source.ref]
    seen = addr.INTERNET_GATEWAY if node == 1 else addr.node_ip(node)
    return Outcome(True, "internet", (eg.reason, f"the lab's internet host {ip} answers; {addr.node_name(node)} "
                                                 f"masquerades pods' traffic to it, so it sees {seen}"),
                   None, (eg,), seen)


def _serves(pod: Pod, port: int, protocol: str) -> bool:
    return any(p.container_port == port and p.protocol == protocol for p in pod.spec.served_ports())


def to_pod(cluster: Cluster, source: Pod, target: Pod, port: int, protocol: str) -> Outcome:
    """A connection from ``source`` to ``target``'s IP on ``port/protocol`` (after any DNAT).

    The policies come first, as in the node's forward hook: a denied packet is dropped
    (timed out) before it could find out that nothing listens (connection refused)."""
    serves = _serves(target, port, protocol)
    not_served = (f"nothing in {target.ref} listens on {port}/{protocol} (its containerPorts: "
                  f"{_ports(target) or 'none'}), so the connection is refused")
    src_ip = cluster.pod_ips[source.ref]
    if target.ref == source.ref:
        if not serves:
            return Outcome(False, None, (not_served,), "connection refused")
        return Outcome(True, target.ref, (f"a pod can always reach itself ({target.ref})",), client_ip=src_ip)
    ip = cluster.pod_ips[target.ref]
    eg = pol.egress(cluster, source, target, ip, port, protocol)
    ing = pol.ingress(cluster, target, source, src_ip, port, protocol)
    if not (eg.allowed and ing.allowed):
        unheard = () if serves else (f"nothing in {target.ref} listens on {port}/{protocol} either, but the "
                                     "policy drops the packet before that could matter",)
        return Outcome(False, None, (eg.reason, ing.reason) + unheard, "timed out", (eg, ing))
    if not serves:
        return Outcome(False, None, (eg.reason, ing.reason, not_served), "connection refused", (eg, ing))
    return Outcome(True, target.ref, (eg.reason, ing.reason), None, (eg, ing), src_ip)


def _ports(pod: Pod) -> str:
    return ", ".join(f"{p.container_port}/{p.protocol}" + (f" ({p.name})" if p.name else "")
                     for p in pod.spec.ports())


def resolve_destination(cluster: Cluster, dst: str) -> str:
    """Normalise a pod-ref destination (``"x/b"``) and leave IPs and names alone."""
    return pod_ref(dst) if "/" in dst and not is_ip(dst) else dst
