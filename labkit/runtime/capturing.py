"""Packet captures as runtimes run them: the bounds, the target, and a running capture's handle.

Owns what every backend agrees on for ``lab.capture``: the checked request (``check_spec``:
filter, seconds, count and bytes within their bounds, each error naming its field), what a
target names (``resolve_target``: a pod, a node or the internet host), ``CaptureHandle`` (the
pcap bytes of one capture as they come, whole records only, and why it ended) and ``Running``
(a runtime's running captures, all stopped when the lab closes). The docker backend's
handle is in ``runtime.docker.capture``, the simulated one in ``runtime.sim_capture``; the
learner's view (rows, file, table) is ``labkit.probe.pcap``.
"""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Callable

from labkit.errors import ModelError, NotFound
from labkit.model.cluster import Cluster

log = logging.getLogger(__name__)

MAX_SECONDS = 600.0
MAX_COUNT = 100_000
MIN_BYTES, MAX_BYTES = 1024, 64 * 2**20
MAX_FILTER = 1000
INTERNET = "internet"
REASONS = {"time": "its time was up", "count": "it captured the packets asked for",
           "bytes": "its file reached the byte limit", "stopped": "it was stopped",
           "ended": "the capture ended by itself"}


def _bounded(value: Any, path: str, integer: bool, fits: Callable[[float], bool], fix: str) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not fits(value):
        raise ModelError(f"{path}={value!r}: {fix}", path=path)
    return value


def check_spec(filter: Any = None, seconds: Any = 5.0, count: Any = 1000, max_bytes: Any = 4_000_000
               ) -> dict[str, Any]:
    """The capture request, checked: a ModelError names the field and the fix."""
    if filter is not None and not isinstance(filter, str):
        raise ModelError(f"filter={filter!r}: give a tcpdump filter as a string, e.g. \"tcp port 80\" or "
                         "\"udp port 53\" (or None for every packet)", path="filter")
    if filter is not None and (len(filter) > MAX_FILTER or any(c in filter for c in "\0\r\n")):
        raise ModelError(f"the filter must be one line of at most {MAX_FILTER} characters", path="filter")
    seconds = _bounded(seconds, "seconds", False, lambda v: 0 < v <= MAX_SECONDS,
                       f"give a number of seconds more than 0 and at most {MAX_SECONDS:g}")
    count = _bounded(count, "count", True, lambda v: 1 <= v <= MAX_COUNT,
                     f"give a whole number of packets between 1 and {MAX_COUNT}")
    max_bytes = _bounded(max_bytes, "max_bytes", True, lambda v: MIN_BYTES <= v <= MAX_BYTES,
                         f"give a whole number of bytes between {MIN_BYTES} (1 KiB) and {MAX_BYTES} (64 MiB)")
    return {"filter": filter.strip() if filter and filter.strip() else None, "seconds": float(seconds),
            "count": count, "max_bytes": max_bytes}


def resolve_target(cluster: Cluster, target: Any) -> tuple[str, str | int | None]:
    """``("pod", ref)``, ``("node", index)`` (1-based) or ``("internet", None)``; NotFound otherwise."""
    if not isinstance(target, str) or not target:
        raise ModelError(f"target={target!r}: capture on a pod (\"ns/name\"), a node (\"node-1\") or "
                         "\"internet\"", path="target")
    if target == INTERNET:
        return "internet", None
    if target.startswith("node-") and "/" not in target:
        if target not in cluster.node_names:
            raise NotFound(f"node {target!r} does not exist; this lab has {', '.join(cluster.node_names)}",
                           path="target")
        return "node", cluster.node_names.index(target) + 1
    return "pod", cluster.pod(target).ref


class CaptureHandle(ABC):
    """One capture a runtime runs: the pcap bytes so far (file header + whole records), and how it ended.

    ``reason`` is None while it runs, then one of ``REASONS``; ``note`` says more when it ended
    by itself. Callbacks given to ``on_end`` run once, before ``wait`` returns."""

    simulated = False

    def __init__(self, target: str, spec: dict[str, Any]):
        self.target, self.spec = target, spec
        self.started = time.time()
        self.interfaces: dict[int, str] = {}  # a node's interface names by index (its -i any frames carry them)
        self.reason: str | None = None
        self.note = ""
        self.packets = 0
        self._data = bytearray()
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._callbacks: list[Callable[["CaptureHandle"], None]] = []

    @property
    def done(self) -> bool:
        return self._ended.is_set()

    def data(self) -> bytes:
        with self._lock:
            return bytes(self._data)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the capture ended (True) or ``timeout`` passed (False)."""
        return self._ended.wait(timeout)

    @abstractmethod
    def stop(self) -> None:
        """End the capture now (keeping what it captured); returns once it ended. Idempotent."""

    def on_end(self, callback: Callable[["CaptureHandle"], None]) -> None:
        with self._lock:
            if self.reason is None:
                self._callbacks.append(callback)
                return
        self._call(callback)

    def _append(self, data: bytes, packets: int = 0) -> bool:
        """Add whole records (or the file header); False once the capture ended (its file is written)."""
        with self._lock:
            if self.reason is not None:
                return False
            self._data += data
            self.packets += packets
            return True

    def _finish(self, reason: str, note: str = "") -> bool:
        """Mark the end (once); runs the callbacks, then wakes the waiters. False if it had ended."""
        with self._lock:
            if self.reason is not None:
                return False
            self.reason, self.note = reason, note
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._call(callback)
        self._ended.set()
        return True

    def _call(self, callback: Callable[["CaptureHandle"], None]) -> None:
        try:
            callback(self)
        except Exception:  # a failing listener (e.g. a full disk) must not keep the capture from ending
            log.exception("capture on %s: a callback at its end failed", self.target)


class Running:
    """A runtime's running captures; ``stop_all`` ends them (the lab closes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: set[CaptureHandle] = set()

    def add(self, handle: CaptureHandle) -> CaptureHandle:
        with self._lock:
            self._handles.add(handle)
        handle.on_end(self._forget)
        return handle

    def _forget(self, handle: CaptureHandle) -> None:
        with self._lock:
            self._handles.discard(handle)

    def running(self) -> list[CaptureHandle]:
        with self._lock:
            return list(self._handles)

    def stop_all(self) -> None:
        for handle in self.running():
            try:
                handle.stop()
            except Exception:  # closing goes on: the lab's removal ends what is left anyway
                log.exception("stopping the capture on %s failed", handle.target)
