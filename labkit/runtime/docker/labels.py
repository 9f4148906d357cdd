"""How the docker runtime marks and names what it creates on an engine: label keys, container names.

Owns the Docker-visible identity of a lab's objects, defined once (as kind defines its
label keys once): every container carries ``io.labkit.lab`` and ``io.labkit.owner`` plus
its role, pod, node and the session (process) that created it. Container names are
``labkit-<owner>.<lab>_<what>`` with separators that cannot occur inside the parts, so two
labs (or two owners) can never produce the same name; long names end in a hash.
"""
from __future__ import annotations

import os
import re

from labkit.dataplane.names import short_hash

LAB = "io.labkit.lab"
OWNER = "io.labkit.owner"
ROLE = "io.labkit.role"          # node | pause | app | internet
POD = "io.labkit.pod"            # ns/name
NODE = "io.labkit.node"          # node-1
CONTAINER = "io.labkit.container"
VERSION = "io.labkit.version"
SESSION = "io.labkit.session"    # the Python process that created it (its own clean-up uses it)
SERVER = "io.labkit.server"      # the lab server that runs it for a learner (a restarted server removes it)
NODE_CODE = "io.labkit.node-sha256"  # hash of the in-image agent, on the image
IMAGE_REPO = "labkit/lab"

SESSION_ID = f"{os.getpid()}-{os.urandom(3).hex()}"
NAME_MAX = 63


def image(version: str) -> str:
    return f"{IMAGE_REPO}:{version}"


def _owner_part(owner: str) -> str:
    """The owner in a container name: as is when it is [a-z0-9-], else escaped and hashed."""
    if re.fullmatch(r"[a-z0-9-]+", owner):
        return owner
    return re.sub(r"[^a-z0-9-]", "-", owner.lower()) + "-" + short_hash(owner, 6)


def _bounded(name: str) -> str:
    return name if len(name) <= NAME_MAX else f"{name[:NAME_MAX - 9]}-{short_hash(name)}"


def _base(owner: str, lab: str) -> str:
    # owner part: [a-z0-9-]; lab: a DNS label. "." and "_" occur in neither, so they separate.
    return f"labkit-{_owner_part(owner)}.{lab}_"


def node_container(owner: str, lab: str, node: str) -> str:
    return _bounded(_base(owner, lab) + node)


def internet_container(owner: str, lab: str) -> str:
    return _bounded(_base(owner, lab) + "internet")


def pause_container(owner: str, lab: str, pod: str) -> str:
    ns, name = pod.split("/")
    return _bounded(_base(owner, lab) + f"{ns}.{name}")  # ns: a DNS label; name may hold dots


def app_container(owner: str, lab: str, pod: str, container: str) -> str:
    ns, name = pod.split("/")
    return _bounded(_base(owner, lab) + f"{ns}.{name}_{container}")  # "_" never occurs in k8s names


def labels(lab: str, owner: str, role: str, **extra: str | None) -> dict[str, str]:
    out = {LAB: lab, OWNER: owner, ROLE: role, SESSION: SESSION_ID}
    keys = {"pod": POD, "node": NODE, "container": CONTAINER, "version": VERSION, "server": SERVER}
    out.update({keys[k]: v for k, v in extra.items() if v is not None})
    return out


def selector(lab: str | None = None, owner: str | None = None, session: str | None = None,
             server: str | None = None) -> list[str]:
    """Docker label filters (ANDed) for labkit's containers, narrowed by lab, owner, session and server."""
    out = [LAB if lab is None else f"{LAB}={lab}"]
    if owner is not None:
        out.append(f"{OWNER}={owner}")
    if session is not None:
        out.append(f"{SESSION}={session}")
    if server is not None:
        out.append(f"{SERVER}={server}")
    return out
