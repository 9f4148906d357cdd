"""Small helpers shared by the integration tests (real Docker engine).

Only reads the engine or removes containers labelled with a lab the calling test created.
The engine is observed through the plain docker CLI (``tests.dockercli``), never through
labkit; labkit is used only through its public API. The container labels below are
labkit's documented contract, spelled out here once for every test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from labkit.runtime.base import default_owner
from tests.dockercli import Client

# labkit's documented container labels
LAB_LABEL = "io.labkit.lab"
OWNER_LABEL = "io.labkit.owner"
ROLE_LABEL = "io.labkit.role"            # node | pause | app | internet
POD_LABEL = "io.labkit.pod"              # ns/name
NODE_LABEL = "io.labkit.node"            # node-1
CONTAINER_LABEL = "io.labkit.container"  # an app container's name in its pod
SESSION_LABEL = "io.labkit.session"      # the process that created it (backend.session)
VERSION_LABEL = "io.labkit.version"
NODE_CODE_LABEL = "io.labkit.node-sha256"  # on the lab image: the hash of its node agent
REPO = Path(__file__).resolve().parents[2]

_client = Client()


def client() -> Client:
    """The engine, as the docker CLI sees it."""
    return _client


def backend():
    """labkit's docker backend (public API) that the conftest gate opened, or a fresh one."""
    from tests import conftest
    return conftest.docker_backend()


def lab_image() -> str:
    """The lab image's tag, once labkit has checked that it matches this installation."""
    return backend().image()


def lab_selector(lab: str, owner: str | None = None, **labels: str) -> list[str]:
    """Label filters for ``owner``'s lab (default: the caller's owner) plus ``role=``, ``pod=``, ``node=``."""
    keys = {"role": ROLE_LABEL, "pod": POD_LABEL, "node": NODE_LABEL, "container": CONTAINER_LABEL}
    return ([f"{LAB_LABEL}={lab}", f"{OWNER_LABEL}={owner or default_owner()}"]
            + [f"{keys[k]}={v}" for k, v in labels.items()])


def lab_containers(lab: str, owner: str | None = None, **labels: str) -> list:
    """The containers of ``owner``'s lab (default: the caller's), narrowed by ``role=``, ``pod=``, ``node=``."""
    return client().containers.list(all=True, filters={"label": lab_selector(lab, owner, **labels)})


def remove_lab_containers(lab: str, owner: str | None = None) -> int:
    """Force-remove what a test's own lab left behind (only containers labelled with ``lab`` and its owner)."""
    assert lab, "refusing to remove without a lab name"
    owner = owner or default_owner()
    gone = 0
    for c in lab_containers(lab, owner):
        if c.labels.get(LAB_LABEL) == lab and c.labels.get(OWNER_LABEL) == owner:
            c.remove(force=True)
            gone += 1
    return gone


def node_container(lab: str, node: str = "node-1"):
    found = lab_containers(lab, role="node", node=node)
    assert len(found) == 1, f"expected one container for {lab}/{node}, found {[c.name for c in found]}"
    return found[0]


def node_exec(lab: str, argv: list[str], node: str = "node-1") -> str:
    """Run a read-only command in a node container (its own network namespace)."""
    code, out = node_container(lab, node).exec_run(argv)
    assert code == 0, f"{argv} in {lab}/{node} exited {code}: {out.decode(errors='replace')}"
    return out.decode(errors="replace")


def veths(lab: str, node: str = "node-1") -> set[str]:
    """Names of the pods' veth ends in a node's namespace (the ports of its cni0 bridge)."""
    text = node_exec(lab, ["ip", "-o", "link", "show", "master", "cni0", "type", "veth"], node)
    return {line.split(":")[1].strip().split("@")[0] for line in text.splitlines() if line.strip()}


def pod_containers(lab: str, ref: str) -> list:
    return lab_containers(lab, pod=ref)


def pod_doc(name: str, namespace: str = "default", ports: Iterable[tuple[int, str]] = ((80, "TCP"),),
            labels: dict[str, str] | None = None, node: str | None = None,
            containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Pod manifest; by default one container of the lab image serving ``ports``."""
    if containers is None:
        containers = [{"name": "app", "ports": [{"containerPort": p, "protocol": proto} for p, proto in ports]}]
    spec: dict[str, Any] = {"containers": containers}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {"app": name})},
            "spec": spec}


def namespace_doc(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment_doc(name: str, replicas: int, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}}}}


def python_env() -> dict[str, str]:
    """Environment for a child python that imports this checkout's labkit."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_python(code: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=env or python_env(), cwd=str(REPO))


def wait_until(predicate, timeout: float = 10.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def host_state() -> dict[str, str]:
    """What a lab must never change on the host (read-only commands)."""
    def run(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout

    state = {
        "ip route": run(["ip", "route", "show", "table", "all"]),
        "ip rule": run(["ip", "rule"]),
        "ip -o link": run(["ip", "-o", "link"]),
        "ip -o addr": run(["ip", "-o", "addr"]),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "docker networks": repr(sorted((n.id, n.name) for n in client().networks.list())),
    }
    for path in ("/proc/sys/net/bridge/bridge-nf-call-iptables", "/proc/sys/net/ipv4/conf/all/rp_filter"):
        if Path(path).exists():
            state[path] = Path(path).read_text()
    if shutil.which("nft"):
        listed = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, timeout=30)
        if listed.returncode == 0:
            state["nft list ruleset"] = listed.stdout
    return state
