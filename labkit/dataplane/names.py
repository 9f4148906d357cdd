"""Every name the kernel or the Docker engine sees: containers, labels, links, tables, chains.

Owns the formatting of kernel- and Docker-visible names so that they are deterministic,
short enough (interfaces <= 15 characters, container names <= 63) and recognisable as
labkit's. Nobody else formats such a name.
"""
from __future__ import annotations

import hashlib
import os
import re

PREFIX = "labkit"
IMAGE_REPO = "labkit/lab"

# Docker labels
LAB = "io.labkit.lab"
ROLE = "io.labkit.role"          # node | pause | app | internet
POD = "io.labkit.pod"            # ns/name
NODE = "io.labkit.node"          # node-1
CONTAINER = "io.labkit.container"
VERSION = "io.labkit.version"
SESSION = "io.labkit.session"    # the Python process that created it (tests use it to spot leaks)
SESSION_ID = f"{os.getpid()}-{os.urandom(3).hex()}"
NODE_CODE = "io.labkit.node-sha256"  # hash of the in-image agent, on the image

# Links inside node network namespaces
BRIDGE = "cni0"
FABRIC_BRIDGE = "lkfabric"       # in node-1: joins every node and the internet host
POD_IFNAME = "eth0"

# nftables
SVC_TABLE = "labkit-svc"         # family ip
POL_TABLE = "labkit-pol"         # family inet
CNI_NETWORK = "labkit"


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _safe(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)


def _bounded(name: str, limit: int = 63) -> str:
    if len(name) <= limit:
        return name
    return f"{name[:limit - 9]}-{short_hash(name)}"


def image(version: str) -> str:
    return f"{IMAGE_REPO}:{version}"


def node_container(lab: str, node: str) -> str:
    return _bounded(f"{PREFIX}-{lab}-{node}")


def internet_container(lab: str) -> str:
    return _bounded(f"{PREFIX}-{lab}-internet")


def pause_container(lab: str, pod: str) -> str:
    ns, name = pod.split("/")
    return _bounded(f"{PREFIX}-{lab}-{_safe(ns)}.{_safe(name)}")


def app_container(lab: str, pod: str, container: str) -> str:
    ns, name = pod.split("/")
    return _bounded(f"{PREFIX}-{lab}-{_safe(ns)}.{_safe(name)}.{_safe(container)}")


def labels(lab: str, role: str, **extra: str) -> dict[str, str]:
    out = {LAB: lab, ROLE: role, SESSION: SESSION_ID}
    keys = {"pod": POD, "node": NODE, "container": CONTAINER, "version": VERSION}
    out.update({keys[k]: v for k, v in extra.items() if v is not None})
    return out


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


def cni_container_id(lab: str, pod: str) -> str:
    return f"{lab}-{short_hash(pod, 16)}"
