"""Anti-spoofing on each pod's port: the ``bridge labkit-guard`` table of one node.

Owns the rule that a frame entering the node from a pod's port carries that pod's own MAC,
and, when it is IPv4 or ARP, the pod's own IPv4 address (as Calico and Cilium check per
workload interface); anything else from a pod is dropped and counted. It runs on the
bridge's prerouting hook, before the bridge learns a MAC address from the frame, so a pod
can neither forge another pod's source address nor poison an ARP cache or the bridge's
forwarding table. Pods keep NET_RAW (ping and tcpdump work); they just cannot lie.
Ports and MACs follow from the pod's address (``names.pod_port``/``pod_mac``), so this is
a pure function of the model.
"""
from __future__ import annotations

from labkit.dataplane import names, nft_pol
from labkit.dataplane.names import GUARD_TABLE
from labkit.model.cluster import Cluster

SPOOFED_SOURCE = "spoofed source address"  # the comment of the IPv4 rule, found by explain


def guard_chain(ref: str) -> str:
    ns, name = ref.split("/")
    return names.nft_chain(f"guard_{ns}_{name}")


def find_rule(listing: str, chain: str, what: str) -> str | None:
    """The rule of a pod's guard chain whose comment ends with ``what`` (e.g. ``SPOOFED_SOURCE``)."""
    return next((line for line in nft_pol.chain_rules(listing, chain) if line.endswith(f': {what}"')), None)


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(x) for x in ip.split("."))


def render(cluster: Cluster, node_index: int) -> str:
    local = sorted((r for r, i in cluster.pod_nodes.items() if i == node_index),
                   key=lambda r: _ip_key(cluster.pod_ips[r]))
    lines = [f"table bridge {GUARD_TABLE} {{", "  map pod-ports {", "    type ifname : verdict"]
    if local:
        lines.append("    elements = { " + ",\n                 ".join(
            f'"{names.pod_port(cluster.pod_ips[r])}" : jump {guard_chain(r)}' for r in local) + " }")
    lines += ["  }",
              "  chain prerouting {",
              "    type filter hook prerouting priority -300; policy accept;",
              "    iifname vmap @pod-ports",
              # a pod port not (or no longer) in the map: its pod is being set up or torn down
              '    iifname "lkp*" counter drop comment "a pod port with no pod in force"',
              "  }"]
    for ref in local:
        ip = cluster.pod_ips[ref]
        mac = names.pod_mac(ip)
        lines += [f"  chain {guard_chain(ref)} {{",
                  "    " + names.nft_comment(f"{ref} may send only as {ip} / {mac}"),
                  f"    ether saddr != {mac} counter drop " + names.nft_comment(f"{ref}: frame with another MAC"),
                  f"    arp saddr ether != {mac} counter drop " + names.nft_comment(f"{ref}: ARP with another MAC"),
                  f"    arp saddr ip != {ip} counter drop " + names.nft_comment(f"{ref}: ARP for another address"),
                  f"    ip saddr != {ip} counter drop " + names.nft_comment(f"{ref}: {SPOOFED_SOURCE}"),
                  "    ether type != { ip, arp } counter drop " + names.nft_comment(f"{ref}: neither IPv4 nor ARP"),
                  "    accept " + names.nft_comment(f"{ref} sends as itself"),
                  "  }"]
    return "\n".join(lines + ["}"])
