"""The one documented backend contract every runtime implements, and nothing else.

Owns the boundary between the ``Lab`` facade and whatever runs labs (a local Docker
engine, the simulated oracle, later a lab server in another process). Modelled on kind's
provider interface: a ``Backend`` is one engine (list labs with owner and age, remove one
lab or every lab of an owner, say what it can do); ``start``/``attach`` give a
``LabRuntime`` for one lab, which is driven only by recorded operations (the JSON
``apply``/``delete``/``label`` ops a lab keeps in its history) and answers with the public
result types. The runtime rebuilds and validates its own model from those operations:
nothing a caller built (a ``Cluster``, images, commands, IPs, PIDs, namespace paths)
crosses this boundary.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import re
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar

from labkit.errors import LabkitError, ModelError
from labkit.model.cluster import Change, Cluster
from labkit.model.manifests import check_size, parse_document
from labkit.results import ExecResult, ProbeResult

OPS = ("apply", "delete", "label")
OWNER_ENV = "LABKIT_OWNER"
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}\Z")


def check_owner(owner: str, path: str = "owner") -> str:
    """An owner name (a Unix or JupyterHub user name): letters, digits, ``_.@-``, at most 63."""
    if not isinstance(owner, str) or not _OWNER.match(owner):
        raise ModelError(f"{owner!r} is not a valid owner: use letters, digits and _.@- (at most 63 "
                         "characters, starting with a letter or digit)", path=path)
    return owner


def default_owner() -> str:
    """Whose labs these are when nobody else is named: ``$LABKIT_OWNER``, else the local user."""
    named = os.environ.get(OWNER_ENV, "").strip()
    if named:
        return check_owner(named, OWNER_ENV)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers): the numeric uid names the user
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "user"
    return owner_for(user)


_ALTERED = re.compile(r"-[0-9a-f]{16}$")


def owner_for(user: str) -> str:
    """The owner name for a user name (Unix or JupyterHub): as is when valid, else made valid."""
    safe = re.sub(r"[^A-Za-z0-9_.@-]", "-", user).lstrip("-_.@")[:46] or "user"
    # "jo+1" and "jo-1" must stay two owners: an altered name carries a hash of the real one
    # (64 bits), and so does a real name that looks altered ("jo-1-<16 hex>"), so nobody can
    # choose a user name that becomes someone else's owner name.
    if safe != user or _ALTERED.search(user):
        safe = f"{safe}-{hashlib.sha256(user.encode()).hexdigest()[:16]}"
    return check_owner(safe)


def model_op(cluster: Cluster, op: dict[str, Any]) -> tuple[Cluster, list[Change]]:
    """One recorded operation applied to a model alone (validated; raises ModelError on bad input)."""
    if not isinstance(op, dict) or op.get("op") not in OPS:
        raise ModelError(f"unknown operation {op.get('op') if isinstance(op, dict) else op!r}: "
                         f"one of {', '.join(OPS)}", path="op")
    try:
        if op["op"] == "apply":
            docs = op["documents"]
            if not isinstance(docs, list):
                raise ModelError("must be a list of manifests", path="documents")
            for i, doc in enumerate(docs):  # ops may come from another process: the same limits apply
                check_size(doc, f"document {i + 1}")
            return cluster.applied([parse_document(doc, i) for i, doc in enumerate(docs)])
        if op["op"] == "delete":
            return cluster.deleted(op["kind"], op["name"], op.get("namespace", "default"))
        return cluster.labeled(op["kind"], op["ref"], op["labels"])
    except KeyError as exc:
        raise ModelError(f"the {op['op']} operation needs {exc.args[0]!r}", path=str(exc.args[0])) from exc


def replay(nodes: int, history: list[dict[str, Any]]) -> Cluster:
    """The model that ``history`` builds on a fresh lab of ``nodes`` nodes (same ops, same addresses)."""
    cluster = Cluster.new(nodes)
    for op in history:
        cluster = model_op(cluster, op)[0]
    return cluster


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; ``protocols`` are those its probes can send."""

    backend: str
    real_packets: bool
    sctp: bool
    max_nodes: int
    protocols: tuple[str, ...]
    where: str = ""  # the engine or server it talks to

    @property
    def simulated(self) -> bool:
        return not self.real_packets

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "protocols": list(self.protocols)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Capabilities":
        return cls(**{**data, "protocols": tuple(data["protocols"])})

    def __repr__(self) -> str:
        how = "real packets" if self.real_packets else "SIMULATED (the oracle)"
        return (f"<Capabilities {self.backend}: {how}, up to {self.max_nodes} nodes, probes "
                f"{'/'.join(self.protocols)}{'' if self.sctp else ' (no SCTP sockets)'}{', ' + self.where if self.where else ''}>")


@dataclass(frozen=True)
class LabInfo:
    """One lab a backend runs: whose it is and since when (``created``: seconds since the epoch)."""

    name: str
    owner: str
    backend: str
    created: float
    nodes: int = 0
    pods: int = 0
    sessions: tuple[str, ...] = field(default=())  # the processes that created its objects

    @property
    def age_seconds(self) -> float:
        return max(0.0, time.time() - self.created)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sessions": list(self.sessions)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LabInfo":
        return cls(**{**data, "sessions": tuple(data.get("sessions", ()))})

    def __repr__(self) -> str:
        return (f"<LabInfo {self.name!r} of {self.owner} on {self.backend}: {self.nodes} node(s), {self.pods} pod(s), "
                f"up {_age(self.age_seconds)}>")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@dataclass(frozen=True)
class ProbeRequest:
    """Connect from pod ``src`` (or ``internet``) to ``dst``: a pod ref, an IP or a DNS name."""

    src: str
    dst: str
    port: int
    protocol: str = "TCP"
    sport: int | None = None  # the client's source port (a packet walk marks exactly this connection)


@dataclass(frozen=True)
class Readiness:
    """What one round of readiness probes found: the pods not ready now, and what changed."""

    not_ready: frozenset[str]
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodLimits:
    """What the engine lets one pod use (a lab server sets these on every pod it runs):
    ``memory`` in bytes, ``pids`` processes and ``cpus`` cores, shared evenly by the pod's app containers
    (its pause container gets ``PAUSE_MEMORY`` and ``PAUSE_PIDS`` besides); None: no limit.
    A pod may have at most ``max_containers()`` containers, so that each gets at least
    ``MIN_MEMORY`` and ``MIN_PIDS`` without the pod holding more than its limits."""

    memory: int | None = None
    pids: int | None = None
    cpus: float | None = None  # CPU time, in cores (0.5: half of one core)

    PAUSE_MEMORY: ClassVar[int] = 32 * 2**20  # the pause container only sleeps
    PAUSE_PIDS: ClassVar[int] = 16
    MIN_MEMORY: ClassVar[int] = 16 * 2**20    # what one app container gets at least
    MIN_PIDS: ClassVar[int] = 8

    def max_containers(self) -> int | None:
        bounds = [n for n in (self.memory and self.memory // self.MIN_MEMORY, self.pids and self.pids // self.MIN_PIDS)
                  if n]
        return max(1, min(bounds)) if bounds else None

    def per_container(self, containers: int) -> tuple[int | None, int | None, int | None]:
        """(memory, pids, CPU in billionths of a core) each of ``containers`` app containers gets."""
        n = max(containers, 1)
        return (self.memory // n if self.memory else None, self.pids // n if self.pids else None,
                int(self.cpus * 1e9) // n if self.cpus else None)


StepHook = Callable[[str], None]


class LabRuntime(ABC):
    """One running lab. Driven by operations; owns its model (``cluster``), rebuilt from them.

    ``change`` is all or nothing: on failure at any step the lab's containers, rules and DNS
    are as they were before, the model too, and the error is raised.
    """

    simulated: bool = False

    def __init__(self, name: str, owner: str, cluster: Cluster):
        self.name, self.owner, self.cluster = name, owner, cluster
        self.history: list[dict[str, Any]] = []

    def change(self, op: dict[str, Any], check: Callable[[Cluster], None] | None = None) -> list[Change]:
        """Apply one recorded operation (validated here) and enforce it; returns what changed.

        ``check`` (a lab server's own rules) sees the new model first and may refuse it."""
        new, changes = model_op(self.cluster, op)
        if check is not None:
            check(new)
        self._enforce(self.cluster, new)
        self.cluster = new
        self.history.append(op)
        return changes

    @abstractmethod
    def _enforce(self, old: Cluster, new: Cluster) -> None:
        """Make the running lab match ``new``; on failure leave it as ``old`` and raise."""

    def refresh_readiness(self) -> Readiness:
        """Run every readiness probe once and enforce the endpoints that follow."""
        return Readiness(frozenset(self.cluster.not_ready))

    def readiness_detail(self, pod: str) -> str:
        """What the last readiness probe of ``pod`` said ("" when it has none)."""
        return ""

    @abstractmethod
    def probe(self, requests: list[ProbeRequest], timeout: float) -> list[ProbeResult]:
        """Run ``requests`` (in parallel where the runtime can); one result each, in order."""

    @abstractmethod
    def exec(self, pod: str, argv: list[str], container: str | None = None) -> ExecResult:
        """Run ``argv`` in an app container of ``pod``."""

    def walk(self, requests: list[ProbeRequest], timeout: float) -> tuple[list[ProbeResult], list]:
        """Make ``requests`` (each with its own ``sport``) with the kernel tracing those connections on every
        node: the results and the trace's events (``labkit.dataplane.nft_trace.TraceEvent``), in order."""
        raise LabkitError(f"the {type(self).__name__} runtime cannot trace packets: use backend='docker' or 'sim'")

    def flows(self, on_event: Callable[[Any], None]) -> "FlowSource":  # noqa: F821
        """Start the flow log: ``on_event`` gets each new connection attempt (``labkit.runtime.flowing``:
        ``TracedFlow`` seen by the kernel, ``SimulatedFlow`` answered by the oracle) from the source's own
        thread until the returned ``FlowSource`` stops; it runs when this returns. Stopped at close."""
        raise LabkitError(f"the {type(self).__name__} runtime has no flow log: use backend='docker' or 'sim'")

    def exec_node(self, node: str, argv: list[str]) -> ExecResult:
        """One read-only view of a node (``labkit.runtime.node_views.VIEWS``: routes, the bridge)."""
        raise LabkitError(f"the {type(self).__name__} runtime shows no node views: use backend='docker' or 'sim'")

    def logs(self, pod: str, container: str | None = None) -> str:
        raise LabkitError(f"the {type(self).__name__} runtime keeps no container logs: use backend='docker'")

    @abstractmethod
    def rules(self) -> str:
        """The nftables ruleset in force (or, when simulated, the one that would be)."""

    def deciding_rules(self, src: str, dst: str, port: int, protocol: str) -> list[str]:
        """The kernel rules (with counters) behind the policy decisions for this connection."""
        return []

    @abstractmethod
    def connect(self, src: str, dst: str, port: int, timeout: float):
        """Open a long-lived TCP connection from pod ``src`` to ``dst`` (see ``labkit.connection``)."""

    def reset_connections(self) -> int:
        """Forget tracked connections, so established flows face the rules in force again."""
        return 0

    def capture(self, target: str, spec: dict[str, Any]) -> "CaptureHandle":  # noqa: F821
        """Start capturing packets on ``target`` (a pod ref, ``node-N`` or ``internet``) with ``spec``
        (``filter``, ``seconds``, ``count``, ``max_bytes``; see ``labkit.runtime.capturing``); returns
        once the capture listens. The runtime stops its running captures when it closes."""
        raise LabkitError(f"the {type(self).__name__} runtime cannot capture packets: use backend='docker' or 'sim'")

    @abstractmethod
    def close(self) -> None:
        """Remove everything this lab created. Safe to call twice."""

    def _dst_ip(self, dst: str) -> str:
        """A pod ref becomes the pod's IP in this runtime's own model; names and IPs stay."""
        return self.cluster.pod_ips[self.cluster.pod(dst).ref] if "/" in dst else dst


class Backend(ABC):
    """One place labs run (an engine): lists and removes labs, says what it can do, starts labs."""

    name: str = "abstract"
    simulated: bool = False

    @abstractmethod
    def capabilities(self) -> Capabilities:
        """Real packets or simulated, SCTP sockets, node limit, probe protocols, where."""

    @abstractmethod
    def list_labs(self, owner: str | None = None) -> list[LabInfo]:
        """The labs this backend runs (of ``owner`` only, when given), oldest first."""

    @abstractmethod
    def remove_lab(self, name: str, owner: str) -> int:
        """Remove ``owner``'s lab ``name``; returns how many objects went (0: there was none)."""

    def remove_labs(self, owner: str) -> int:
        """Remove every lab of ``owner`` (never another owner's)."""
        return sum(self.remove_lab(info.name, owner) for info in self.list_labs(owner))

    @abstractmethod
    def remove_every_lab(self) -> int:
        """Admin: remove every lab of every owner on this backend."""

    @abstractmethod
    def start(self, name: str, nodes: int, owner: str, *, seed: int = 0) -> LabRuntime:
        """Create a new lab (nodes and system pods); refuses a name that owner already uses."""

    @abstractmethod
    def attach(self, name: str, nodes: int, history: list[dict[str, Any]], owner: str) -> LabRuntime:
        """Take over ``owner``'s running lab ``name``, whose model ``history`` rebuilds."""

    def close(self) -> None:
        """Let go of the engine connection (labs keep running)."""
        return None
