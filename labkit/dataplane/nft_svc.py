"""Services in nftables: the ``ip labkit-svc`` table, labkit's kube-proxy (nftables mode).

Owns the rendering of Services into a verdict map ``VIP . proto . port`` -> one chain per
service port -> ``numgen random mod N`` -> one chain per endpoint -> ``dnat``; hairpin
masquerade; ClientIP affinity (one timed set per endpoint, re-armed by each new connection);
NodePorts on the node's fabric address; the traffic policies (``internalTrafficPolicy: Local``:
pods reach only this node's endpoints, through chain ``local_…``; ``externalTrafficPolicy: Local``:
a NodePort reached from outside the pod network goes to this node's endpoints unmasqueraded);
immediate refusal for Service ports without endpoints or unknown VIP ports, and a drop
(``nolocal_…``) when a Local policy leaves no endpoint on this node. ExternalName Services get
no rules. Chain names are readable and deterministic (``svc_<ns>_<name>_<port>``, ``ep_..._<ip>``).
"""
from __future__ import annotations

from labkit.dataplane import names
from labkit.dataplane.names import SVC_TABLE
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.objects import Service, ServicePort
from labkit.semantics.services import Endpoint, local_endpoints, used_endpoints

MASQ_MARK = "0x4000"
_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


def port_label(sport: ServicePort) -> str:
    return sport.name or f"{sport.protocol.lower()}-{sport.port}"


def _base(service: Service, sport: ServicePort) -> str:
    return f"{service.namespace}_{service.name}_{port_label(sport)}"


def svc_chain(service: Service, sport: ServicePort) -> str:
    """The cluster-wide chain: every used endpoint of the Service port."""
    return names.nft_chain(f"svc_{_base(service, sport)}")


def local_chain(service: Service, sport: ServicePort) -> str:
    """Only this node's endpoints (a Local traffic policy; kube-proxy's ``local-…`` chain)."""
    return names.nft_chain(f"local_{_base(service, sport)}")


def nolocal_chain(service: Service, sport: ServicePort) -> str:
    """A Local traffic policy with no endpoint on this node: the drop."""
    return names.nft_chain(f"nolocal_{_base(service, sport)}")


def ep_chain(service: Service, sport: ServicePort, ep: Endpoint, shared: frozenset[str] = frozenset()) -> str:
    """One endpoint's chain; ``shared``: addresses with several ports behind this Service port (a pod and a
    hand-written slice naming the same IP), whose chains also carry the port."""
    port = f"_{ep.port}" if ep.ip in shared else ""
    return names.nft_chain(f"ep_{_base(service, sport)}_{ep.ip}{port}")


def ext_chain(service: Service, sport: ServicePort) -> str:
    return names.nft_chain(f"ext_{_base(service, sport)}")


def affinity_set(service: Service, sport: ServicePort, ep: Endpoint, shared: frozenset[str] = frozenset()) -> str:
    return f"aff_{ep_chain(service, sport, ep, shared)[3:]}"


def endpoint_name(ep: Endpoint) -> str:
    """Who is behind an endpoint: its pod, else what the address is in the lab."""
    if ep.pod:
        return ep.pod
    if ep.ip == addr.INTERNET_HOST_IP:
        return "internet"
    return addr.node_name(ep.node) if ep.node and ep.ip == addr.node_ip(ep.node) else "address"


def _map(name: str, key: str, elements: list[str]) -> list[str]:
    lines = [f"  map {name} {{", f"    type {key} : verdict"]
    if elements:
        lines.append("    elements = { " + ",\n                 ".join(elements) + " }")
    return lines + ["  }"]


def _ip_key(e: Endpoint) -> tuple[int, ...]:
    return (*map(int, e.ip.split(".")), e.port)


def _shared(eps: list[Endpoint]) -> frozenset[str]:
    seen: set[str] = set()
    return frozenset(e.ip for e in eps if e.ip in seen or seen.add(e.ip))


def _chooser(service: Service, sport: ServicePort, chain: str, comment: str, eps: list[Endpoint],
             shared: frozenset[str]) -> list[str]:
    """A chain choosing one of ``eps``: its affinity first (ClientIP), else at random."""
    lines = [f"  chain {chain} {{", "    " + names.nft_comment(comment)]
    if service.session_affinity == "ClientIP":
        lines += [f"    ip saddr @{affinity_set(service, sport, e, shared)} goto {ep_chain(service, sport, e, shared)}"
                  for e in eps]
    if len(eps) == 1:
        lines.append(f"    goto {ep_chain(service, sport, eps[0], shared)}")
    else:
        targets = ", ".join(f"{i} : goto {ep_chain(service, sport, e, shared)}" for i, e in enumerate(eps))
        lines.append(f"    numgen random mod {len(eps)} vmap {{ {targets} }}")
    return lines + ["  }"]


def _endpoint_chains(service: Service, sport: ServicePort, eps: list[Endpoint], shared: frozenset[str]) -> list[str]:
    proto = _PROTO[sport.protocol]
    lines = []
    for e in eps:
        lines += [f"  chain {ep_chain(service, sport, e, shared)} {{",
                  "    " + names.nft_comment(f"endpoint {endpoint_name(e)} {e.ip}:{e.port}"),
                  f"    ip saddr {e.ip} jump want-masq"]
        if service.session_affinity == "ClientIP":  # each new connection re-arms the client's timeout
            lines.append(f"    update @{affinity_set(service, sport, e, shared)} {{ ip saddr }}")
        lines += [f"    meta l4proto {proto} dnat to {e.ip}:{e.port}", "  }"]
    return lines


def _nolocal(service: Service, sport: ServicePort, node: str, why: str) -> list[str]:
    return [f"  chain {nolocal_chain(service, sport)} {{",
            "    " + names.nft_comment(f"Service {service.ref} port {port_label(sport)}: {why} and no endpoint "
                                       f"on {node}"),
            f"    drop {names.nft_comment(f'{service.ref} has no local endpoints')}", "  }"]


class _Tables:
    """The maps' elements and the chains, gathered Service port by Service port."""

    def __init__(self, cluster: Cluster, node_index: int):
        self.cluster, self.node_index = cluster, node_index
        self.node_ip, self.node = addr.node_ip(node_index), addr.node_name(node_index)
        self.dispatch: list[str] = []
        self.empty: list[str] = []
        self.nodeports: list[str] = []
        self.chains: list[str] = []
        self.sets: list[str] = []

    def add(self, service: Service, sport: ServicePort, vip: str) -> None:
        proto = _PROTO[sport.protocol]
        key = f"{vip} . {proto} . {sport.port}"
        nodeport_key = f"{self.node_ip} . {proto} . {sport.node_port}"
        eps = sorted(used_endpoints(self.cluster, service, sport), key=_ip_key)
        shared = _shared(eps)
        if not eps:  # nothing anywhere: refused at once, whatever the policies
            self.empty.append(f"{key} : goto refuse")
            if sport.node_port:
                self.empty.append(f"{nodeport_key} : goto refuse")
            return
        local = sorted(local_endpoints(self.cluster, service, sport, self.node_index), key=_ip_key)
        internal_local = service.internal_traffic_policy == "Local"
        external_local = bool(sport.node_port) and service.external_traffic_policy == "Local"
        cluster_wide = not internal_local or bool(sport.node_port)  # pods' NodePort traffic is cluster-wide
        label = f"Service {service.ref} port {port_label(sport)} {sport.port}/{sport.protocol}"
        used = eps if cluster_wide else local
        if cluster_wide:
            self.chains += _chooser(service, sport, svc_chain(service, sport), label, eps, shared)
        if local and (internal_local or external_local):
            self.chains += _chooser(service, sport, local_chain(service, sport),
                                    f"{label}: only the endpoints on {self.node}", local, shared)
        elif internal_local or external_local:
            policies = " and ".join(p for p, on in (("internalTrafficPolicy", internal_local),
                                                     ("externalTrafficPolicy", external_local)) if on)
            self.chains += _nolocal(service, sport, self.node, f"{policies} Local")
        self.chains += _endpoint_chains(service, sport, used, shared)
        if service.session_affinity == "ClientIP":
            for e in used:
                self.sets += [f"  set {affinity_set(service, sport, e, shared)} {{", "    type ipv4_addr",
                              "    flags dynamic,timeout", f"    timeout {service.affinity_timeout}s", "  }"]
        if not internal_local:
            self.dispatch.append(f"{key} : goto {svc_chain(service, sport)}")
        elif local:
            self.dispatch.append(f"{key} : goto {local_chain(service, sport)}")
        else:
            self.empty.append(f"{key} : goto {nolocal_chain(service, sport)}")
        if sport.node_port:
            self._nodeport(service, sport, proto, bool(local), external_local)

    def _nodeport(self, service: Service, sport: ServicePort, proto: str, has_local: bool, external_local: bool):
        self.nodeports.append(f"{proto} . {sport.node_port} : goto {ext_chain(service, sport)}")
        head = [f"  chain {ext_chain(service, sport)} {{",
                "    " + names.nft_comment(f"NodePort {sport.node_port} of Service {service.ref}"
                                           + (" (externalTrafficPolicy Local)" if external_local else ""))]
        if not external_local:
            self.chains += head + ["    jump want-masq", f"    goto {svc_chain(service, sport)}", "  }"]
            return
        # pods still use every endpoint, masqueraded; the rest stays on this node, unmasqueraded
        body = [f"    ip saddr {addr.POD_CIDR} jump want-masq",
                f"    ip saddr {addr.POD_CIDR} goto {svc_chain(service, sport)}"]
        if has_local:
            body.append(f"    goto {local_chain(service, sport)}")
        else:  # not translated here: the guard drops it (map svc-empty)
            self.empty.append(f"{self.node_ip} . {proto} . {sport.node_port} : goto {nolocal_chain(service, sport)}")
        self.chains += head + body + ["  }"]


def render(cluster: Cluster, node_index: int) -> str:
    tables = _Tables(cluster, node_index)
    for ref in sorted(cluster.services):
        service = cluster.services[ref]
        vip = cluster.service_ips.get(ref)
        if vip is None or service.external:  # headless: DNS only; ExternalName: a CNAME, no rules
            continue
        for sport in service.ports:
            tables.add(service, sport, vip)
    node_ip = addr.node_ip(node_index)
    lookup = "ip daddr . meta l4proto . th dport vmap @svc-dispatch"
    lines = [f"table ip {SVC_TABLE} {{",
             *_map("svc-dispatch", "ipv4_addr . inet_proto . inet_service", tables.dispatch),
             *_map("svc-empty", "ipv4_addr . inet_proto . inet_service", tables.empty),
             *_map("nodeport-dispatch", "inet_proto . inet_service", tables.nodeports),
             *tables.sets,
             "  chain refuse {", "    meta l4proto tcp reject with tcp reset", "    reject", "  }",
             "  chain want-masq {", f"    meta mark set meta mark | {MASQ_MARK}", "  }",
             "  chain dnat-in {", "    type nat hook prerouting priority dstnat; policy accept;", f"    {lookup}",
             f"    ip daddr {node_ip} meta l4proto . th dport vmap @nodeport-dispatch", "  }",
             "  chain dnat-local {", "    type nat hook output priority -100; policy accept;", f"    {lookup}", "  }",
             "  chain snat-out {", "    type nat hook postrouting priority srcnat; policy accept;",
             f"    meta mark & {MASQ_MARK} == {MASQ_MARK} masquerade",
             f"    ip saddr {addr.POD_CIDR} ip daddr {addr.INTERNET_CIDR} masquerade comment "
             '"pods reach the internet from their node\'s address"', "  }"]
    for name, hook, priority in (("svc-guard-in", "prerouting", "dstnat + 10"), ("svc-guard-local", "output", "-90")):
        lines += [f"  chain {name} {{", f"    type filter hook {hook} priority {priority}; policy accept;",
                  "    ct state new ip daddr . meta l4proto . th dport vmap @svc-empty",
                  f"    ct state new ip daddr {addr.SERVICE_CIDR} goto refuse", "  }"]
    return "\n".join(lines + tables.chains + ["}"])
