"""The one documented backend interface every runtime implements.

Owns the contract between the ``Lab`` facade and a backend: bring a lab up, make the
world match a new ``Cluster``, run probes and commands, show rules, close. It contains no
backend-specific code.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from labkit.errors import BackendUnavailable
from labkit.model.cluster import Cluster
from labkit.results import ExecResult, ProbeResult


@dataclass(frozen=True)
class ProbeRequest:
    """Connect from pod ``src`` to ``dst`` (an IP or a DNS name) on ``port``/``protocol``."""

    src: str
    dst: str
    port: int
    protocol: str = "TCP"


class Backend(ABC):
    """A place where a lab runs. Methods raise ``BackendError`` subclasses on failure."""

    name: str = "abstract"
    simulated: bool = False

    @abstractmethod
    def start(self, lab: str, cluster: Cluster) -> None:
        """Create the lab's nodes and system pods for ``cluster`` (labelled with ``lab``)."""

    def attach(self, lab: str, cluster: Cluster) -> None:
        """Take over a lab that is already running (started by another process) as ``cluster``."""
        self.start(lab, cluster)

    @abstractmethod
    def sync(self, old: Cluster, new: Cluster) -> None:
        """Make the running lab match ``new``; return only once it is enforced.

        On failure the backend restores ``old`` (as far as it can) and raises."""

    @abstractmethod
    def probe(self, cluster: Cluster, requests: list[ProbeRequest], timeout: float) -> list[ProbeResult]:
        """Run ``requests`` (in parallel where the backend can) and return one result each, in order."""

    @abstractmethod
    def exec(self, cluster: Cluster, pod: str, argv: list[str], container: str | None = None) -> ExecResult:
        """Run ``argv`` in a container of ``pod``."""

    def logs(self, cluster: Cluster, pod: str, container: str | None = None) -> str:
        """A container's output."""
        raise BackendUnavailable(f"the {self.name} backend has no container logs: use backend='docker'")

    @abstractmethod
    def rules(self, cluster: Cluster) -> str:
        """The nftables ruleset in force (or, when simulated, the one that would be)."""

    def not_ready(self, cluster: Cluster) -> set[str]:
        """Run readiness probes once; return the pods not ready now (the sim backend: none)."""
        return set()

    def readiness_detail(self, ref: str) -> str:
        """What the last readiness probe of ``ref`` said."""
        return ""

    def deciding_rules(self, cluster: Cluster, decisions: list) -> list[str]:
        """The kernel rules behind policy decisions (none when simulated)."""
        return []

    def connect(self, cluster: Cluster, src: str, dst_ip: str, port: int, timeout: float):
        """Open a long-lived TCP connection from pod ``src`` (see ``labkit.connection``)."""
        raise NotImplementedError

    def reset_connections(self) -> int:
        """Forget tracked connections, so established flows face the rules in force again."""
        return 0

    @abstractmethod
    def close(self) -> None:
        """Remove everything the lab created. Safe to call twice."""
