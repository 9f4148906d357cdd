"""What the lab server does with one request, whoever sent it and however it came.

Owns the mapping of contract calls (``labkit.runtime.wire`` paths, JSON bodies) onto the
engine's ``Backend`` for one caller: every lab is looked up under the caller's own name, so
another owner's lab is "not found"; operations are the JSON ops a lab records, which the
runtime rebuilds and validates itself; the server's own rules come first (images on its
allow-list only, limits on labs per learner, pods per lab and memory per learner, where
every pod gets the same memory and PIDs, set by the engine). It never takes container
options, PIDs, namespace paths or commands for a node from a caller: there is no call for them.
It also removes labs: idle ones (``reap_idle``) and all of a learner's (``remove_owner``, when
their hub server stops).
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from labkit.errors import LabkitError, ModelError, NotFound
from labkit.model.parse_workloads import LAB_IMAGE
from labkit.runtime.base import Backend, LabRuntime, ProbeRequest, check_owner
from labkit.runtime.wire import API, Refused, error_to_dict, status_of


@dataclass(frozen=True)
class Limits:
    """What each learner may have at once. Memory and PIDs per pod are set on every pod by the
    engine (the backend's ``pod_limits``); memory per learner counts those pods' memory."""

    labs_per_owner: int = 3
    pods_per_lab: int = 40
    images: tuple[str, ...] = ()  # images beside the lab image that manifests may name
    memory_per_pod: int | None = None  # bytes
    pids_per_pod: int | None = None
    memory_per_learner: int | None = None  # bytes, over all of a learner's labs
    idle_seconds: float | None = None  # a lab nobody called for this long is removed


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
        self._lock = threading.Lock()
        self._lab_locks: dict[tuple[str, str], threading.RLock] = {}
        self._used: dict[tuple[str, str], float] = {}  # when each lab was last called (monotonic)

    def _lab_lock(self, runtime: LabRuntime) -> threading.RLock:
        with self._lock:
            return self._lab_locks.setdefault((runtime.name, runtime.owner), threading.RLock())

    # ------------------------------------------------------------ entry point
    def handle(self, owner: str, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        """One request of ``owner``: (HTTP status, JSON answer). Errors become their plain form."""
        try:
            check_owner(owner)
            return 200, self._route(owner, method, path.rstrip("/"), body or {})
        except LabkitError as exc:
            return status_of(exc), error_to_dict(exc)

    def _route(self, owner: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if not path.startswith(API + "/"):
            raise NotFound(f"no such call: {method} {path}")
        parts = path[len(API) + 1:].split("/")
        if parts == ["whoami"] and method == "GET":
            return {"owner": owner, "labs": len([k for k in self._labs if k[1] == owner]),
                    "limits": asdict(self.limits)}
        if parts == ["capabilities"] and method == "GET":
            return self.backend.capabilities().to_dict()
        if parts == ["labs"] and method == "GET":
            return {"labs": [i.to_dict() for i in self.backend.list_labs(owner)]}
        if parts == ["labs"] and method == "DELETE":
            with self._lock:
                removed = self.backend.remove_labs(owner)  # every lab of the caller on the engine, held here or not
                for key in [k for k in self._labs if k[1] == owner]:
                    self._labs.pop(key).close()
            return {"removed": removed}
        if parts == ["labs"] and method == "POST":
            return self._start(owner, body)
        if len(parts) in (2, 3) and parts[0] == "labs":
            action = parts[2] if len(parts) == 3 else ""
            handler = self._lab_calls().get((method, action))
            if handler is None:
                raise NotFound(f"no such call: {method} {path}")
            runtime = self._lab(owner, parts[1], create=action == "attach", body=body)
            self._used[(runtime.name, owner)] = self.clock()
            if action in ("exec", "logs"):  # may run long (tcpdump): beside the lab's other calls, as in Lab
                return handler(runtime, body)
            with self._lab_lock(runtime):  # one call at a time per lab, whoever's notebooks send them
                return handler(runtime, body)
        raise NotFound(f"no such call: {method} {path}")

    # ------------------------------------------------------------ labs
    def _start(self, owner: str, body: dict[str, Any]) -> dict[str, Any]:
        name, nodes = _text(body, "name"), body.get("nodes", 1)
        with self._lock:
            mine = [k for k in self._labs if k[1] == owner]
            if len(mine) >= self.limits.labs_per_owner:
                raise Refused(f"you have {len(mine)} labs running, the most this lab server allows each learner: "
                              f"close one first (lab.close(), or `labkit down --lab NAME`) — running: "
                              f"{', '.join(sorted(k[0] for k in mine))}")
            self._check_memory(owner, name, 0)
            runtime = self.backend.start(name, nodes, owner)
            self._labs[(name, owner)] = runtime
            self._used[(name, owner)] = self.clock()
        return {"name": name, "owner": owner}

    def _lab(self, owner: str, name: str, create: bool = False, body: dict | None = None) -> LabRuntime:
        with self._lock:
            runtime = self._labs.get((name, owner))
            if runtime is None and create:  # a lab of this caller that another server process started
                runtime = self.backend.attach(name, (body or {}).get("nodes", 1), (body or {}).get("history", []), owner)
                self._labs[(name, owner)] = runtime
        if runtime is None:
            raise NotFound(f"no lab named {name!r} of {owner} on this lab server")
        return runtime

    def _close(self, runtime: LabRuntime, _: dict) -> dict:
        with self._lock:
            self._labs.pop((runtime.name, runtime.owner), None)
            self._used.pop((runtime.name, runtime.owner), None)
        runtime.close()
        return {"closed": runtime.name}

    def _change(self, runtime: LabRuntime, body: dict) -> dict:
        check = lambda cluster: self._allowed(runtime, cluster)  # noqa: E731
        return {"changes": [str(c) for c in runtime.change(body.get("op"), check=check)]}

    def _allowed(self, runtime: LabRuntime, cluster) -> None:
        """The server's own rules, judged on the model a change would give, before anything happens."""
        self._check_images(cluster)
        pods = len(cluster.pods)  # system pods (cluster DNS) too: each one holds memory and PIDs
        users = len(cluster.user_pods())
        if users > self.limits.pods_per_lab:
            raise Refused(f"this change would give the lab {users} pods; this lab server allows "
                          f"{self.limits.pods_per_lab} per lab: delete some (or scale a Deployment down) first")
        self._check_memory(runtime.owner, runtime.name, pods)

    def _check_memory(self, owner: str, name: str, pods: int) -> None:
        """Refuse when the owner's pods (``pods`` in lab ``name``, what runs in the others) would
        hold more memory than ``memory_per_learner``: each pod holds ``memory_per_pod``."""
        each, total = self.limits.memory_per_pod, self.limits.memory_per_learner
        if not each or not total:
            return
        others = {k[0]: len(r.cluster.pods) for k, r in list(self._labs.items()) if k[1] == owner and k[0] != name}
        if not pods:  # a new lab: its cluster DNS pod
            pods = 1
        if (sum(others.values()) + pods) * each > total:
            held = ", ".join(f"{lab}: {n}" for lab, n in sorted(others.items())) or "none"
            raise Refused(f"this would give your labs {sum(others.values()) + pods} pods of {size(each)} each, more "
                          f"than the {size(total)} of memory this lab server allows each learner (pods in your other "
                          f"labs: {held}): close a lab or delete pods first")

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
            ("POST", "attach"): lambda r, b: {"name": r.name, "history": r.history},
            ("POST", "change"): self._change,
            ("POST", "readiness"): lambda r, b: _readiness(r),
            ("POST", "probe"): lambda r, b: {"results": [p.to_dict() for p in r.probe(
                [ProbeRequest(**_request(q)) for q in b.get("requests", [])], float(b.get("timeout", 1.0)))]},
            ("POST", "exec"): lambda r, b: r.exec(_text(b, "pod"), _argv(b.get("argv")), b.get("container")).to_dict(),
            ("POST", "logs"): lambda r, b: {"text": r.logs(_text(b, "pod"), b.get("container"))},
            ("GET", "rules"): lambda r, b: {"text": r.rules()},
            ("POST", "deciding-rules"): lambda r, b: {"lines": r.deciding_rules(
                _text(b, "src"), _text(b, "dst"), int(b.get("port", 80)), _text(b, "protocol"))},
            ("POST", "readiness-detail"): lambda r, b: {"text": r.readiness_detail(_text(b, "pod"))},
            ("POST", "reset-connections"): lambda r, b: {"nodes": r.reset_connections()},
        }

    def owners(self) -> set[str]:
        """Whose labs this server holds now."""
        with self._lock:
            return {k[1] for k in self._labs}

    def remove_owner(self, owner: str) -> int:
        """Close every lab of ``owner`` (their hub server stopped); returns the number of containers removed."""
        with self._lock:
            mine = [self._labs.pop(k) for k in [k for k in self._labs if k[1] == owner]]
            for r in mine:
                self._used.pop((r.name, owner), None)
        for runtime in mine:
            with self._lab_lock(runtime):
                runtime.close()
        return self.backend.remove_labs(owner)  # and whatever of theirs is left on the engine

    def reap_idle(self, now: float | None = None) -> list[tuple[str, str]]:
        """Close labs nobody called for ``idle_seconds``; returns their (name, owner)."""
        if self.limits.idle_seconds is None:
            return []
        now = self.clock() if now is None else now
        with self._lock:
            idle = [k for k, used in self._used.items() if now - used > self.limits.idle_seconds and k in self._labs]
            runtimes = [self._labs.pop(k) for k in idle]
            for k in idle:
                self._used.pop(k, None)
        for runtime in runtimes:
            with self._lab_lock(runtime):
                runtime.close()
        return idle

    def close_all(self) -> None:
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


def _request(q: Any) -> dict:
    if not isinstance(q, dict):
        raise ModelError("must be an object with src, dst, port, protocol", path="requests[]")
    port = q.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ModelError("must be a port number 1-65535", path="requests[].port")
    return {"src": _text(q, "src"), "dst": _text(q, "dst"), "port": port, "protocol": _text(q, "protocol")}
