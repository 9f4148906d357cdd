"""The sim backend: answers from the oracle alone, for machines without a Docker engine.

Owns nothing but a seeded random choice among endpoints (so Services still spread
load); every result it returns says ``simulated``. It never touches the host.
"""
from __future__ import annotations

import random

from labkit.connection import SimConnection
from labkit.dataplane import ruleset
from labkit.model.cluster import Cluster
from labkit.results import ExecResult, ProbeResult
from labkit.runtime.base import Backend, ProbeRequest
from labkit.semantics.oracle import explain


class SimBackend(Backend):
    name = "sim"
    simulated = True

    def __init__(self, seed: int = 0):
        self._random = random.Random(seed)
        self._flushes = 0
        self._cluster: Cluster | None = None

    def start(self, lab: str, cluster: Cluster) -> None:
        self.lab = lab

    def sync(self, old: Cluster, new: Cluster) -> None:
        self._cluster = new

    def connect(self, cluster: Cluster, src: str, dst_ip: str, port: int, timeout: float):
        self._cluster = cluster
        return SimConnection(lambda: explain(self._cluster, src, dst_ip, port, "TCP"), lambda: self._flushes,
                             src, dst_ip, port)

    def reset_connections(self) -> int:
        self._flushes += 1
        return 1

    def probe(self, cluster: Cluster, requests: list[ProbeRequest], timeout: float) -> list[ProbeResult]:
        results = []
        for r in requests:
            ex = explain(cluster, r.src, r.dst, r.port, r.protocol)
            # A client reaches one endpoint: the load balancer picks it at random.
            outcome = self._random.choice(ex.outcomes)
            results.append(ProbeResult(outcome.allowed, None, outcome.answered_by,
                                       None if outcome.allowed else outcome.error, True,
                                       ex.src, r.dst, r.port, r.protocol))
        return results

    def exec(self, cluster: Cluster, pod: str, argv: list[str], container: str | None = None) -> ExecResult:
        # No processes here: a few teaching commands are answered from the model, the rest exit 127.
        from labkit.runtime import sim_exec  # noqa: PLC0415
        return sim_exec.run(cluster, pod, argv, container, self._random)

    def rules(self, cluster: Cluster) -> str:
        head = "# simulated: the nftables ruleset the docker backend would apply in each node\n"
        parts = [(f"# {name}\n" if cluster.node_count > 1 else "") + ruleset.render(cluster, i)
                 for i, name in enumerate(cluster.node_names, start=1)]
        return head + "\n".join(parts)

    def close(self) -> None:
        return None
