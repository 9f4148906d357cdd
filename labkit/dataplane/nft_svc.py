"""Services in nftables: the ``ip labkit-svc`` table, labkit's kube-proxy (nftables mode).

Owns the rendering of Services into a verdict map ``VIP . proto . port`` -> one chain per
service port -> ``numgen random mod N`` -> one chain per endpoint -> ``dnat``; hairpin
masquerade; ClientIP affinity; NodePorts on the node's fabric address; and immediate
refusal for Service ports without ready endpoints or unknown VIP ports. Chain names are
readable and deterministic (``svc_<ns>_<name>_<port>``, ``ep_..._<ip>``).
"""
from __future__ import annotations

from labkit.dataplane import names
from labkit.dataplane.names import SVC_TABLE
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.objects import Service, ServicePort
from labkit.semantics.services import Endpoint, ready_endpoints

MASQ_MARK = "0x4000"
AFFINITY_TIMEOUT = "10800s"
_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


def port_label(sport: ServicePort) -> str:
    return sport.name or f"{sport.protocol.lower()}-{sport.port}"


def svc_chain(service: Service, sport: ServicePort) -> str:
    return names.nft_chain(f"svc_{service.namespace}_{service.name}_{port_label(sport)}")


def ep_chain(service: Service, sport: ServicePort, ep: Endpoint) -> str:
    return names.nft_chain(f"ep_{service.namespace}_{service.name}_{port_label(sport)}_{ep.ip}")


def ext_chain(service: Service, sport: ServicePort) -> str:
    return names.nft_chain(f"ext_{service.namespace}_{service.name}_{port_label(sport)}")


def _map(name: str, key: str, elements: list[str]) -> list[str]:
    lines = [f"  map {name} {{", f"    type {key} : verdict"]
    if elements:
        lines.append("    elements = { " + ",\n                 ".join(elements) + " }")
    return lines + ["  }"]


def _service_chains(service: Service, sport: ServicePort, eps: list[Endpoint]) -> list[str]:
    proto = _PROTO[sport.protocol]
    head = f"  chain {svc_chain(service, sport)} {{"
    lines = [head, "    " + names.nft_comment(f"Service {service.ref} port {port_label(sport)} {sport.port}/{sport.protocol}")]
    affinity = service.session_affinity == "ClientIP"
    if affinity:
        lines += [f"    ip saddr @aff_{ep_chain(service, sport, e)[3:]} goto {ep_chain(service, sport, e)}" for e in eps]
    if len(eps) == 1:
        lines.append(f"    goto {ep_chain(service, sport, eps[0])}")
    else:
        targets = ", ".join(f"{i} : goto {ep_chain(service, sport, e)}" for i, e in enumerate(eps))
        lines.append(f"    numgen random mod {len(eps)} vmap {{ {targets} }}")
    lines.append("  }")
    for e in eps:
        lines += [f"  chain {ep_chain(service, sport, e)} {{",
                  "    " + names.nft_comment(f"endpoint {e.pod} {e.ip}:{e.port}"),
                  f"    ip saddr {e.ip} jump want-masq"]
        if affinity:
            lines.append(f"    update @aff_{ep_chain(service, sport, e)[3:]} {{ ip saddr }}")
        lines += [f"    meta l4proto {proto} dnat to {e.ip}:{e.port}", "  }"]
    return lines


def render(cluster: Cluster, node_index: int) -> str:
    dispatch, empty, nodeports, chains, sets = [], [], [], [], []
    for ref in sorted(cluster.services):
        service = cluster.services[ref]
        vip = cluster.service_ips.get(ref)
        if vip is None:  # headless: DNS only, no rules
            continue
        for sport in service.ports:
            proto = _PROTO[sport.protocol]
            key = f"{vip} . {proto} . {sport.port}"
            eps = sorted(ready_endpoints(cluster, service, sport), key=lambda e: tuple(map(int, e.ip.split("."))))
            if not eps:
                empty.append(f"{key} : goto refuse")
                if sport.node_port:
                    empty.append(f"{addr.node_ip(node_index)} . {proto} . {sport.node_port} : goto refuse")
                continue
            dispatch.append(f"{key} : goto {svc_chain(service, sport)}")
            chains += _service_chains(service, sport, eps)
            if service.session_affinity == "ClientIP":
                for e in eps:
                    sets += [f"  set aff_{ep_chain(service, sport, e)[3:]} {{", "    type ipv4_addr",
                             "    flags dynamic,timeout", f"    timeout {AFFINITY_TIMEOUT}", "  }"]
            if sport.node_port:
                nodeports.append(f"{proto} . {sport.node_port} : goto {ext_chain(service, sport)}")
                chains += [f"  chain {ext_chain(service, sport)} {{",
                           "    " + names.nft_comment(f"NodePort {sport.node_port} of Service {service.ref}"),
                           "    jump want-masq", f"    goto {svc_chain(service, sport)}", "  }"]
    node_ip = addr.node_ip(node_index)
    lookup = "ip daddr . meta l4proto . th dport vmap @svc-dispatch"
    lines = [f"table ip {SVC_TABLE} {{",
             *_map("svc-dispatch", "ipv4_addr . inet_proto . inet_service", dispatch),
             *_map("svc-empty", "ipv4_addr . inet_proto . inet_service", empty),
             *_map("nodeport-dispatch", "inet_proto . inet_service", nodeports),
             *sets,
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
    return "\n".join(lines + chains + ["}"])
