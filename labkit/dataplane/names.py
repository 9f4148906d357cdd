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
TRACE_TABLE = "labkit-trace"     # families bridge and ip: labkit-trace-<token> marks one walk's connections
FLOWS_TABLE = "labkit-flows"     # family ip: labkit-flows-<token> marks every new connection for a flow log
CNI_NETWORK = "labkit"


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _bounded(name: str, limit: int = 63) -> str:
    if len(name) <= limit:
        return name
    return f"{name[:limit - 9]}-{short_hash(name)}"


def trace_table(token: str) -> str:
    """The table of one packet walk (two processes tracing one lab never touch each other's)."""
    return f"{TRACE_TABLE}-{token}"


def flows_table(token: str) -> str:
    """The table of one flow log's agents."""
    return f"{FLOWS_TABLE}-{token}"


def is_trace_table(name: str) -> bool:
    return name == TRACE_TABLE or name.startswith(TRACE_TABLE + "-")


def is_flows_table(name: str) -> bool:
    return name == FLOWS_TABLE or name.startswith(FLOWS_TABLE + "-")


def port_pod_ip(ifname: str) -> str | None:
    """The pod IPv4 address a ``pod_port`` name carries (``lkp0af40103`` -> ``10.244.1.3``), else None."""
    h = ifname[3:]
    if not ifname.startswith("lkp") or len(h) != 8 or any(c not in "0123456789abcdef" for c in h):
        return None
    return ".".join(str(int(h[k:k + 2], 16)) for k in range(0, 8, 2))


def fabric_node(ifname: str) -> int | None:
    """The node index a ``fabric_port`` name carries (``lkf2`` -> 2; 0 is the internet host), else None."""
    return int(ifname[3:]) if ifname.startswith("lkf") and ifname[3:].isdigit() else None


def is_fabric(ifname: str) -> bool:
    """An interface of the node fabric: the bridge in node-1, a node's link, or one of node-1's ports."""
    return ifname in (FABRIC_BRIDGE, FABRIC_LINK) or fabric_node(ifname) is not None


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
