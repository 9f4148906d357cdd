"""Every name the kernel sees: links, tables, chains, rule comments, CNI container IDs.

Owns the formatting of kernel-visible names so that they are deterministic, short enough
(interfaces <= 15 characters, nft names <= 255, comments <= 128 bytes) and recognisable as
labkit's. Nobody else formats such a name. (Docker-visible names and label keys belong to
the docker runtime: ``labkit.runtime.docker.labels``.)
"""
from __future__ import annotations

import hashlib

PREFIX = "labkit"

# Links inside node network namespaces
BRIDGE = "cni0"
FABRIC_BRIDGE = "lkfabric"       # in node-1: joins every node and the internet host
POD_IFNAME = "eth0"

# nftables
SVC_TABLE = "labkit-svc"         # family ip
POL_TABLE = "labkit-pol"         # family inet
GUARD_TABLE = "labkit-guard"     # family bridge: anti-spoofing on each pod's port
TRACE_TABLE = "labkit-trace"     # families bridge and ip: marks one packet walk's connection, for a moment
FLOWS_TABLE = "labkit-flows"     # family ip: marks every new connection while a flow log runs
CNI_NETWORK = "labkit"


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _bounded(name: str, limit: int = 63) -> str:
    if len(name) <= limit:
        return name
    return f"{name[:limit - 9]}-{short_hash(name)}"


def fabric_port(node_index: int) -> str:
    """The node-1 end of node i's fabric link (node 0 = the internet host)."""
    return f"lkf{node_index}"


FABRIC_LINK = "fabric0"  # the fabric link's end inside a node or the internet host


NFT_COMMENT_MAX = 128  # bytes, the kernel's NFT_USERDATA_MAXLEN for comments
NFT_NAME_MAX = 255


def nft_comment(text: str) -> str:
    """A quoted nft comment, shortened to what the kernel accepts."""
    text = text.replace('"', "'")
    if len(text.encode()) > NFT_COMMENT_MAX:
        text = text.encode()[:NFT_COMMENT_MAX - 3].decode(errors="ignore") + "..."
    return f'comment "{text}"'


def nft_chain(name: str) -> str:
    """A readable chain name, hashed at the end when it would be too long for nft."""
    return _bounded(name, NFT_NAME_MAX)


def _ip_hex(ip: str) -> str:
    return "".join(f"{int(o):02x}" for o in ip.split("."))


def pod_port(ip: str) -> str:
    """The node-side end of a pod's veth (a cni0 port): ``lkp`` + the pod's IPv4 in hex (11 chars)."""
    return f"lkp{_ip_hex(ip)}"


def pod_mac(ip: str) -> str:
    """The pod's MAC: ``0a:58`` (locally administered) + its IPv4 address, as OVN-Kubernetes gives it."""
    h = _ip_hex(ip)
    return "0a:58:" + ":".join(h[i:i + 2] for i in range(0, 8, 2))


def cni_container_id(lab: str, pod: str) -> str:
    return f"{lab}-{short_hash(pod, 16)}"
