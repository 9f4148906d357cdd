"""Small helpers shared by the integration tests (real Docker engine).

Only reads the engine or removes containers labelled with a lab the calling test created.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

LAB_LABEL = "io.labkit.lab"
REPO = Path(__file__).resolve().parents[2]


def client():
    """The docker-py client the conftest gate connected with (or a fresh one)."""
    from tests import conftest
    if conftest._state.get("client") is not None:
        return conftest._state["client"]
    from labkit.runtime.docker import engine
    return engine.connect(timeout=30)


def lab_containers(lab: str) -> list:
    return client().containers.list(all=True, filters={"label": f"{LAB_LABEL}={lab}"})


def remove_lab_containers(lab: str) -> int:
    """Force-remove what a test's own lab left behind (only containers labelled with ``lab``)."""
    assert lab, "refusing to remove without a lab name"
    gone = 0
    for c in lab_containers(lab):
        if c.labels.get(LAB_LABEL) == lab:
            c.remove(force=True)
            gone += 1
    return gone


def node_container(lab: str, node: str = "node-1"):
    found = client().containers.list(all=True, filters={"label": [f"{LAB_LABEL}={lab}", "io.labkit.role=node",
                                                                  f"io.labkit.node={node}"]})
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
    return client().containers.list(all=True, filters={"label": [f"{LAB_LABEL}={lab}", f"io.labkit.pod={ref}"]})


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
