"""Deterministic addresses: node pod CIDRs, pod IPs, Service ClusterIPs, node and lab hosts.

Owns the lab's address plan. The same sequence of operations always yields the same
addresses, so the oracle, the sim backend and the docker backend agree on every IP.
It never looks at the host's real interfaces.
"""
from __future__ import annotations

import ipaddress
import zlib

from labkit.errors import ModelError

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
NODE_FABRIC = ipaddress.ip_network("198.18.0.0/24")
MAX_NODES = 8  # a lab has 1..MAX_NODES nodes, each with a /24 of pods
INTERNET_CIDR = ipaddress.ip_network("203.0.113.0/24")
INTERNET_HOST_IP = "203.0.113.10"
INTERNET_GATEWAY = "203.0.113.1"  # node-1's address towards the internet host
DNS_SERVICE_IP = "10.96.0.10"
KUBERNETES_SERVICE_IP = str(SERVICE_CIDR.network_address + 1)  # default/kubernetes, as in every cluster
FIRST_SERVICE_IP = ipaddress.ip_address("10.96.0.20")
CLUSTER_DOMAIN = "cluster.local"
NODE_PORT_FIRST, NODE_PORT_LAST = 30000, 32767
# Deployment pod names use the same alphabet as Kubernetes' rand.SafeEncodeString.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def in_lab(ip: str) -> bool:
    """Is ``ip`` one of the lab's own addresses (pods, Services, nodes, the internet host's network)?"""
    a = ipaddress.ip_address(ip)
    return any(a in net for net in (POD_CIDR, SERVICE_CIDR, NODE_FABRIC, INTERNET_CIDR))


def node_name(index: int) -> str:
    """Nodes are ``node-1``, ``node-2``, ... (index starts at 1)."""
    return f"node-{index}"


def node_pod_cidr(index: int) -> ipaddress.IPv4Network:
    """``node-i`` owns ``10.244.i.0/24``."""
    return ipaddress.ip_network(f"10.244.{index}.0/24")


def node_gateway(index: int) -> str:
    return str(node_pod_cidr(index).network_address + 1)


def node_ip(index: int) -> str:
    """The node's own address on the lab fabric (where NodePorts answer)."""
    return str(NODE_FABRIC.network_address + index)


def next_free(network: ipaddress.IPv4Network, used: set[str], cursor: str | None,
              reserved: set[str]) -> str:
    """The next free host address after ``cursor`` (wrapping), like CNI host-local."""
    # Host addresses are network+1 .. broadcast-1; computed, not listed (a /16 has 65,534).
    first, count = int(network.network_address) + 1, network.num_addresses - 2
    start = 0 if cursor is None else int(ipaddress.ip_address(cursor)) - first + 1
    for offset in range(count):
        candidate = str(ipaddress.ip_address(first + (start + offset) % count))
        if candidate not in used and candidate not in reserved:
            return candidate
    raise ModelError(f"no free address left in {network}: the lab is full (fewer pods, or more nodes)")


def safe_suffix(seed: str, length: int) -> str:
    """A deterministic string over Kubernetes' safe alphabet (for replica names)."""
    out, value = [], zlib.crc32(seed.encode())
    for i in range(length):
        value = zlib.crc32(f"{seed}:{i}:{value}".encode())
        out.append(_SAFE[value % len(_SAFE)])
    return "".join(out)
