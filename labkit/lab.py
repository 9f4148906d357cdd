"""The Lab facade: the public API learners, notebooks and teachers' checks use.

Owns the orchestration model -> backend -> probes: every change builds a new Cluster,
the backend enforces it, and only then does the lab adopt it (so a failed change leaves
the lab as it was). Returns values; never prints.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
import warnings
import weakref
from dataclasses import replace
from typing import Any, Callable, Iterator, Mapping

from labkit.connection import Connection
from labkit.lab_values import Changes, Endpoints, EndpointSlices, Lookup, Samples
from labkit.lab_watch import ReadinessWatch
from labkit.lab_observe import Observing
from labkit.dataplane import rules_view
from labkit.errors import BackendUnavailable, LabkitError, ModelError, NotFound
from labkit.model import fields
from labkit.model.cluster import Cluster, pod_ref
from labkit.model.system import is_system
from labkit.model.manifests import Source, load_documents
from labkit.notice import banner_html, because, first_line, in_notebook
from labkit.probe import compare as compare_variants
from labkit.probe.matrix import Matrix
from labkit.results import ExecResult, ProbeResult
from labkit.runtime import registry
from labkit.runtime.base import (Backend, Capabilities, LabRuntime, ProbeRequest, check_owner, default_owner,
                                 model_op, replay)
from labkit.semantics import oracle, reach, services

log = logging.getLogger(__name__)


class LabkitNotice(UserWarning):
    """Shown once when ``backend="auto"`` falls back to the simulated backend."""


class Lab(ReadinessWatch, Observing):
    """A small Kubernetes-like cluster to experiment with. Use it as a context manager.

    Args:
        name: the lab's name (lower-case letters, digits, '-'); labels every resource.
        backend: ``"docker"`` (real containers and kernel rules), ``"sim"`` (the oracle only)
            or ``"auto"`` (docker when an engine answers, else sim, with a notice).
            ``LABKIT_BACKEND`` overrides ``"auto"``. A ``Backend`` object may be passed in
            instead (its creator keeps it and closes it).
        nodes: how many nodes (1-8); pods spread across them unless pinned with nodeName.
        owner: whose lab this is (labels every resource; ``labkit down --all`` removes only
            the caller's labs); default ``$LABKIT_OWNER``, else the local user.

    ``Lab(...)`` starts a new lab; ``Lab.attach(name, history, ...)`` takes over a running one.

    Example:
        >>> with Lab("demo", backend="sim") as lab:
        ...     _ = lab.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
        ...                    "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}})
        ...     lab.probe("a", "default/a", port=80).ok
        True
    """

    def __init__(self, name: str = "lab", backend: "str | Backend" = "auto", nodes: int = 1, *, seed: int = 0,
                 owner: str | None = None):
        self.cluster = Cluster.new(nodes)  # checked before any backend is made
        self._setup(name, backend, owner)
        self.history: list[dict[str, Any]] = []
        try:
            try:
                runtime = self.backend.start(name, nodes, self.owner, seed=seed)
            except BackendUnavailable as exc:
                if not self._may_fall_back:
                    raise
                self._fall_back(f"SIMULATED: the docker backend is unavailable ({exc})")
                runtime = self.backend.start(name, nodes, self.owner, seed=seed)
        except BaseException:
            self._close_backend()
            raise
        self._adopt(runtime)

    @classmethod
    def attach(cls, name: str, history: list[dict[str, Any]], backend: "str | Backend" = "auto", nodes: int = 1, *,
               owner: str | None = None) -> "Lab":
        """Take over a lab that is already running (another process started it, e.g. ``labkit up``),
        whose recorded operations are ``history``; nothing in it is changed. Through a lab server,
        which keeps every lab's operations itself, ``history`` may be ``[]``: the server's are used."""
        lab = cls.__new__(cls)
        lab._setup(name, backend, owner, fall_back=False)
        try:
            runtime = lab.backend.attach(name, nodes, list(history), lab.owner)
        except BaseException:
            lab._close_backend()
            raise
        # rebuilt here too, with the node count and operations the runtime found: probed pods
        # restart as not ready
        lab.cluster = replay(runtime.cluster.node_count, runtime.history)
        lab.history = list(runtime.history)
        lab._adopt(runtime)
        try:
            lab._refresh_readiness()
        except BaseException:  # a failed attach must leave the running lab alone, never close it
            lab._finalizer.detach()
            lab._closed = True
            lab._close_backend()
            raise
        return lab

    def _setup(self, name: str, backend: "str | Backend", owner: str | None, fall_back: bool = True) -> None:
        fields.dns1123_label(name, "name")
        if len(name) > 20:
            raise ModelError(f"lab name {name!r} is too long: at most 20 characters", path="name")
        self.name = name
        self.owner = check_owner(owner, "owner") if owner is not None else default_owner()
        self._owns_backend = not isinstance(backend, Backend)
        if isinstance(backend, Backend):
            self.backend, self.notice, self._may_fall_back = backend, f"backend {backend.name} (passed in)", False
        else:
            chosen, self.notice = registry.choose(backend)
            self._may_fall_back = fall_back and backend == "auto" and chosen != "sim"
            if chosen == "sim" and backend == "auto" and not in_notebook():  # a notebook shows the banner
                warnings.warn(self.notice, LabkitNotice, stacklevel=3)
            try:
                self.backend = registry.create(chosen)
            except BackendUnavailable as exc:
                if not self._may_fall_back:
                    raise
                self._fall_back(f"SIMULATED: the docker backend is unavailable ({exc})")

    def _fall_back(self, notice: str) -> None:
        if getattr(self, "backend", None) is not None and self._owns_backend:
            self.backend.close()
        self.notice, self._may_fall_back, self._owns_backend = notice, False, True
        if not in_notebook():  # a notebook shows the banner of the Lab's HTML repr instead
            warnings.warn(notice, LabkitNotice, stacklevel=4)
        self.backend = registry.create("sim")

    def _close_backend(self) -> None:
        if getattr(self, "backend", None) is not None and self._owns_backend:
            self.backend.close()

    def _adopt(self, runtime: LabRuntime) -> None:
        self._runtime = runtime
        self.backend_name = self.backend.name
        self._closed = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.events: collections.deque[str] = collections.deque(maxlen=200)
        self._connections: set[Connection] = set()
        # called with the Changes after each successful apply/delete/label (e.g. a LabPanel refreshes)
        self.change_listeners: list[Callable[[Changes], None]] = []
        self._quiet = threading.local()  # per thread: inside quiet_changes(), listeners are not called
        # Whatever happens to this object (garbage collection, interpreter exit), the lab goes.
        self._finalizer = weakref.finalize(self, _close_all, runtime, self.backend if self._owns_backend else None)

    # ------------------------------------------------------------ life cycle
    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove everything the lab created (containers, links, rules). Safe to call twice."""
        self._stop.set()
        for conn in list(self._connections):
            conn.close()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._finalizer()

    def detach(self) -> None:
        """Leave the lab running after this object goes (the CLI's ``up``); ``labkit down`` removes it."""
        self._stop.set()
        with self._lock:
            self._closed = True
            self._finalizer.detach()
            self._close_backend()

    @property
    def simulated(self) -> bool:
        return self._runtime.simulated

    @property
    def capabilities(self) -> Capabilities:
        """What this lab's backend can do (real packets or simulated, SCTP, probe protocols, ...)."""
        return self.backend.capabilities()

    def _check_open(self) -> None:
        if self._closed:
            raise LabkitError(f"lab {self.name!r} is closed: create a new Lab")

    def __repr__(self) -> str:
        state = "closed" if self._closed else _counts(self.cluster)
        sim = " (SIMULATED)" if self.simulated else ""
        head = first_line(self.notice) + "\n" if self.simulated else ""
        return f"{head}<Lab {self.name!r} on {self.backend_name}{sim}, {self.cluster.node_count} node(s): {state}>"

    @property
    def simulated_because(self) -> str:
        """Why this lab runs on the simulated backend, in a few words ("" when it sends real packets)."""
        return because(self.notice) if self.simulated else ""

    def _repr_html_(self) -> str:
        return banner_html(self.notice, repr(self).splitlines()[-1], self.simulated)

    # ------------------------------------------------------------ changes
    def _commit(self, op: dict[str, Any]) -> list:
        with self._lock:  # the model is built under the lock too: two changes never see the same old one
            self._check_open()
            new, changes = model_op(self.cluster, op)  # validated here first: bad input never reaches the backend
            self._runtime.change(op)  # the runtime rebuilds and validates its own model from the op
            self.cluster = new
            self.history.append(op)
            self._refresh_readiness()
            self._ensure_watcher()
            return changes

    def readiness(self, pod: str) -> str:
        """What the last readiness probe of ``pod`` said (e.g. "httpGet probe of app: failed (exit 22)")."""
        self._check_open()
        with self._lock:
            return self._runtime.readiness_detail(self.cluster.pod(pod).ref)

    def endpoints(self, service: str) -> "Endpoints":
        """The pods behind a Service (``"x/web"``), per port, ready or not — like ``kubectl get endpoints``."""
        ref = pod_ref(service)
        if ref not in self.cluster.services:
            raise NotFound(f"Service {ref!r} not found")
        svc_obj = self.cluster.services[ref]
        return Endpoints(ref, [e for p in svc_obj.ports for e in services.endpoints(self.cluster, svc_obj, p)])

    def endpointslices(self, namespace: str | None = None) -> EndpointSlices:
        """Like ``kubectl get endpointslices [-n NAMESPACE]``: the slices the EndpointSlice controller keeps
        for Services with a selector (named ``<service>-<suffix>``), and the hand-written ones."""
        if namespace is not None and namespace not in self.cluster.namespaces:
            raise NotFound(f"namespace {namespace!r} not found; the lab has {', '.join(sorted(self.cluster.namespaces))}")
        return EndpointSlices(services.slice_views(self.cluster, namespace), namespace)

    def wait_for_endpoints(self, service: str, ready: int, timeout: float = 20.0) -> "Endpoints":
        """The Service's endpoints once exactly ``ready`` of them are ready (readiness is probed about
        once a period), or as they are after ``timeout`` seconds — look at them either way."""
        deadline = time.monotonic() + timeout
        while len((found := self.endpoints(service)).ready) != ready and time.monotonic() < deadline:
            self._check_open()  # a closed lab's readiness never changes again
            self._stop.wait(0.25)
        return found

    def connect(self, src: str, dst: str, port: int = 80, timeout: float = 1.0) -> Connection:
        """Open one TCP connection from pod ``src`` to ``dst`` (pod ref or IP) and keep it open.

        ``conn.send()`` talks over the same established flow: conntrack keeps it alive even after a
        NetworkPolicy starts denying new connections, until ``lab.reset_connections()``."""
        self._check_open()
        src = self.cluster.pod(src).ref
        dst = oracle.resolve_destination(self.cluster, dst)
        with self._lock:
            conn = Connection(self._runtime.connect(src, dst, port, timeout), on_close=self._connections.discard)
        self._connections.add(conn)
        return conn

    def reset_connections(self) -> int:
        """Forget every tracked connection (``conntrack -F`` in each node): established flows that a new
        policy would deny are cut. Returns the number of nodes flushed (0 on sim)."""
        with self._lock:
            self._check_open()
            return self._runtime.reset_connections()

    @contextlib.contextmanager
    def quiet_changes(self) -> Iterator[None]:
        """Changes this thread makes inside the block do not call ``change_listeners`` (a check's own
        short-lived pods: a panel should not redraw for them); other threads' changes still do."""
        self._quiet.depth = getattr(self._quiet, "depth", 0) + 1
        try:
            yield
        finally:
            self._quiet.depth -= 1

    def _change(self, op: dict[str, Any]) -> Changes:
        changes = Changes(self._commit(op))
        listeners = [] if getattr(self._quiet, "depth", 0) else list(self.change_listeners)
        for listener in listeners:  # outside the lock: a listener may probe the lab
            try:
                listener(changes)
            except Exception as exc:  # the change is made: a failing listener is recorded, never fatal
                log.warning("lab %s: change listener %r failed: %s", self.name, listener, exc)
                self.events.append(f"change listener failed: {type(exc).__name__}: {exc}")
        return changes

    def apply(self, source: Source) -> Changes:
        """Create or replace objects from YAML text, a path, a dict or a list of dicts.

        All or nothing: if any document is invalid, the lab is left exactly as it was.
        """
        return self._change({"op": "apply", "documents": load_documents(source)})

    def delete(self, kind: str, name: str, namespace: str = "default") -> Changes:
        """Delete one object (``kind`` like kubectl: ``networkpolicy``, ``netpol``, ``pod``, ...); ``name``
        may be ``"ns/name"`` as ``lab.pods`` lists it."""
        if isinstance(name, str) and "/" in name and namespace == "default":
            namespace, name = name.split("/", 1)
        return self._change({"op": "delete", "kind": kind, "name": name, "namespace": namespace})

    def label(self, kind: str, ref: str, labels: Mapping[str, str | None]) -> Changes:
        """Merge labels into a pod (``"x/b"``) or namespace (``"x"``); a value of None removes the key."""
        return self._change({"op": "label", "kind": kind, "ref": ref, "labels": dict(labels)})

    def replay(self, history: list[dict[str, Any]]) -> None:
        """Re-run recorded operations (``lab.history`` of another lab) on this lab."""
        for op in history:
            self._change(op)

    # ------------------------------------------------------------ looking
    @property
    def pods(self) -> list[str]:
        """Refs of the learner's pods (kube-system not included)."""
        return self.cluster.user_pods()

    def pod_ip(self, pod: str) -> str:
        return self.cluster.pod_ips[self.cluster.pod(pod).ref]

    def service_ip(self, service: str) -> str | None:
        ref = pod_ref(service)
        if ref not in self.cluster.services:
            raise ModelError(f"Service {ref!r} not found")
        return self.cluster.service_ips[ref]

    def probe(self, src: str, dst: str, port: int = 80, protocol: str = "TCP", timeout: float = 1.0) -> ProbeResult:
        """Try to connect from pod ``src`` to ``dst`` (pod ref ``ns/name``, IP or DNS name).

        ``src="internet"`` connects from the lab's internet host (it reaches node addresses,
        e.g. a NodePort on ``198.18.0.1``)."""
        self._check_open()
        fields.port_number(port, "port")
        fields.protocol(protocol, "protocol")
        return self.sample(src, dst, port, protocol, count=1, timeout=timeout)[0]

    def sample(self, src: str, dst: str, port: int = 80, protocol: str = "TCP", count: int = 20,
               timeout: float = 1.0) -> Samples:
        """``count`` connection attempts at once from ``src`` to ``dst``: e.g. how a Service spreads
        its clients over endpoints (``.tally()`` counts who answered)."""
        self._check_open()
        fields.port_number(port, "port")
        fields.protocol(protocol, "protocol")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise ModelError(f"count={count!r}: between 1 and 1000 attempts", path="count")
        if src != oracle.INTERNET:
            src = self.cluster.pod(src).ref
        dst = oracle.resolve_destination(self.cluster, dst)
        with self._lock:
            results = self._runtime.probe([ProbeRequest(src, dst, port, protocol)] * count, timeout)
            expected = oracle.explain(self.cluster, src, dst, port, protocol)
        return Samples(replace(r, dst=dst, may_answer=tuple(expected.may_answer)) for r in results)

    def get(self, kind: str, namespace: str | None = None) -> Any:
        """Like ``kubectl get pods|services|networkpolicies|endpointslices [-n NAMESPACE] --show-labels``: a
        table value."""
        if isinstance(kind, str) and kind.lower() in ("endpointslice", "endpointslices"):
            return self.endpointslices(namespace)
        from labkit import tables  # noqa: PLC0415 - a view, loaded when asked for
        return tables.get(self.cluster, kind, namespace)

    def probe_many(self, probes: list[tuple[str, str, int, str]], timeout: float = 1.0) -> list[ProbeResult]:
        """Several different connection attempts at once, ``(src, dst, port, protocol)`` each
        (as ``probe`` takes them); one result each, in order. Checks use it: blocked attempts
        wait for their timeout together, not one after another."""
        self._check_open()
        requests, expected = [], []
        for i, item in enumerate(probes):
            if not isinstance(item, (tuple, list)) or len(item) != 4:
                raise ModelError(f"probes[{i}]={item!r}: give (src, dst, port, protocol)", path=f"probes[{i}]")
            src, dst, port, protocol = item
            fields.port_number(port, f"probes[{i}].port")
            protocol = fields.protocol(protocol, f"probes[{i}].protocol")
            src = src if src == oracle.INTERNET else self.cluster.pod(src).ref
            dst = oracle.resolve_destination(self.cluster, dst)
            requests.append(ProbeRequest(src, dst, port, protocol))
        if not requests:
            return []
        with self._lock:
            results = self._runtime.probe(requests, timeout)
            for r in requests:
                expected.append(oracle.explain(self.cluster, r.src, r.dst, r.port, r.protocol))
        return [replace(res, dst=req.dst, may_answer=tuple(exp.may_answer))
                for res, req, exp in zip(results, requests, expected)]

    def _pods(self, pods: list[str] | None, namespaces: list[str] | None) -> list[str]:
        if pods is not None:
            return [self.cluster.pod(p).ref for p in pods]
        refs = self.pods
        return [r for r in refs if r.split("/")[0] in namespaces] if namespaces else refs

    def expected(self, port: int = 80, protocol: str = "TCP", pods: list[str] | None = None,
                 namespaces: list[str] | None = None) -> Matrix:
        """The oracle's matrix: which pod may open ``port/protocol`` on which pod's IP."""
        refs = self._pods(pods, namespaces)
        fields.port_number(port, "port")
        rows = reach.matrix_rows(self.cluster, refs, port, fields.protocol(protocol, "protocol"))
        return Matrix(refs, port, protocol, rows, rows, "expected")

    def matrix(self, port: int = 80, protocol: str = "TCP", pods: list[str] | None = None,
               namespaces: list[str] | None = None, timeout: float = 1.0) -> Matrix:
        """Probe every ordered pod pair on ``port/protocol``; compare with the oracle."""
        self._check_open()
        expected = self.expected(port, protocol, pods, namespaces)
        if self.simulated:
            return Matrix(expected.pods, port, protocol, list(expected.expected), expected.expected, "simulated")
        refs = expected.pods
        requests = [ProbeRequest(s, d, port, protocol) for s in refs for d in refs]
        with self._lock:
            results = self._runtime.probe(requests, timeout)
        observed, cells = [0] * len(refs), {}
        for k, result in enumerate(results):
            i, j = divmod(k, len(refs))
            cells[(refs[i], refs[j])] = _renamed(result, refs[j])
            if result.ok:
                observed[i] |= 1 << j
        return Matrix(refs, port, protocol, observed, expected.expected, "observed", cells)

    def explain(self, src: str, dst: str, port: int = 80, protocol: str = "TCP") -> oracle.Explanation:
        """Why ``src`` can or cannot reach ``dst``: the deciding policies and rules, in sentences."""
        fields.port_number(port, "port")
        protocol = fields.protocol(protocol, "protocol")
        dst = oracle.resolve_destination(self.cluster, dst)
        explanation = oracle.explain(self.cluster, src, dst, port, protocol)
        if not self.simulated and not self._closed:
            with self._lock:
                explanation.chains = self._runtime.deciding_rules(explanation.src, dst, port, protocol)
        return explanation

    def exec(self, pod: str, argv: list[str], container: str | None = None) -> ExecResult:
        """Run ``argv`` in ``pod`` (its first container unless ``container`` is given).

        It does not wait for other calls, nor they for it: a long command (``tcpdump``, a
        server) may run in a thread while probes and changes go on."""
        self._check_open()
        return self._runtime.exec(self.cluster.pod(pod).ref, list(argv), container)

    def lookup(self, pod: str, name: str) -> Lookup:
        """Resolve ``name`` as ``pod`` does (its resolv.conf: search path, ndots:5), with ``nslookup`` in it."""
        result = self.exec(pod, ["nslookup", name])
        return Lookup(self.cluster.pod(pod).ref, name, result.exit_code, result.output)

    def logs(self, pod: str, container: str | None = None) -> str:
        """What a pod's container (its first unless ``container`` is given) has written."""
        self._check_open()
        return self._runtime.logs(self.cluster.pod(pod).ref, container)

    def compare(self, variants: Mapping[str, Any], probes: Mapping[str, Any],
                predictions: Mapping[str, Any] | None = None, timeout: float = 1.0) -> compare_variants.Comparison:
        """Apply each variant (``{name: NetworkPolicy YAML}``) in turn, make every probe (``{label: (src, dst,
        port)}``), delete the variant again; a table beside the learner's ``predictions`` (``probe.compare``)."""
        return compare_variants.run(self, variants, probes, predictions, timeout)

    def rules(self, table: str | list[str] | None = None) -> str:
        """The nftables ruleset in force in the lab's nodes; ``table`` keeps only that table (or those),
        e.g. ``lab.rules("ip labkit-svc")`` for the Services (``"labkit-svc"`` also works)."""
        self._check_open()
        wanted = None if table is None else rules_view.resolve(table)
        with self._lock:
            text = self._runtime.rules()
        return text if wanted is None else rules_view.select(text, wanted)


def _counts(cluster: Cluster) -> str:
    """"3 pods, 1 Service, 0 NetworkPolicies": the learner's objects (the cluster DNS is not counted)."""
    mine = [len(cluster.user_pods()), sum(not r.startswith("kube-system/") and not is_system("Service", r)
                                          for r in cluster.services),
            sum(not r.startswith("kube-system/") for r in cluster.policies)]
    words = (("pod", "pods"), ("Service", "Services"), ("NetworkPolicy", "NetworkPolicies"))
    return ", ".join(f"{n} {w[n != 1]}" for n, w in zip(mine, words))


def _close_all(runtime: LabRuntime, backend: Backend | None) -> None:
    """The lab's finalizer: remove the lab, then let go of a backend the lab created itself."""
    try:
        runtime.close()
    finally:
        if backend is not None:
            backend.close()


def _renamed(result: ProbeResult, dst: str) -> ProbeResult:
    return replace(result, dst=dst)
