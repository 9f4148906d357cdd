"""The Cluster aggregate: every object of a lab, its addresses, and kubectl-like changes.

Owns the lab's desired state and its invariants (namespaces exist before their objects,
unique names, valid references, deterministic addresses). Every change returns a *new*
Cluster, so a failed apply leaves the old one untouched. Nothing here starts anything.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from labkit.errors import ModelError, NotFound
from labkit.model import addressing as addr
from labkit.model import fields as f
from labkit.model import system
from labkit.model.manifests import Object, canonical_kind
from labkit.model.objects import Deployment, EndpointSlice, Namespace, NetworkPolicy, Pod, Service
from labkit.model.system import SYSTEM_OBJECTS

_STORES = {"Pod": "pods", "Deployment": "deployments", "Service": "services",
           "NetworkPolicy": "policies", "EndpointSlice": "slices"}


def pod_ref(ref: str) -> str:
    """``"b"`` -> ``"default/b"``; ``"x/b"`` stays."""
    if not isinstance(ref, str) or not ref or ref.count("/") > 1:
        raise ModelError(f"{ref!r} is not a pod reference: write 'namespace/name' (or 'name' for default)")
    return ref if "/" in ref else f"default/{ref}"


@dataclass(frozen=True)
class Change:
    """One line of what an apply or delete did, like kubectl prints it."""

    kind: str
    ref: str
    action: str  # created | configured | unchanged | deleted | labeled

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.ref} {self.action}"


@dataclass
class Cluster:
    """A lab's desired state. Use :meth:`new`; change it with ``applied``/``deleted``/``labeled``."""

    node_count: int = 1
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    policies: dict[str, NetworkPolicy] = field(default_factory=dict)
    slices: dict[str, EndpointSlice] = field(default_factory=dict)  # hand-written EndpointSlices
    pod_ips: dict[str, str] = field(default_factory=dict)
    pod_nodes: dict[str, int] = field(default_factory=dict)
    service_ips: dict[str, str | None] = field(default_factory=dict)
    ip_cursors: dict[int, str] = field(default_factory=dict)
    service_cursor: str | None = None
    not_ready: frozenset[str] = frozenset()
    # kubectl's last-applied-configuration, for labels: what the last apply of a pod or
    # namespace set ("Pod x/a" / "Namespace x" -> labels), so a re-apply keeps the labels
    # added since with `label` and drops only those it set itself and no longer sets.
    applied_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    retired: frozenset[str] = frozenset()  # replica names used once: never given out again

    @classmethod
    def new(cls, nodes: int = 1) -> "Cluster":
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= addr.MAX_NODES:
            raise ModelError(f"nodes={nodes!r}: a lab has between 1 and {addr.MAX_NODES} nodes")
        c = cls(node_count=nodes)
        for name in ("default", "kube-system"):
            c.namespaces[name] = Namespace(name, {"kubernetes.io/metadata.name": name})
        c._add_pod(system.dns_pod())
        c.services["kube-system/kube-dns"] = system.dns_service()
        c.service_ips["kube-system/kube-dns"] = addr.DNS_SERVICE_IP
        c.services["default/kubernetes"] = system.kubernetes_service()
        c.service_ips["default/kubernetes"] = addr.KUBERNETES_SERVICE_IP
        return c

    def copy(self) -> "Cluster":
        return dataclasses.replace(self, **{k: dict(getattr(self, k)) for k in (
            "namespaces", "pods", "deployments", "services", "policies", "slices", "pod_ips", "pod_nodes",
            "service_ips", "ip_cursors", "applied_labels")})

    # ----------------------------------------------------------------- queries
    @property
    def node_names(self) -> list[str]:
        return [addr.node_name(i) for i in range(1, self.node_count + 1)]

    def pod(self, ref: str) -> Pod:
        ref = pod_ref(ref)
        try:
            return self.pods[ref]
        except KeyError as exc:
            close = [p for p in self.pods if p.split("/")[1] == ref.split("/")[1]]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise NotFound(f"pod {ref!r} not found{hint}") from exc

    def pod_by_ip(self) -> dict[str, str]:
        return {ip: ref for ref, ip in self.pod_ips.items()}

    def node_of(self, ref: str) -> str:
        return addr.node_name(self.pod_nodes[pod_ref(ref)])

    def is_ready(self, ref: str) -> bool:
        return ref not in self.not_ready

    def user_pods(self) -> list[str]:
        """Pods a matrix shows by default: everything outside kube-system."""
        return [ref for ref, p in self.pods.items() if p.namespace != "kube-system"]

    # ----------------------------------------------------------------- changes
    def applied(self, objects: Iterable[Object]) -> tuple["Cluster", list[Change]]:
        """kubectl apply: create or replace every object. Namespaces first; all or nothing."""
        objects = list(objects)
        new, changes = self.copy(), []
        ordered = [o for o in objects if isinstance(o, Namespace)] + [
            o for o in objects if not isinstance(o, Namespace)]
        for obj in ordered:
            kind = type(obj).__name__
            ref = obj.name if isinstance(obj, Namespace) else obj.ref
            try:
                changes.append(Change(kind, ref, new._apply_one(obj)))
            except ModelError as exc:
                where = f"Namespace {ref}" if kind == "Namespace" else f"{kind} {ref}"
                located = exc.located(where)
                if located is exc:  # it already names its document: let it go on unchanged
                    raise
                raise located from exc
        return new, changes

    def _three_way(self, key: str, live: Mapping[str, str] | None, applied: dict[str, str]) -> dict[str, str]:
        """kubectl apply's merge of labels: keep live labels the last apply did not set, drop
        those it set and this one does not, take this apply's values."""
        last = self.applied_labels.get(key, {})
        self.applied_labels[key] = dict(applied)
        kept = {k: v for k, v in (live or {}).items() if k not in last}
        return {**kept, **applied}

    def _apply_one(self, obj: Object) -> str:
        if isinstance(obj, Namespace):
            old = self.namespaces.get(obj.name)
            obj = Namespace(obj.name, self._three_way(f"Namespace {obj.name}", old and old.labels, obj.labels))
            self.namespaces[obj.name] = obj
            return "created" if old is None else ("unchanged" if old == obj else "configured")
        if obj.namespace not in self.namespaces:
            raise ModelError(f"namespace {obj.namespace!r} not found: create it first "
                             f"(kind: Namespace, metadata.name: {obj.namespace})", path="metadata.namespace")
        kind = type(obj).__name__
        if (kind, obj.ref) in SYSTEM_OBJECTS:
            raise ModelError(f"{kind} {obj.ref} {SYSTEM_OBJECTS[kind, obj.ref]} and cannot be replaced")
        old = getattr(self, _STORES[kind]).get(obj.ref)
        if isinstance(obj, Pod):
            if old is not None and old.owner:
                raise ModelError(f"pod {obj.ref} belongs to {old.owner}: change the Deployment instead")
            obj = dataclasses.replace(obj, labels=self._three_way(f"Pod {obj.ref}", old and old.labels, obj.labels))
            self._add_pod(obj, keep=old)
        elif isinstance(obj, Deployment):
            self._apply_deployment(obj, old)
        elif isinstance(obj, Service):
            obj = self._apply_service(obj, old)
        elif isinstance(obj, EndpointSlice):
            self._apply_slice(obj)
        else:
            self.policies[obj.ref] = obj
        return "created" if old is None else ("unchanged" if old == obj else "configured")

    def _add_pod(self, pod: Pod, keep: Pod | None = None) -> None:
        index = self._place(pod)
        probed = any(c.readiness_probe is not None for c in pod.spec.containers)
        if keep is not None and self.pod_nodes.get(pod.ref) == index and keep.spec == pod.spec:
            self.pods[pod.ref] = pod  # labels only: the same pod, the same address
            return
        if keep is not None:  # a changed pod is a new pod, with a new address, as in Kubernetes
            self._forget_pod(pod.ref)
        used = set(self.pod_ips.values())
        network = addr.node_pod_cidr(index)
        ip = addr.next_free(network, used, self.ip_cursors.get(index), {addr.node_gateway(index)})
        self.ip_cursors[index] = ip
        self.pods[pod.ref], self.pod_ips[pod.ref], self.pod_nodes[pod.ref] = pod, ip, index
        if probed:  # like the kubelet: a pod with a readinessProbe starts not ready
            self.not_ready = self.not_ready | {pod.ref}

    def _place(self, pod: Pod) -> int:
        if pod.spec.node_name is not None:
            if pod.spec.node_name not in self.node_names:
                raise ModelError(f"node {pod.spec.node_name!r} does not exist; this lab has "
                                 f"{', '.join(self.node_names)}", path="spec.nodeName")
            return self.node_names.index(pod.spec.node_name) + 1
        if pod.ref in self.pod_nodes:
            return self.pod_nodes[pod.ref]
        load = {i: 0 for i in range(1, self.node_count + 1)}
        for ref, i in self.pod_nodes.items():
            if not ref.startswith("kube-system/"):
                load[i] += 1
        return min(load, key=lambda i: (load[i], i))

    def _forget_pod(self, ref: str) -> None:
        for store in (self.pods, self.pod_ips, self.pod_nodes):
            store.pop(ref, None)
        self.not_ready = self.not_ready - {ref}

    def _apply_deployment(self, dep: Deployment, old: Deployment | None) -> list[str]:
        """Bring the Deployment's replicas to ``dep``; returns the refs of pods it created."""
        template = (tuple(sorted(dep.template_labels.items())), dep.template_spec)
        pod_hash = addr.safe_suffix(repr(template), 10)
        owner = f"Deployment {dep.ref}"
        mine = [r for r, p in self.pods.items() if p.owner == owner]
        current = [r for r in mine if r.startswith(f"{dep.ref}-{pod_hash}-")]
        current = current[:dep.replicas]
        for ref in mine:
            if ref not in current:
                self._forget_pod(ref)
        i, created = 0, []
        while len(current) < dep.replicas:
            name = f"{dep.name}-{pod_hash}-{addr.safe_suffix(f'{dep.ref}/{pod_hash}/{i}', 5)}"
            i += 1
            if f"{dep.namespace}/{name}" in self.pods or f"{dep.namespace}/{name}" in self.retired:
                continue
            pod = Pod(dep.namespace, name, dict(dep.template_labels), dep.template_spec, owner)
            f.dns1123_subdomain(name, "metadata.name")
            self._add_pod(pod)
            self.retired = self.retired | {pod.ref}  # like a ReplicaSet's random suffix: never given out again
            current.append(pod.ref)
            created.append(pod.ref)
        # Pods kept here have this very template (its labels are part of pod_hash), so their
        # labels are left alone, as a ReplicaSet leaves them: changes made with `label` stay.
        self.deployments[dep.ref] = dep
        return created

    def _apply_slice(self, eps: EndpointSlice) -> None:
        for i, e in enumerate(eps.endpoints):
            if e.node_name is not None and e.node_name not in self.node_names:
                raise ModelError(f"node {e.node_name!r} does not exist; this lab has {', '.join(self.node_names)}",
                                 path=f"endpoints[{i}].nodeName")
        self.slices[eps.ref] = eps

    def _apply_service(self, svc: Service, old: Service | None) -> Service:
        if old is not None and old.external and not svc.external:
            old = None  # ExternalName -> ClusterIP/NodePort: addressed like a new Service, as by the API server
            self.service_ips.pop(svc.ref, None)
        current = self.service_ips.get(svc.ref)
        if svc.external:  # a DNS alias: no ClusterIP (one it had is released, as by the API server)
            self.service_ips[svc.ref] = None
        elif svc.headless:
            if old is not None and current is not None:
                raise ModelError("field is immutable: a Service cannot become headless; delete it first",
                                 path="spec.clusterIP")
            self.service_ips[svc.ref] = None
        elif svc.cluster_ip:
            self._claim(svc, old, current)
        elif old is None or current is None:
            if old is not None:
                raise ModelError("field is immutable: a headless Service cannot get a ClusterIP; "
                                 "delete it first", path="spec.clusterIP")
            ip = addr.next_free(addr.SERVICE_CIDR, {i for i in self.service_ips.values() if i},
                                self.service_cursor or str(addr.FIRST_SERVICE_IP - 1),
                                {addr.KUBERNETES_SERVICE_IP, addr.DNS_SERVICE_IP})
            self.service_cursor = ip
            self.service_ips[svc.ref] = ip
        self._check_node_ports(svc)
        svc = self._allocate_node_ports(svc, old)
        self.services[svc.ref] = svc
        return svc

    def _claim(self, svc: Service, old: Service | None, current: str | None) -> None:
        """A requested ClusterIP: in the Service range, free, and never changed once given."""
        ip = ipaddress.ip_address(svc.cluster_ip)
        if ip not in addr.SERVICE_CIDR or ip in (addr.SERVICE_CIDR.network_address,
                                                 addr.SERVICE_CIDR.broadcast_address):
            raise ModelError(f"{svc.cluster_ip} is not in the Service range {addr.SERVICE_CIDR}",
                             path="spec.clusterIP")
        if old is not None and current != svc.cluster_ip:
            raise ModelError(f"field is immutable (currently {current}); delete the Service first",
                             path="spec.clusterIP")
        owner = next((r for r, i in self.service_ips.items() if i == svc.cluster_ip and r != svc.ref), None)
        if owner:
            raise ModelError(f"{svc.cluster_ip} is already allocated to Service {owner}", path="spec.clusterIP")
        self.service_ips[svc.ref] = svc.cluster_ip

    def _allocate_node_ports(self, svc: Service, old: Service | None) -> Service:
        """A NodePort Service port without ``nodePort`` gets one from 30000-32767, kept on re-apply."""
        if svc.type != "NodePort" or all(p.node_port is not None for p in svc.ports):
            return svc
        used = {p.node_port for other in self.services.values() if other.ref != svc.ref for p in other.ports}
        used |= {p.node_port for p in svc.ports}
        ports = []
        for p in svc.ports:
            if p.node_port is None:
                previous = next((q.node_port for q in (old.ports if old else ())
                                 if (q.port, q.protocol) == (p.port, p.protocol) and q.node_port not in used), None)
                chosen = previous or next(n for n in range(addr.NODE_PORT_FIRST, addr.NODE_PORT_LAST + 1)
                                          if n not in used)
                used.add(chosen)
                p = dataclasses.replace(p, node_port=chosen)
            ports.append(p)
        return dataclasses.replace(svc, ports=tuple(ports))

    def _check_node_ports(self, svc: Service) -> None:
        for i, port in enumerate(svc.ports):
            if port.node_port is None:
                continue
            for ref, other in self.services.items():
                if ref != svc.ref and any(p.node_port == port.node_port for p in other.ports):
                    raise ModelError(f"nodePort {port.node_port} is already used by Service {ref}",
                                     path=f"spec.ports[{i}].nodePort")

    def deleted(self, kind: str, name: str, namespace: str = "default") -> tuple["Cluster", list[Change]]:
        kind = canonical_kind(kind)
        new = self.copy()
        if kind == "Namespace":
            if name in ("default", "kube-system"):
                raise ModelError(f"namespace {name!r} is part of every cluster and cannot be deleted")
            if name not in new.namespaces:
                raise NotFound(f"namespace {name!r} not found")
            changes = []
            for store in ("policies", "slices", "services", "deployments", "pods"):
                for ref in [r for r in getattr(new, store) if r.startswith(f"{name}/")]:
                    changes.extend(new._delete_one(store, ref))
            del new.namespaces[name]
            new.applied_labels.pop(f"Namespace {name}", None)
            return new, changes + [Change("Namespace", name, "deleted")]
        ref = f"{namespace}/{name}"
        if (kind, ref) in SYSTEM_OBJECTS:
            raise ModelError(f"{kind} {ref} {SYSTEM_OBJECTS[kind, ref]} and cannot be deleted")
        store = _STORES[kind]
        if ref not in getattr(new, store):
            raise NotFound(f"{kind} {ref!r} not found")
        return new, new._delete_one(store, ref)

    def _delete_one(self, store: str, ref: str) -> list[Change]:
        kind = {v: k for k, v in _STORES.items()}[store]
        obj = getattr(self, store).pop(ref, None)
        if obj is None:
            return []
        changes = [Change(kind, ref, "deleted")]
        if store == "pods":
            self.applied_labels.pop(f"Pod {ref}", None)
            self._forget_pod(ref)
            owner = obj.owner.split(" ", 1)[1] if obj.owner else None
            if owner in self.deployments:  # its ReplicaSet replaces it at once: a new name, a new IP
                self.retired = self.retired | {ref}
                changes += [Change("Pod", r, "created")
                            for r in self._apply_deployment(self.deployments[owner], self.deployments[owner])]
        elif store == "services":
            self.service_ips.pop(ref, None)
        elif store == "deployments":
            for pref in [r for r, p in self.pods.items() if p.owner == f"Deployment {ref}"]:
                self._forget_pod(pref)
                changes.append(Change("Pod", pref, "deleted"))
        return changes

    def labeled(self, kind: str, ref: str, labels: Mapping[str, str | None]) -> tuple["Cluster", list[Change]]:
        """Merge ``labels`` into a pod's or namespace's labels; a value of None removes the key."""
        kind = canonical_kind(kind)
        if kind not in ("Pod", "Namespace"):
            raise ModelError(f"labkit labels pods and namespaces, not {kind}s: re-apply the manifest instead")
        if not isinstance(labels, Mapping):
            raise ModelError("labels must be a mapping of key to value (None removes a key)")
        for key, value in labels.items():
            f.label_key(key, f"labels.{key}")
            if value is not None:
                f.label_value(value, f"labels.{key}")
        new = self.copy()
        if kind == "Namespace":
            ns = new.namespaces.get(ref)
            if ns is None:
                raise NotFound(f"namespace {ref!r} not found")
            if labels.get("kubernetes.io/metadata.name", ref) != ref:
                raise ModelError("kubernetes.io/metadata.name is set by the API server and cannot change")
            new.namespaces[ref] = Namespace(ref, _merge(ns.labels, labels))
            return new, [Change("Namespace", ref, "labeled")]
        pod = new.pod(ref)
        new.pods[pod.ref] = dataclasses.replace(pod, labels=_merge(pod.labels, labels))
        return new, [Change("Pod", pod.ref, "labeled")]

    def with_readiness(self, not_ready: Iterable[str]) -> "Cluster":
        new = self.copy()
        new.not_ready = frozenset(r for r in not_ready if r in self.pods)
        return new


def _merge(old: Mapping[str, str], change: Mapping[str, str | None]) -> dict[str, str]:
    out = dict(old)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out
