"""NetworkPolicies in nftables: the ``inet labkit-pol`` table of one node, and the fence.

Owns the rendering of policies for the pods of one node: established/related first;
maps from a local pod's IP to its ``in_<ns>_<pod>``/``out_<ns>_<pod>`` chain (present only
when a policy isolates the pod for that direction); per-pod chains that jump to one chain
per selecting policy and end in ``drop``; per-policy chains with one commented rule per
(rule, peer, port). Also the fence: IPv6 dropped, IPv4 outside the lab's ranges rejected.
"""
from __future__ import annotations

import ipaddress

from labkit.dataplane import names
from labkit.dataplane.names import POL_TABLE
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.objects import NetworkPolicy, Peer, PolicyPort, PolicyRule
from labkit.semantics import policy as pol

LAB_PREFIXES = (addr.POD_CIDR, addr.SERVICE_CIDR, addr.NODE_FABRIC, addr.INTERNET_CIDR)
_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


def pod_chain(direction: str, ref: str) -> str:
    ns, name = ref.split("/")
    return names.nft_chain(f"{'in' if direction == 'ingress' else 'out'}_{ns}_{name}")


def policy_chain(policy: NetworkPolicy, direction: str) -> str:
    return names.nft_chain(f"np_{policy.namespace}_{policy.name}_{'in' if direction == 'ingress' else 'out'}")


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(x) for x in ip.split("."))


def _set(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _peer_matches(cluster: Cluster, policy: NetworkPolicy, peer: Peer, field: str) -> list[str] | None:
    """nft match statements for a peer, or None when it can match no IPv4 address."""
    if peer.ip_block is not None:
        net = pol.network(peer.ip_block.cidr)
        if net.version != 4:
            return None
        out = [f"ip {field} {net}"]
        excepts = [str(pol.network(e)) for e in peer.ip_block.except_ if pol.network(e).version == 4]
        if excepts:
            out.append(f"ip {field} != {_set(excepts)}")
        return out
    ips = sorted((cluster.pod_ips[ref] for ref, pod in cluster.pods.items()
                  if ref in cluster.pod_ips and pol.peer_matches(cluster, policy, peer, pod, cluster.pod_ips[ref])),
                 key=_ip_key)
    return [f"ip {field} {_set(ips)}"] if ips else None


def _port_matches(cluster: Cluster, pp: PolicyPort) -> list[str] | None:
    proto = _PROTO[pp.protocol]
    if pp.port is None:
        return [f"meta l4proto {proto}"]
    if isinstance(pp.port, int):
        return [f"{proto} dport {pp.port}" + (f"-{pp.end_port}" if pp.end_port and pp.end_port != pp.port else "")]
    elements = sorted({(cluster.pod_ips[ref], p.container_port) for ref, pod in cluster.pods.items()
                       if ref in cluster.pod_ips for p in pod.spec.ports()
                       if p.name == pp.port and p.protocol == pp.protocol},
                      key=lambda e: (_ip_key(e[0]), e[1]))
    if not elements:
        return None  # no pod exposes this named port: the entry matches nothing
    # A concatenation must always be matched against a set, even of one element.
    return ["ip daddr . meta l4proto . th dport { " + ", ".join(f"{ip} . {proto} . {port}" for ip, port in elements)
            + " }"]


NO_ALLOW = "no policy allows it"  # the comment of a pod chain's final drop


def allow_marker(policy_ref: str, direction: str, rule_index: int) -> str:
    """How an accept rule's comment starts: ``x/allow-db ingress[0]`` (then its peer and port)."""
    return f"{policy_ref} {direction}[{rule_index}]"


def decision_rule(direction: str, policy_ref: str | None, rule_index: int | None) -> str:
    """The comment prefix of the rule that made a decision: the accept of ``policy_ref``'s rule,
    or the pod chain's final drop when no policy allows it."""
    if policy_ref is not None and rule_index is not None:
        return allow_marker(policy_ref, direction, rule_index)
    return NO_ALLOW


def chain_rules(listing: str, chain: str) -> list[str]:
    """The rule lines of ``chain`` in ``nft list`` output (the inverse of ``render``'s layout)."""
    lines, inside = [], False
    for line in listing.splitlines():
        stripped = line.strip()
        if stripped.startswith("chain "):
            inside = stripped.split()[1] == chain
        elif inside and stripped == "}":
            inside = False
        elif inside and stripped:
            lines.append(stripped)
    return lines


def find_rule(listing: str, chain: str, marker: str) -> str | None:
    """The rule of ``chain`` whose comment starts with ``marker`` (as ``decision_rule`` gives it)."""
    for line in chain_rules(listing, chain):
        _, found, comment = line.partition('comment "')
        if found and (comment.startswith(marker + " ") or comment.startswith(marker + ":")
                      or comment.rstrip('"') == marker):
            return line
    return None


def _rule_lines(cluster: Cluster, policy: NetworkPolicy, rule: PolicyRule, index: int, direction: str) -> list[str]:
    field = "saddr" if direction == "ingress" else "daddr"
    word = "from" if direction == "ingress" else "to"
    peers = [(f"{word}[{i}]", _peer_matches(cluster, policy, p, field)) for i, p in enumerate(rule.peers)] \
        or [(f"any {word}", [])]
    ports = [(f"ports[{i}]", _port_matches(cluster, pp)) for i, pp in enumerate(rule.ports)] or [("any port", [])]
    lines = []
    for peer_name, peer_match in peers:
        for port_name, port_match in ports:
            if peer_match is None or port_match is None:
                continue
            where = f"{allow_marker(policy.ref, direction, index)} {peer_name} {port_name}"
            lines.append("    " + " ".join(peer_match + port_match + ["counter", "accept", names.nft_comment(where)]))
    return lines


def render(cluster: Cluster, node_index: int) -> str:
    local = sorted((r for r, i in cluster.pod_nodes.items() if i == node_index), key=lambda r: _ip_key(cluster.pod_ips[r]))
    maps: dict[str, list[str]] = {"ingress": [], "egress": []}
    pod_chains, used = [], {"ingress": set(), "egress": set()}
    for ref in local:
        pod, ip = cluster.pods[ref], cluster.pod_ips[ref]
        for direction in ("ingress", "egress"):
            selecting = pol.selecting(cluster, pod, direction.capitalize())
            if not selecting:
                continue
            chain = pod_chain(direction, ref)
            maps[direction].append(f"{ip} : jump {chain}")
            own = "saddr" if direction == "ingress" else "daddr"
            body = [f"  chain {chain} {{",
                    "    " + names.nft_comment(f"{direction} of {ref}: isolated by {', '.join(p.ref for p in selecting)}"),
                    f"    ip {own} {ip} accept"]
            for p in selecting:
                body.append(f"    jump {policy_chain(p, direction)}")
                used[direction].add(p.ref)
            pod_chains += body + ["    counter drop " + names.nft_comment(f"{NO_ALLOW}: {direction} of {ref}"),
                                  "  }"]
    policy_chains = []
    for direction in ("ingress", "egress"):
        for ref in sorted(used[direction]):
            p = cluster.policies[ref]
            rules = p.ingress if direction == "ingress" else p.egress
            body = [line for i, r in enumerate(rules) for line in _rule_lines(cluster, p, r, i, direction)]
            policy_chains += [f"  chain {policy_chain(p, direction)} {{", "    " + names.nft_comment(f"NetworkPolicy {ref} {direction}"),
                              *body, "  }"]
    prefixes = ", ".join(str(n) for n in LAB_PREFIXES)
    lines = [f"table inet {POL_TABLE} {{"]
    for direction, name in (("ingress", "ingress-isolated"), ("egress", "egress-isolated")):
        lines += [f"  map {name} {{", "    type ipv4_addr : verdict"]
        if maps[direction]:
            lines.append("    elements = { " + ",\n                 ".join(maps[direction]) + " }")
        lines.append("  }")
    lines += ["  set lab-prefixes {", "    type ipv4_addr", "    flags interval", f"    elements = {{ {prefixes} }}", "  }"]
    for name, hook in (("fence", "forward"), ("fence-out", "output")):
        lines += [f"  chain {name} {{", f"    type filter hook {hook} priority -300; policy accept;",
                  "    meta nfproto ipv6 drop",
                  '    ip daddr != @lab-prefixes counter reject with icmp type admin-prohibited comment '
                  '"the fence: nothing leaves the lab"', "  }"]
    for direction, field, prio in (("egress", "saddr", "filter - 5"), ("ingress", "daddr", "filter + 5")):
        lines += [f"  chain {direction} {{", f"    type filter hook forward priority {prio}; policy accept;",
                  "    ct state established,related accept", "    ct state invalid drop",
                  f"    ip {field} vmap @{direction}-isolated", "  }"]
    return "\n".join(lines + pod_chains + policy_chains + ["}"])


def lab_contains(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return any(address in n for n in LAB_PREFIXES)
