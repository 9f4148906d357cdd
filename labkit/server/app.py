"""What the lab server does with one request, whoever sent it and however it came.

Owns the mapping of contract calls (``labkit.runtime.wire`` paths, JSON bodies) onto the
engine's ``Backend`` for one caller: every lab is looked up under the caller's own name, so
another owner's lab is "not found"; operations are the JSON ops a lab records, which the
runtime rebuilds and validates itself; the server's own rules come first (images on its
allow-list only, limits on labs per learner, pods per lab and memory per learner, where
every pod gets the same memory and PIDs, set by the engine). It never takes container
options, PIDs, namespace paths or commands for a node from a caller: there is no call for them.
It also removes labs: idle ones (``reap_idle``) and all of a learner's (``remove_owner``, when
their hub server stops). Captures and flow logs, which outlive one call, are kept by
``labkit.server.observe`` (``observers``) and stop when their lab goes.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from labkit.dataplane import nft_trace
from labkit.errors import BackendError, LabkitError, ModelError, NotFound
from labkit.model.parse_workloads import LAB_IMAGE
from labkit.model.fields import dns1123_label
from labkit.model.system import SYSTEM_OBJECTS
from labkit.runtime.base import Backend, LabRuntime, PodLimits, ProbeRequest, check_owner
from labkit.runtime.wire import API, Refused, error_to_dict, status_of
from labkit.server.observe import BESIDE_THE_LOCK, Observers


@dataclass(frozen=True)
class Limits:
    """What each learner may have at once. Memory, PIDs and CPU per pod are set on every pod by
    the engine (the backend's ``pod_limits``); memory per learner counts those pods' memory.
    Node containers are the server's own and not limited: ``nodes_per_lab`` bounds them."""

    labs_per_owner: int = 3
    pods_per_lab: int = 40
    images: tuple[str, ...] = ()  # images beside the lab image that manifests may name
    memory_per_pod: int | None = None  # bytes
    pids_per_pod: int | None = None
    memory_per_learner: int | None = None  # bytes, over all of a learner's labs
    idle_seconds: float | None = None  # a lab nobody called for this long is removed
    cpus_per_pod: float | None = None  # cores, set on every pod like memory and PIDs
    nodes_per_lab: int = 3


def size(n: int | None) -> str:
    if n is None:
        return "no limit"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


@dataclass
class LabServer:
    backend: Backend
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic  # when labs were last used (idle removal)

    def __post_init__(self) -> None:
        self._labs: dict[tuple[str, str], LabRuntime] = {}
        self._starting: set[tuple[str, str]] = set()  # labs being started (counted, not yet usable)
        self._lock = threading.Lock()  # guards the tables above; never held while an engine works
        self._lab_locks: dict[tuple[str, str], threading.RLock] = {}
        self._owner_locks: dict[str, threading.Lock] = {}
        self._used: dict[tuple[str, str], float] = {}  # when each lab was last called (clock)
        self.observers = Observers(self.clock)  # running captures and flow logs, by lab

    def _lab_lock(self, key: tuple[str, str]) -> threading.RLock:
        with self._lock:
            return self._lab_locks.setdefault(key, threading.RLock())

    def _owner_lock(self, owner: str) -> threading.Lock:
        with self._lock:
            return self._owner_locks.setdefault(owner, threading.Lock())

    # ------------------------------------------------------------ entry point
    def handle(self, owner: str, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        """One request of ``owner``: (HTTP status, JSON answer). Errors become their plain form."""
        try:
            check_owner(owner)
            return 200, self._route(owner, method, path.rstrip("/"), body or {})
        except LabkitError as exc:
            return status_of(exc), error_to_dict(exc)
        except (ValueError, TypeError) as exc:  # a value of the wrong kind somewhere in the body
            return 400, error_to_dict(ModelError(f"a value in the request is not what this call takes ({exc})",
                                                 path="body"))

    def _route(self, owner: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if not path.startswith(API + "/"):
            raise NotFound(f"no such call: {method} {path}")
        parts = path[len(API) + 1:].split("/")
        if parts == ["whoami"] and method == "GET":
            with self._lock:
                mine = len([k for k in self._labs if k[1] == owner])
            return {"owner": owner, "labs": mine, "limits": asdict(self.limits)}
        if parts == ["capabilities"] and method == "GET":
            return self.backend.capabilities().to_dict()
        if parts == ["labs"] and method == "GET":
            return {"labs": [i.to_dict() for i in self.backend.list_labs(owner)]}
        if parts == ["labs"] and method == "DELETE":
            return {"removed": self.remove_owner(owner)}
        if parts == ["labs"] and method == "POST":
            return self._start(owner, body)
        if len(parts) in (2, 3) and parts[0] == "labs":
            action = parts[2] if len(parts) == 3 else ""
            handler = self._lab_calls().get((method, action))
            if handler is None:
                raise NotFound(f"no such call: {method} {path}")
            key = (parts[1], owner)
            if action in ("exec", "logs") or action in BESIDE_THE_LOCK:  # may run long: beside the lab's
                # other calls, as in Lab (a capture waited for, a flow log polled while a matrix probes)
                return handler(self._lab(key), body)
            with self._lab_lock(key):  # one call at a time per lab, whoever's notebooks send them
                return handler(self._lab(key), body)  # looked up under the lock: never a closed lab
        raise NotFound(f"no such call: {method} {path}")

    # ------------------------------------------------------------ labs
    def _start(self, owner: str, body: dict[str, Any]) -> dict[str, Any]:
        name, nodes = _text(body, "name"), body.get("nodes", 1)
        dns1123_label(name, "name")
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= self.limits.nodes_per_lab:
            raise ModelError(f"must be a whole number from 1 to {self.limits.nodes_per_lab}, the most nodes this lab "
                             "server gives a lab", path="nodes")
        if len(name) > 20:
            raise ModelError(f"lab name {name!r} is too long: at most 20 characters", path="name")
        key = (name, owner)
        with self._lock:  # the lab is counted from now on, but the engine works without the lock
            mine = sorted(k[0] for k in [*self._labs, *self._starting] if k[1] == owner)
            if key in self._labs or key in self._starting:
                raise BackendError(f"a lab named {name!r} of {owner} already runs on this lab server: attach to "
                                   f"it (Lab.attach({name!r}, [])) or close it")
            if len(mine) >= self.limits.labs_per_owner:
                raise Refused(f"you have {len(mine)} labs running, the most this lab server allows each learner: "
                              f"close one first (lab.close(), or `labkit down --lab NAME`) — running: "
                              f"{', '.join(mine)}")
            self._check_memory(owner, name, 1)  # its cluster DNS pod
            self._starting.add(key)
        runtime = None
        try:
            runtime = self.backend.start(name, nodes, owner)
        finally:
            with self._lock:  # from "starting" to "running" at once: never uncounted in between
                self._starting.discard(key)
                if runtime is not None:
                    self._labs[key] = runtime
                    self._used[key] = self.clock()
        return {"name": name, "owner": owner}

    def _lab(self, key: tuple[str, str]) -> LabRuntime:
        """A lab this server runs for this caller (a lab it does not hold is not theirs to use)."""
        with self._lock:
            runtime = self._labs.get(key)
            if runtime is not None:
                self._used[key] = self.clock()
        if runtime is None:
            raise NotFound(f"no lab named {key[0]!r} of {key[1]} on this lab server")
        return runtime

    def _forget(self, key: tuple[str, str]) -> LabRuntime | None:
        with self._lock:
            self._used.pop(key, None)
            runtime = self._labs.pop(key, None)
        self.observers.forget_lab(key)  # its captures and flow logs stop (closing the runtime would stop them too)
        return runtime

    def _close(self, runtime: LabRuntime, _: dict) -> dict:
        self._forget((runtime.name, runtime.owner))
        runtime.close()
        return {"closed": runtime.name}

    def _change(self, runtime: LabRuntime, body: dict) -> dict:
        check = lambda cluster: self._allowed(runtime, cluster)  # noqa: E731
        with self._owner_lock(runtime.owner):  # two labs of one learner never pass the memory check together
            return {"changes": [str(c) for c in runtime.change(body.get("op"), check=check)]}

    def _allowed(self, runtime: LabRuntime, cluster) -> None:
        """The server's own rules, judged on the model a change would give, before anything happens."""
        self._check_images(cluster)
        self._check_containers(cluster)
        pods = len(cluster.pods)  # the cluster DNS pod too: it holds memory and PIDs like any other
        users = len([ref for ref in cluster.pods if ("Pod", ref) not in SYSTEM_OBJECTS])
        if users > self.limits.pods_per_lab:
            raise Refused(f"this change would give the lab {users} pods; this lab server allows "
                          f"{self.limits.pods_per_lab} per lab: delete some (or scale a Deployment down) first")
        self._check_memory(runtime.owner, runtime.name, pods)

    def _check_memory(self, owner: str, name: str, pods: int) -> None:
        """Refuse when the owner's pods (``pods`` in lab ``name``, what runs in the others) would
        hold more memory than ``memory_per_learner``: each pod holds ``memory_per_pod`` (and a
        fixed ``PodLimits.PAUSE_MEMORY`` for its pause container, not counted here)."""
        each, total = self.limits.memory_per_pod, self.limits.memory_per_learner
        if not each or not total:
            return
        others = {k[0]: len(r.cluster.pods) for k, r in list(self._labs.items()) if k[1] == owner and k[0] != name}
        others |= {k[0]: 1 for k in list(self._starting) if k[1] == owner and k[0] != name}
        if (sum(others.values()) + pods) * each > total:
            held = ", ".join(f"{lab}: {n}" for lab, n in sorted(others.items())) or "none"
            raise Refused(f"this would give your labs {sum(others.values()) + pods} pods of {size(each)} each, more "
                          f"than the {size(total)} of memory this lab server allows each learner (pods in your other "
                          f"labs: {held}): close a lab or delete pods first")

    def _check_containers(self, cluster) -> None:
        """A pod may not split its memory and PIDs into shares smaller than ``PodLimits`` allows."""
        most = PodLimits(self.limits.memory_per_pod, self.limits.pids_per_pod).max_containers()
        for ref, pod in sorted(cluster.pods.items()):
            if most is not None and len(pod.spec.containers) > most:
                raise ModelError(f"{len(pod.spec.containers)} containers: this lab server allows {most} per pod "
                                 f"(each gets a share of the pod's {size(self.limits.memory_per_pod)}): use fewer",
                                 where=f"Pod {ref}", path="spec.containers")

    def _check_images(self, cluster) -> None:
        allowed = {LAB_IMAGE, *self.limits.images}
        for ref, pod in sorted(cluster.pods.items()):
            for i, c in enumerate(pod.spec.containers):
                if c.image not in allowed:
                    raise ModelError(f"image {c.image!r} is not on this lab server's allow-list (omit image, or "
                                     f"use one of: {', '.join(sorted(allowed))})", where=f"Pod {ref}",
                                     path=f"spec.containers[{i}].image")

    def _lab_calls(self) -> dict[tuple[str, str], Callable[[LabRuntime, dict], dict]]:
        return {
            ("DELETE", ""): self._close,
            ("POST", "attach"): lambda r, b: {"name": r.name, "history": r.history, "nodes": r.cluster.node_count},
            ("POST", "change"): self._change,
            ("POST", "readiness"): lambda r, b: _readiness(r),
            ("POST", "probe"): lambda r, b: {"results": [p.to_dict() for p in r.probe(
                [ProbeRequest(**_request(q)) for q in b.get("requests", [])], _timeout(b))]},
            ("POST", "exec"): lambda r, b: r.exec(_text(b, "pod"), _argv(b.get("argv")), b.get("container")).to_dict(),
            ("POST", "logs"): lambda r, b: {"text": r.logs(_text(b, "pod"), b.get("container"))},
            ("GET", "rules"): lambda r, b: {"text": r.rules()},
            ("POST", "deciding-rules"): lambda r, b: {"lines": r.deciding_rules(
                _text(b, "src"), _text(b, "dst"), _request(b)["port"], _text(b, "protocol"))},
            ("POST", "readiness-detail"): lambda r, b: {"text": r.readiness_detail(_text(b, "pod"))},
            ("POST", "reset-connections"): lambda r, b: {"nodes": r.reset_connections()},
            ("POST", "walk"): _walk,
            **self.observers.calls(),  # capture-start/-stop, flows-start/-poll/-stop
        }

    def owners(self) -> set[str]:
        """Whose labs this server holds now."""
        with self._lock:
            return {k[1] for k in self._labs}

    def remove_owner(self, owner: str) -> int:
        """Close every lab of ``owner`` (they asked, or their hub server stopped); returns the
        number of their containers removed from the engine (all this server made for them)."""
        with self._lock:
            keys = sorted(k for k in self._labs if k[1] == owner)
        with contextlib.ExitStack() as held:
            for key in keys:  # after any call in flight, never under it
                held.enter_context(self._lab_lock(key))
            runtimes = [r for r in map(self._forget, keys) if r is not None]
            removed = self.backend.remove_labs(owner)
            for runtime in runtimes:
                runtime.close()  # what is left of it (its containers are gone already)
        return removed

    def reap_idle(self, now: float | None = None) -> list[tuple[str, str]]:
        """Close labs nobody called for ``idle_seconds``; returns their (name, owner)."""
        if self.limits.idle_seconds is None:
            return []
        now = self.clock() if now is None else now
        with self._lock:
            idle = [k for k, used in self._used.items() if now - used > self.limits.idle_seconds and k in self._labs]
        closed = []
        for key in idle:
            with self._lab_lock(key):
                with self._lock:  # used again meanwhile: kept
                    if now - self._used.get(key, now) <= self.limits.idle_seconds:
                        continue
                runtime = self._forget(key)
                if runtime is not None:
                    runtime.close()
                    closed.append(key)
        return closed

    def close_all(self) -> None:
        self.observers.close()
        with self._lock:
            labs, self._labs = list(self._labs.values()), {}
        for runtime in labs:
            runtime.close()


def _readiness(runtime: LabRuntime) -> dict:
    found = runtime.refresh_readiness()
    return {"not_ready": sorted(found.not_ready), "events": list(found.events)}


def _text(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ModelError("must be a non-empty string", path=key)
    return value


def _argv(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise ModelError("must be a non-empty list of strings", path="argv")
    return value


def _timeout(body: dict) -> float:
    value = body.get("timeout", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 30:
        raise ModelError("must be a number of seconds, more than 0 and at most 30", path="timeout")
    return float(value)


def _walk(runtime: LabRuntime, body: dict) -> dict:
    """Packet walks (``lab.trace``): each request has its own source port, from labkit's walk range."""
    requests = body.get("requests")
    if not isinstance(requests, list) or not 1 <= len(requests) <= 1000:
        raise ModelError("must be a list of 1 to 1000 connections", path="requests")
    low, high = nft_trace.WALK_SPORTS
    walks = []
    for k, q in enumerate(requests):
        sport = q.get("sport") if isinstance(q, dict) else None
        if isinstance(sport, bool) or not isinstance(sport, int) or not low <= sport <= high:
            raise ModelError(f"must be a source port {low}-{high} (a packet walk's)", path=f"requests[{k}].sport")
        walks.append(ProbeRequest(**_request(q), sport=sport))
    results, events = runtime.walk(walks, _timeout(body))
    return {"results": [r.to_dict() for r in results], "events": [e.to_dict() for e in events]}


def _request(q: Any) -> dict:
    if not isinstance(q, dict):
        raise ModelError("must be an object with src, dst, port, protocol", path="requests[]")
    port = q.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ModelError("must be a port number 1-65535", path="requests[].port")
    return {"src": _text(q, "src"), "dst": _text(q, "dst"), "port": port, "protocol": _text(q, "protocol")}
