"""The flow log of a simulated lab: every probe the lab answers, as the oracle answered it.

Owns ``SimFlows``, the sim backend's ``FlowSource``: while it runs, each probe batch the
``SimLab`` answers (``SimLab.probe_observers``) becomes one ``SimulatedFlow`` per attempt, with
the oracle's explanation (``oracle.explain``), handed over at once in the prober's thread. No
packet exists here, so nothing else shows up (a simulated matrix is the oracle's table, not
probes); every flow is marked simulated.
"""
from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any, Callable

from labkit.results import ProbeResult
from labkit.runtime.base import ProbeRequest
from labkit.runtime.flowing import FlowSource, SimulatedFlow, sources_of
from labkit.semantics import oracle

if TYPE_CHECKING:
    from labkit.runtime.sim import SimLab

_batches = itertools.count(1)


class SimFlows(FlowSource):
    """Hands over each probe of ``lab`` as a ``SimulatedFlow`` until stopped."""

    simulated = True

    def __init__(self, lab: "SimLab", on_event: Callable[[Any], None]):
        super().__init__(on_event)
        self.lab = lab
        lab.probe_observers.append(self._observe)
        sources_of(lab).add(self)

    def _observe(self, requests: list[ProbeRequest], results: list[ProbeResult], timeout: float) -> None:
        batch, now = next(_batches), time.time()
        cluster = self.lab.cluster
        for request, result in zip(requests, results):
            explanation = oracle.explain(cluster, request.src, self.lab._dst_ip(request.dst), request.port,
                                         request.protocol)
            self.emit(SimulatedFlow(now, request, result, explanation, batch))

    def _stop(self) -> None:
        if self._observe in self.lab.probe_observers:
            self.lab.probe_observers.remove(self._observe)


def start(lab: "SimLab", on_event: Callable[[Any], None]) -> SimFlows:
    return SimFlows(lab, on_event)
