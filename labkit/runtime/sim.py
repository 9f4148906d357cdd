"""The sim backend: labs answered from the oracle alone, for machines without a Docker engine.

Owns the simulated "engine" (the labs started through one ``SimBackend`` object, with
owner and age) and the ``SimLab`` runtime: a model rebuilt from operations, a seeded
random choice among endpoints (so Services still spread load) that honours ClientIP session
affinity with its timeout (on the backend's clock, which a test may give), and the containers' files
and readiness probes of ``sim_pods`` (so endpoints follow readiness as on docker). Every
result it returns says ``simulated``. It never touches the host.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable

from labkit.connection import SimConnection
from labkit.dataplane import ruleset
from labkit.errors import BackendError, NotFound
from labkit.model.addressing import INTERNET_HOST_IP, MAX_NODES
from labkit.model.cluster import Cluster
from labkit.results import ExecResult, ProbeResult
from labkit.runtime.base import (Backend, Capabilities, LabInfo, LabRuntime, ProbeRequest, Readiness,
                                 check_owner, replay)
from labkit.runtime import node_views, sim_capture, sim_flows, sim_pods
from labkit.runtime.flowing import sources_of
from labkit.semantics import oracle


class SimLab(LabRuntime):
    simulated = True

    def __init__(self, name: str, owner: str, cluster: Cluster, seed: int, on_close=None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(name, owner, cluster)
        self.created = time.time()
        self._random = random.Random(seed)
        self._flushes = 0
        self._on_close = on_close
        self.closed = False
        self.files = sim_pods.Files()  # what each container holds: touch/rm/test -e/cat act on it
        self._prober = sim_pods.Prober(self.files, self._random)
        # called with (requests, results, timeout) after each probe batch (the flow log, captures)
        self.probe_observers: list[Callable[[list[ProbeRequest], list[ProbeResult], float], None]] = []
        self.captures = sim_capture.SimCaptures()  # running captures see the packets of every probe
        self.probe_observers.append(lambda requests, results, timeout: self.captures.observe(
            self.cluster, requests, results, timeout))
        self.clock = clock  # seconds, for ClientIP affinity's timeouts
        # (service "ns/name port/PROTO", client IP) -> (endpoint "ip:port", when the affinity ends)
        self._affinity: dict[tuple[str, str], tuple[str, float]] = {}

    def pick(self, src: str, ex: oracle.Explanation) -> oracle.Outcome:
        """The outcome of one new connection: the endpoint kube-proxy picks at random, or, for a Service
        with ``sessionAffinity: ClientIP``, the one this client IP reached last while its timeout lasts
        (each new connection through the Service starts the timeout again, as kube-proxy's affinity set)."""
        outcomes = ex.outcomes
        via = outcomes[0].service if outcomes else None
        if via is None or any(o.service != via for o in outcomes):
            return self._random.choice(outcomes)
        service = self.cluster.services.get(via.split(" ")[0])
        if service is None or service.session_affinity != "ClientIP":
            return self._random.choice(outcomes)
        client = INTERNET_HOST_IP if src == oracle.INTERNET else self.cluster.pod_ips[self.cluster.pod(src).ref]
        now = self.clock()
        kept = self._affinity.get((via, client))
        chosen = next((o for o in outcomes if kept and now < kept[1] and o.endpoint == kept[0]), None)
        chosen = chosen or self._random.choice(outcomes)
        self._affinity[(via, client)] = (chosen.endpoint, now + service.affinity_timeout)
        return chosen

    def _enforce(self, old: Cluster, new: Cluster) -> None:
        if self.closed:
            raise BackendError(f"lab {self.name!r} was removed")
        gone = sim_pods.replaced(old, new)  # a new pod starts with the image's files and no probe history
        self.files.forget(gone)
        self._prober.forget(gone)

    def refresh_readiness(self) -> Readiness:
        """Run every readiness probe once against the model's files and ports (see ``sim_pods``)."""
        not_ready = self._prober.run(self.cluster)
        events = []
        for ref in sorted(set(self.cluster.not_ready) ^ not_ready):
            detail = self._prober.states[ref].last if ref in self._prober.states else ""
            events.append(f"pod {ref} is {'not ready' if ref in not_ready else 'ready'}"
                          + (f" ({detail})" if detail else ""))
        self.cluster = self.cluster.with_readiness(not_ready)
        return Readiness(frozenset(not_ready), tuple(events))

    def readiness_detail(self, pod: str) -> str:
        state = self._prober.states.get(self.cluster.pod(pod).ref)
        return state.last if state else ""

    def connect(self, src: str, dst: str, port: int, timeout: float):
        ref = self.cluster.pod(src).ref
        target = self._dst_ip(dst)
        return SimConnection(lambda: oracle.explain(self.cluster, ref, target, port, "TCP"), lambda: self._flushes,
                             ref, target, port)

    def reset_connections(self) -> int:
        self._flushes += 1
        return 1

    def probe(self, requests: list[ProbeRequest], timeout: float) -> list[ProbeResult]:
        results = []
        for r in requests:
            ex = oracle.explain(self.cluster, r.src, self._dst_ip(r.dst), r.port, r.protocol)
            outcome = self.pick(r.src, ex)  # one endpoint: at random, or the one ClientIP affinity keeps
            results.append(ProbeResult(outcome.allowed, None, outcome.answered_by,
                                       None if outcome.allowed else outcome.error, True,
                                       ex.src, r.dst, r.port, r.protocol, client_ip=outcome.client_ip))
        for observer in list(self.probe_observers):
            observer(requests, results, timeout)
        return results

    def exec(self, pod: str, argv: list[str], container: str | None = None) -> ExecResult:
        # No processes here: a few teaching commands are answered from the model, the rest exit 127.
        from labkit.runtime import sim_exec  # noqa: PLC0415
        return sim_exec.run(self.cluster, self.cluster.pod(pod).ref, argv, container, self._random, self.files,
                            self.pick)

    def exec_node(self, node: str, argv: list[str]) -> ExecResult:
        return node_views.run(self.cluster, node, argv)

    def rules(self) -> str:
        head = "# simulated: the nftables ruleset the docker backend would apply in each node\n"
        parts = [(f"# {name}\n" if self.cluster.node_count > 1 else "") + ruleset.render(self.cluster, i)
                 for i, name in enumerate(self.cluster.node_names, start=1)]
        return head + "\n".join(parts)

    def capture(self, target: str, spec: dict[str, Any]) -> sim_capture.SimCapture:
        """Simulated packets of the lab's probes that ``target`` would see (see ``sim_capture``)."""
        return self.captures.start(self.cluster, target, spec)

    def flows(self, on_event: Callable[[Any], None]) -> sim_flows.SimFlows:
        """Each probe this lab answers, as a simulated flow (see ``sim_flows``)."""
        return sim_flows.SimFlows(self, on_event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.captures.stop_all()
            sources_of(self).stop_all()
            if self._on_close:
                self._on_close(self)


class SimBackend(Backend):
    """A simulated engine: the labs started through this object live as long as it does."""

    name = "sim"
    simulated = True

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: the seconds its labs measure ClientIP affinity timeouts on (a test passes its own)."""
        self._labs: dict[tuple[str, str], SimLab] = {}
        self._clock = clock

    def __repr__(self) -> str:
        return f"<SimBackend: {len(self._labs)} simulated lab(s)>"

    def capabilities(self) -> Capabilities:
        return Capabilities("sim", False, True, MAX_NODES, ("TCP", "UDP", "SCTP"), "the oracle, in this process")

    def list_labs(self, owner: str | None = None) -> list[LabInfo]:
        labs = [lab for (_, who), lab in self._labs.items() if owner is None or who == owner]
        return [LabInfo(lab.name, lab.owner, self.name, lab.created, lab.cluster.node_count, len(lab.cluster.user_pods()))
                for lab in sorted(labs, key=lambda lab: lab.created)]

    def remove_lab(self, name: str, owner: str) -> int:
        lab = self._labs.get((name, check_owner(owner)))
        if lab is None:
            return 0
        lab.close()
        return 1

    def remove_every_lab(self) -> int:
        labs = list(self._labs.values())
        for lab in labs:
            lab.close()
        return len(labs)

    def _forget(self, lab: SimLab) -> None:
        if self._labs.get((lab.name, lab.owner)) is lab:
            del self._labs[(lab.name, lab.owner)]

    def start(self, name: str, nodes: int, owner: str, *, seed: int = 0) -> SimLab:
        key = (name, check_owner(owner))
        if key in self._labs:
            raise BackendError(f"a lab named {name!r} of {owner} already runs on this backend: close it first")
        lab = SimLab(name, owner, replay(nodes, []), seed, self._forget, self._clock)
        self._labs[key] = lab
        return lab

    def attach(self, name: str, nodes: int, history: list[dict[str, Any]], owner: str) -> SimLab:
        """A lab started through this backend object (a simulated lab lives nowhere else)."""
        lab = self._labs.get((name, check_owner(owner)))
        if lab is None:
            raise NotFound(f"no lab named {name!r} of {owner} runs on this backend (simulated labs live in the "
                           "process that started them: start it again and replay its history)")
        return lab
