"""Read-only views of a node that a learner may ask for, and how the sim backend answers them.

Owns the allow-list of commands ``lab.exec_node`` runs in a node's network namespace
(``ip route``, ``ip addr show cni0``, ``ip link show master cni0``, ``bridge link``: how
the node routes pod traffic, and the bridge with one veth port per pod) — a node holds
every pod's rules and conntrack, so nothing else is run there for a caller — and the
simulated answers, computed from the model in the format iproute2 prints on the docker
backend (interface numbers follow the wiring order; MAC addresses of the node-side veth
ends, random on docker, are made up from the pod's address). ``port_index`` is the one
numbering of the node-side veth ends: a pod's ``eth0@ifN`` (``sim_exec``) uses it too.

``bridge link`` prints a port's peer by looking the peer's interface number up in the node's
own namespace (iproute2 ignores ``link-netnsid`` there), so every pod port, whose peer is
``eth0`` = interface 2 in the pod, shows as ``@`` + the node's interface 2: the fabric bridge
on node-1, ``fabric0`` on the others. The simulation prints the same, as the docker backend does.
"""
from __future__ import annotations

import ipaddress

from labkit.dataplane import names
from labkit.errors import ModelError
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.results import ExecResult

VIEWS = (("ip", "route"), ("ip", "addr", "show", "cni0"), ("ip", "link", "show", "master", "cni0"),
         ("bridge", "link"))
HEADER = "# simulated by labkit's sim backend (no real node): this is what the docker backend shows"


def check(node: str, argv: list[str], cluster: Cluster) -> tuple[int, tuple[str, ...]]:
    """(node index, argv) when ``argv`` is one of the views and ``node`` exists; else a ModelError."""
    if node not in cluster.node_names:
        raise ModelError(f"node {node!r} does not exist; this lab has {', '.join(cluster.node_names)}", path="node")
    wanted = tuple(str(a) for a in argv)
    if wanted not in VIEWS:
        raise ModelError(f"{' '.join(wanted) or '(nothing)'} cannot run in a node: a node holds every pod's rules, so "
                         f"only these views are allowed: {'; '.join(' '.join(v) for v in VIEWS)}", path="argv")
    return cluster.node_names.index(node) + 1, wanted


def _pods(cluster: Cluster, index: int) -> list[tuple[str, str]]:
    """(ref, ip) of the node's pods, in address order (the order they were wired in)."""
    found = [(ref, ip) for ref, ip in cluster.pod_ips.items() if cluster.pod_nodes[ref] == index]
    return sorted(found, key=lambda item: ipaddress.IPv4Address(item[1]))


def _first_port_index(cluster: Cluster, index: int) -> int:
    # node-1: lo, the fabric bridge, one fabric port per other host (internet + other nodes), cni0
    return 4 + cluster.node_count if index == 1 else 4


def _first_netnsid(cluster: Cluster, index: int) -> int:
    # node-1 first learns the namespaces of its fabric peers (internet + other nodes), the others node-1's
    return cluster.node_count if index == 1 else 1


def port_index(cluster: Cluster, pod: str) -> int:
    """The interface number of ``pod``'s veth end on its node (its line in ``ip link show master cni0``).

    The pod's ``eth0@ifN`` names this ``N``. Ports are numbered after the node's own
    interfaces, in the order the pods were wired in (address order in the model)."""
    index = cluster.pod_nodes[pod]
    refs = [ref for ref, _ in _pods(cluster, index)]
    return _first_port_index(cluster, index) + refs.index(pod)


def _veth_mac(ip: str) -> str:
    """A stable, locally administered MAC for the node's end of a pod's veth (random on docker)."""
    octets = [int(o) for o in ip.split(".")]
    return "ee:%02x:%02x:%02x:%02x:%02x" % (0x4C, *octets)


def run(cluster: Cluster, node: str, argv: list[str]) -> ExecResult:
    """The simulated output of one view in ``node``."""
    index, view = check(node, argv, cluster)
    gateway, cidr = addr.node_gateway(index), addr.node_pod_cidr(index)
    uplink = names.FABRIC_BRIDGE if index == 1 else names.FABRIC_LINK
    ports = [(ref, ip, port_index(cluster, ref)) for ref, ip in _pods(cluster, index)]
    if view == ("ip", "route"):
        lines = []
        for other in range(1, cluster.node_count + 1):
            if other == index:
                lines.append(f"{cidr} dev cni0 proto kernel scope link src {gateway} ")
            else:
                lines.append(f"{addr.node_pod_cidr(other)} via {addr.node_ip(other)} dev {uplink} ")
        lines.append(f"{addr.NODE_FABRIC} dev {uplink} proto kernel scope link src {addr.node_ip(index)} ")
        lines.append(f"{addr.INTERNET_CIDR} dev {uplink} proto kernel scope link src {addr.INTERNET_GATEWAY} "
                     if index == 1 else f"{addr.INTERNET_CIDR} via {addr.node_ip(1)} dev {uplink} ")
        text = "\n".join(lines)
    elif view == ("ip", "addr", "show", "cni0"):
        text = (f"{_first_port_index(cluster, index) - 1}: cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc "
                f"noqueue state UP group default qlen 1000\n    link/ether {names.pod_mac(gateway)} brd "
                f"ff:ff:ff:ff:ff:ff\n    inet {gateway}/24 brd {cidr.broadcast_address} scope global cni0\n"
                "       valid_lft forever preferred_lft forever")
    elif view == ("ip", "link", "show", "master", "cni0"):
        text = "\n".join(f"{n}: {names.pod_port(ip)}@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue "
                         f"master cni0 state UP mode DEFAULT group default \n    link/ether {_veth_mac(ip)} brd "
                         f"ff:ff:ff:ff:ff:ff link-netnsid {_first_netnsid(cluster, index) + k}"
                         for k, (_, ip, n) in enumerate(ports))
    else:  # bridge link
        fabric = [f"{3 + k}: {names.fabric_port(peer)}@{uplink}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master "
                  f"{names.FABRIC_BRIDGE} state forwarding priority 32 cost 2 "
                  for k, peer in enumerate([0] + list(range(2, cluster.node_count + 1)))] if index == 1 else []
        text = "\n".join(fabric + [f"{n}: {names.pod_port(ip)}@{uplink}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 "
                                   "master cni0 state forwarding priority 32 cost 2 " for _, ip, n in ports])
    return ExecResult(0, f"{HEADER}\n{text}\n" if text else f"{HEADER}\n")
