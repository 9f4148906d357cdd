"""The vocabulary of a lab: Kubernetes objects as frozen dataclasses, already validated.

This module owns the shapes only. Parsing and validation live in ``labkit.model.parse_*``;
no I/O, no kernel or backend knowledge here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

Labels = Mapping[str, str]
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry: ``key operator values``."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.operator in ("Exists", "DoesNotExist"):
            return f"{'' if self.operator == 'Exists' else '!'}{self.key}"
        op = "in" if self.operator == "In" else "notin"
        return f"{self.key} {op} ({','.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    """A label selector; the empty selector selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Labels) -> bool:
        """True when ``labels`` satisfy every matchLabels entry and every expression."""
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for r in self.match_expressions:
            present = r.key in labels
            if r.operator == "In" and not (present and labels[r.key] in r.values):
                return False
            if r.operator == "NotIn" and present and labels[r.key] in r.values:
                return False
            if r.operator == "Exists" and not present:
                return False
            if r.operator == "DoesNotExist" and present:
                return False
        return True

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels] + [str(r) for r in self.match_expressions]
        return ",".join(parts) if parts else "{} (everything)"


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class ReadinessProbe:
    """A readinessProbe: exactly one handler (exec, tcpSocket or httpGet)."""

    kind: str  # "exec" | "tcpSocket" | "httpGet"
    command: tuple[str, ...] = ()
    port: int | str | None = None
    path: str = "/"
    period_seconds: int = 10
    initial_delay_seconds: int = 0
    failure_threshold: int = 3
    success_threshold: int = 1
    timeout_seconds: int = 1


@dataclass(frozen=True)
class Container:
    name: str
    image: str = "labkit"
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    readiness_probe: ReadinessProbe | None = None
    env: tuple[tuple[str, str], ...] = ()
    cap_drop: tuple[str, ...] = ()  # securityContext.capabilities.drop (honoured)
    serves: bool | None = None  # its own command serves its ports (the DNS pod); None: only labkit's server does


@dataclass(frozen=True)
class PodSpec:
    containers: tuple[Container, ...]
    node_name: str | None = None

    def ports(self) -> tuple[ContainerPort, ...]:
        """Every declared containerPort (what named ports, Services and policies resolve against)."""
        return tuple(p for c in self.containers for p in c.ports)

    def served_ports(self) -> tuple[ContainerPort, ...]:
        """The ports something listens on: labkit's server serves the declared ports of a container that
        runs it; a container with its own ``command``/``args`` (``sleep infinity``) serves nothing."""
        return tuple(p for c in self.containers
                     if (c.serves if c.serves is not None else not (c.command or c.args)) for p in c.ports)


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Labels = field(default_factory=dict)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Labels
    spec: PodSpec
    owner: str | None = None  # "Deployment ns/name" for replicas

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Deployment:
    namespace: str
    name: str
    labels: Labels
    replicas: int
    selector: LabelSelector
    template_labels: Labels
    template_spec: PodSpec

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    port: int
    protocol: str = "TCP"
    name: str | None = None
    target_port: int | str | None = None  # None means "same as port"
    node_port: int | None = None

    @property
    def target(self) -> int | str:
        return self.port if self.target_port is None else self.target_port


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    labels: Labels
    type: str  # ClusterIP | NodePort
    selector: Labels | None
    ports: tuple[ServicePort, ...]
    cluster_ip: str | None = None  # requested: an IP, "None" (headless) or None (allocate)
    session_affinity: str = "None"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


@dataclass(frozen=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True)
class Peer:
    """One entry of ``from``/``to``: selectors (either or both) or an ipBlock."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class PolicyPort:
    protocol: str = "TCP"
    port: int | str | None = None  # None: every port of the protocol
    end_port: int | None = None


@dataclass(frozen=True)
class PolicyRule:
    """An ingress or egress rule. Empty ``peers``: every peer; empty ``ports``: every port."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    labels: Labels
    pod_selector: LabelSelector
    policy_types: tuple[str, ...]
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"
