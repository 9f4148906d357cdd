"""Readiness probes, as the kubelet runs them: exec in the container, tcpSocket and httpGet
from the pod's node, with failure and success thresholds.

Owns the probing and each pod's readiness state machine (a pod with a readinessProbe
starts not ready; ``successThreshold`` passes in a row make it ready, ``failureThreshold``
failures in a row make it not ready). The backend turns the result into endpoints.
"""
from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from labkit.model.cluster import Cluster
from labkit.model.objects import Pod, ReadinessProbe
from labkit.runtime.docker import engine


@dataclass
class State:
    ready: bool = False
    failures: int = 0
    successes: int = 0
    last: str = ""


def _port(pod: Pod, port: int | str | None) -> int | None:
    if isinstance(port, int):
        return port
    return next((p.container_port for p in pod.spec.ports() if p.name == port), None)


def node_check(ip: str, pod: Pod, probe: ReadinessProbe) -> str:
    """The shell command the node runs for a tcpSocket or httpGet probe (exit 0 = pass)."""
    port = _port(pod, probe.port)
    if port is None:
        return f"echo 'no container port named {probe.port}' >&2; false"
    if probe.kind == "tcpSocket":
        return f"nc -z -w {probe.timeout_seconds} {ip} {port}"
    url = shlex.quote(f"http://{ip}:{port}{probe.path}")
    return (f"code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time {probe.timeout_seconds} {url}); "
            '[ "$code" -ge 200 ] && [ "$code" -lt 400 ]')


class Prober:
    def __init__(self, client):
        self.client = client
        self.states: dict[str, State] = {}

    def run(self, cluster: Cluster, handles: dict, nodes: list) -> set[str]:
        """Probe every pod that has a readinessProbe once; return the pods that are not ready."""
        jobs = []
        for ref, pod in sorted(cluster.pods.items()):
            for c in pod.spec.containers:
                if c.readiness_probe is not None and ref in handles:
                    jobs.append((ref, pod, c))
        self.states = {r: s for r, s in self.states.items() if r in cluster.pods}

        def one(job) -> tuple[str, bool, str]:
            ref, pod, c = job
            probe = c.readiness_probe
            handle = handles[ref]
            if probe.kind == "exec":
                code, out, err = engine.exec_raw(self.client, handle.apps[c.name].id, list(probe.command),
                                                 timeout=probe.timeout_seconds + 5)
            else:
                script = node_check(cluster.pod_ips[ref], pod, probe)
                code, out, err = engine.exec_raw(self.client, nodes[cluster.pod_nodes[ref] - 1].id,
                                                 ["sh", "-c", script], timeout=probe.timeout_seconds + 5)
            detail = (out + err).decode(errors="replace").strip()[-200:]
            return ref, code == 0, f"{probe.kind} probe of {c.name}: " + (
                "passed" if code == 0 else f"failed (exit {code}{': ' + detail if detail else ''})")

        results: dict[str, list[tuple[bool, str]]] = {}
        with ThreadPoolExecutor(max_workers=8) as pool:
            for ref, ok, why in pool.map(one, jobs):
                results.setdefault(ref, []).append((ok, why))
        for ref, outcomes in results.items():
            probe = next(c.readiness_probe for c in cluster.pods[ref].spec.containers if c.readiness_probe)
            state = self.states.setdefault(ref, State())
            passed = all(ok for ok, _ in outcomes)
            state.last = "; ".join(why for _, why in outcomes)
            state.failures, state.successes = (0, state.successes + 1) if passed else (state.failures + 1, 0)
            if not state.ready and state.successes >= probe.success_threshold:
                state.ready = True
            elif state.ready and state.failures >= probe.failure_threshold:
                state.ready = False
        return {ref for ref, s in self.states.items() if not s.ready}
