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
class DNSConfig:
    """A pod's ``dnsConfig``: merged into what its ``dnsPolicy`` gives (all of it for ``None``)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[tuple[str, str | None], ...] = ()  # (name, value or None), in the order written


@dataclass(frozen=True)
class PodSpec:
    containers: tuple[Container, ...]
    node_name: str | None = None
    hostname: str | None = None  # spec.hostname (None: the pod's name)
    subdomain: str | None = None  # spec.subdomain: with a headless Service of that name, <hostname>.<subdomain>.<ns>.svc
    dns_policy: str = "ClusterFirst"  # ClusterFirst | Default | None (ClusterFirstWithHostNet reads as ClusterFirst)
    dns_config: DNSConfig | None = None

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
    app_protocol: str | None = None  # shown, as kube-proxy does nothing with it either

    @property
    def target(self) -> int | str:
        return self.port if self.target_port is None else self.target_port


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    labels: Labels
    type: str  # ClusterIP | NodePort | ExternalName
    selector: Labels | None  # None: no selector (endpoints come from hand-written EndpointSlices)
    ports: tuple[ServicePort, ...]
    cluster_ip: str | None = None  # requested: an IP, "None" (headless) or None (allocate)
    session_affinity: str = "None"
    affinity_timeout: int = 10800  # sessionAffinityConfig.clientIP.timeoutSeconds (1..86400)
    publish_not_ready: bool = False  # publishNotReadyAddresses: unready pods are endpoints and in DNS
    internal_traffic_policy: str = "Cluster"  # Local: a pod reaches only endpoints on its own node, else dropped
    external_traffic_policy: str = "Cluster"  # Local (NodePort): only the node's own endpoints, client IP kept
    external_name: str | None = None  # type ExternalName: the CNAME target

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"

    @property
    def external(self) -> bool:
        """``type: ExternalName``: a DNS alias (CNAME), no ClusterIP and no rules."""
        return self.type == "ExternalName"


@dataclass(frozen=True)
class SliceEndpoint:
    """One ``endpoints[]`` entry of an EndpointSlice (labkit takes one address per entry)."""

    address: str
    ready: bool = True  # conditions.ready (unset means ready)
    hostname: str | None = None
    node_name: str | None = None
    target_pod: str | None = None  # targetRef of kind Pod, as "ns/name"


@dataclass(frozen=True)
class SlicePort:
    port: int
    protocol: str = "TCP"
    name: str | None = None  # matches the Service port of that name ("" / None: the unnamed port)
    app_protocol: str | None = None


@dataclass(frozen=True)
class EndpointSlice:
    """A hand-written ``discovery.k8s.io/v1`` EndpointSlice (addressType IPv4). It backs the Service
    named by its ``kubernetes.io/service-name`` label, as kube-proxy and CoreDNS read it."""

    namespace: str
    name: str
    labels: Labels
    endpoints: tuple[SliceEndpoint, ...] = ()
    ports: tuple[SlicePort, ...] = ()

    SERVICE_LABEL = "kubernetes.io/service-name"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def service(self) -> str | None:
        """The Service this slice belongs to ("ns/name"), or None without the label."""
        name = self.labels.get(self.SERVICE_LABEL)
        return f"{self.namespace}/{name}" if name else None


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
