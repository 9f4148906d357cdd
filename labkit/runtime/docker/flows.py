"""The docker backend's flow log: every new connection in the lab, as the nodes' kernels traced it.

Owns ``subscribe`` (the ``FlowSource`` that ``DockerLab.flows`` returns) and the one ``_Hub`` per
lab behind all of its subscribers: one ``nft-watch`` per node (``tracing.NodeWatch``) armed with
``nft_trace.flow_tables()`` (the first packet of every new connection is traced, after conntrack),
a reader thread per node feeding one ``flowing.Assembler`` (which ties lines to packets and a
connection's legs on several nodes into one ``TracedFlow``), and one flusher thread that hands
over the flows that went quiet. The agents disarm on ``stop``, when their stdin ends and after
their own time limit (``AGENT_SECONDS``; a longer flow log arms again). The hub stops with its
last subscriber (it disarms before another hub may arm: they share the table's name), and
``stop_all`` stops every subscriber when the lab closes.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from labkit.dataplane import names, nft_trace
from labkit.errors import BackendError
from labkit.runtime.docker.tracing import NodeWatch, arm_all
from labkit.runtime.flowing import Assembler, FlowSource, TracedFlow, sources_of

if TYPE_CHECKING:
    from labkit.runtime.docker.dockerlab import DockerLab

log = logging.getLogger(__name__)
AGENT_SECONDS = 3600  # the agent disarms by itself after this long (the node agent's maximum)
READ_TIMEOUT = 1.0


class _Hub:
    """One lab's node watches, readers and flusher, shared by every subscriber."""

    def __init__(self, lab: "DockerLab"):
        self.lab = lab
        self.subscribers: list[DockerFlows] = []
        self.errors: list[str] = []
        self.watches: dict[str, NodeWatch] = {}
        self._assembler = Assembler()
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._readers: list[threading.Thread] = []
        self._flush_thread: threading.Thread | None = None
        nodes = list(lab.nodes)
        self.table = names.flows_table(secrets.token_hex(4))  # this log's own: another process's log keeps its
        for watch in arm_all(lab, nft_trace.flow_tables(self.table),  # armed in every node, or in none
                             nft_trace.disarm(self.table, ("ip",)), AGENT_SECONDS):
            self.watches[watch.node] = watch
        self._readers = [self._start(f"labkit-flows-{node.name}", self._read, node) for node in nodes]
        self._flush_thread = self._start("labkit-flows-flush", self._flusher)

    def _arm(self, node) -> NodeWatch:
        return NodeWatch(self.lab.client, node.id, node.what, node.name, nft_trace.flow_tables(self.table),
                         nft_trace.disarm(self.table, ("ip",)), AGENT_SECONDS)

    def _start(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"{name}-{self.lab.name}", daemon=True)
        thread.start()
        return thread

    @property
    def pids(self) -> dict[str, list[int]]:
        return {node: list(w.pids) for node, w in self.watches.items()}

    def _read(self, node) -> None:
        watch = self.watches[node.name]
        try:
            while True:
                try:
                    msg = watch.read(READ_TIMEOUT)
                except BackendError:  # nothing within READ_TIMEOUT
                    continue
                if msg is None:
                    if not self._stopping.is_set():
                        self._error(f"the flow log's agent in {node.what} ended")
                    return
                if "line" in msg:
                    with self._lock:
                        waiting = self._assembler.pending
                        ready = self._assembler.feed(node.name, float(msg["t"]), msg["line"])
                        if self._assembler.pending > waiting:  # a new packet: the flusher sets its timer
                            self._lock.notify()
                    self._deliver(ready)
                elif "error" in msg:
                    self._error(f"{node.what}: {msg['error']}")
                elif msg.get("done"):
                    if msg.get("reason") != "time" or self._stopping.is_set():
                        return
                    watch.close()  # its time limit: arm again, the log goes on
                    watch = self.watches[node.name] = self._arm(node)
        except Exception as exc:  # the node or its agent went away: say so, never hang
            if not self._stopping.is_set():
                self._error(f"the flow log in {node.what} failed: {exc}")
        finally:
            watch.close()

    def _flusher(self) -> None:
        while True:
            with self._lock:
                ready, next_at = self._assembler.due()
                if not ready:
                    if self._stopping.is_set():
                        return
                    self._lock.wait(None if next_at is None else max(0.005, next_at - time.monotonic()))
            self._deliver(ready)

    def _deliver(self, flows: list[TracedFlow]) -> None:
        for flow in flows:
            for sub in list(self.subscribers):
                sub.emit(flow)

    def _error(self, text: str) -> None:
        log.warning("lab %s: %s", self.lab.name, text)
        self.errors = (self.errors + [text])[-20:]
        for sub in list(self.subscribers):
            sub.note_error(text)

    def stop(self) -> None:
        """Disarm every node, wait for the readers, hand over what was still assembling."""
        self._stopping.set()
        for watch in list(self.watches.values()):
            watch.request_stop()
        current = threading.current_thread()
        for thread in self._readers:
            if thread is not current:
                thread.join(timeout=10)
        for watch in list(self.watches.values()):
            watch.close()
        with self._lock:
            rest = self._assembler.flush()
            self._lock.notify_all()
        if self._flush_thread is not None and self._flush_thread is not current:
            self._flush_thread.join(timeout=5)
        self._deliver(rest)


_hubs: dict[int, _Hub] = {}
_locks: dict[int, threading.RLock] = {}  # one per lab: a lab that arms or stops slowly holds up no other lab
_locks_guard = threading.Lock()


def _lab_lock(lab: "DockerLab") -> threading.RLock:
    """The lock of ``lab``'s hub (reentrant: a listener that starts another log while the last one stops
    must not hang)."""
    with _locks_guard:
        return _locks.setdefault(id(lab), threading.RLock())


class DockerFlows(FlowSource):
    """One subscriber of a lab's flow hub (``DockerLab.flows``)."""

    def __init__(self, lab: "DockerLab", on_event: Callable[[Any], None]):
        super().__init__(on_event)
        self.lab = lab
        with _lab_lock(lab):
            hub = _hubs.get(id(lab))
            if hub is None:
                hub = _hubs[id(lab)] = _Hub(lab)
            hub.subscribers.append(self)
        self._hub = hub
        sources_of(lab).add(self)

    @property
    def pids(self) -> dict[str, list[int]]:
        return self._hub.pids

    def _stop(self) -> None:
        hub = self._hub
        with _lab_lock(self.lab):  # held while the last one disarms: a new hub never arms before the old one is gone
            if hub.subscribers == [self]:
                if _hubs.get(id(self.lab)) is hub:
                    del _hubs[id(self.lab)]
                hub.stop()  # hands over what was still assembling, to this subscriber too
            if self in hub.subscribers:
                hub.subscribers.remove(self)


def subscribe(lab: "DockerLab", on_event: Callable[[Any], None]) -> DockerFlows:
    """A flow source of ``lab``: its nodes are armed (the first subscriber arms them) when this returns."""
    return DockerFlows(lab, on_event)


def stop_all(lab: "DockerLab") -> None:
    """Stop every flow source of ``lab`` (the lab closes)."""
    sources_of(lab).stop_all()
    with _locks_guard:
        _locks.pop(id(lab), None)
