"""The flow log as runtimes run it: what a source hands over, how trace lines become flows, the handle.

Owns what every backend agrees on for ``lab.flow_log``: ``FlowSource`` (one running source: it
calls its ``on_event`` from its own thread with each new connection attempt until ``stop()``,
which is idempotent; ``pids`` are the processes it runs in the nodes, ``errors`` what went
wrong), the two records it hands over — ``TracedFlow`` (docker: the first packet of one new
connection as the kernel traced it, its events on each node it crossed, in travel order) and
``SimulatedFlow`` (sim: one probe the oracle answered, with its explanation), each with a plain-data
form (``to_dict``; ``flow_from_dict`` reads it: what a lab server sends) — the
``Assembler`` that makes ``TracedFlow``s of the nodes' ``nft monitor trace`` lines, and
``sources_of(runtime)``, a runtime's running sources, all stopped when the lab closes.

The assembler (pure): a packet's trace id changes from hook to hook, so a node's lines are tied
to their packet by the trace id of the packet line before them, and packets by their identity
(protocol, IP id, source port, TCP flags); a connection between pods of two nodes is traced on
both and becomes one flow, its legs ordered by the TTL they saw. Only packets the flows table's
rule marked count (a packet walk's own lines are ignored). A flow is handed over as soon as every
node it reached is done with it (dropped, rejected, or let out by the forward hook's last filter)
and it was delivered or stopped somewhere and its first node was seen, else after ``QUIET``
seconds without a line. The docker source is ``runtime.docker.flows``, the simulated one
``runtime.sim_flows``; the learner's view (``FlowEvent`` rows, filters, the table) is
``labkit.probe.flowlog``.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar

from labkit.dataplane import names, nft_trace
from labkit.dataplane.nft_trace import TraceEvent
from labkit.errors import ModelError
from labkit.results import ProbeResult
from labkit.runtime.base import ProbeRequest
from labkit.semantics.oracle import Explanation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TracedFlow:
    """One new connection's first packet, as the kernel of each node it crossed traced it.

    ``t``: when a node's agent first read one of its trace lines (unix time; the kernel's trace has no
    clock, and each agent reads a few ms late); ``legs``: (node, that node's events for this packet),
    the node that saw it first (highest TTL) first."""

    t: float
    legs: tuple[tuple[str, tuple[TraceEvent, ...]], ...]
    simulated: ClassVar[bool] = False

    def to_dict(self) -> dict:
        return {"kind": "traced", "t": self.t,
                "legs": [[node, [e.to_dict() for e in events]] for node, events in self.legs]}

    @classmethod
    def from_dict(cls, data: Any) -> "TracedFlow":
        """The inverse of ``to_dict`` (a lab server sends flows so); bad data raises ValueError."""
        if not isinstance(data, dict) or not _number(data.get("t")) or not isinstance(data.get("legs"), list):
            raise ValueError("a traced flow must be an object with a number t and a list legs")
        legs = []
        for leg in data["legs"]:
            if not (isinstance(leg, list) and len(leg) == 2 and isinstance(leg[0], str) and isinstance(leg[1], list)):
                raise ValueError("each leg of a traced flow must be [node, [trace events]]")
            legs.append((leg[0], tuple(TraceEvent.from_dict(e) for e in leg[1])))
        return cls(float(data["t"]), tuple(legs))


@dataclass(frozen=True)
class SimulatedFlow:
    """One connection attempt a simulated lab answered from the oracle (``batch``: the probe call)."""

    t: float
    request: ProbeRequest
    result: ProbeResult
    explanation: Explanation
    batch: int = 0
    simulated: ClassVar[bool] = True

    def to_dict(self) -> dict:
        return {"kind": "simulated", "t": self.t, "request": asdict(self.request), "result": self.result.to_dict(),
                "explanation": self.explanation.to_dict(), "batch": self.batch}

    @classmethod
    def from_dict(cls, data: Any) -> "SimulatedFlow":
        """The inverse of ``to_dict``; bad data raises ValueError."""
        if not isinstance(data, dict) or not _number(data.get("t")) or not isinstance(data.get("request"), dict) \
                or isinstance(data.get("batch"), bool) or not isinstance(data.get("batch", 0), int):
            raise ValueError("a simulated flow must be an object with a number t, an object request and a whole "
                             "number batch")
        q = data["request"]
        texts, port, sport = [q.get(k) for k in ("src", "dst", "protocol")], q.get("port"), q.get("sport")
        if not all(isinstance(v, str) for v in texts) or isinstance(port, bool) or not isinstance(port, int) \
                or isinstance(sport, bool) or not isinstance(sport, (int, type(None))):
            raise ValueError("a simulated flow's request needs strings src, dst, protocol and a port number")
        try:
            result, explanation = ProbeResult.from_dict(data.get("result")), Explanation.from_dict(
                data.get("explanation"))
        except ModelError as exc:
            raise ValueError(f"a simulated flow's result or explanation: {exc}") from exc
        return cls(float(data["t"]), ProbeRequest(texts[0], texts[1], port, texts[2], sport), result, explanation,
                   data.get("batch", 0))


Flow = TracedFlow | SimulatedFlow


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flow_from_dict(data: Any) -> Flow:
    """A flow in its plain-data form (``to_dict``, with its ``kind``) again; bad data raises ValueError."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "traced":
        return TracedFlow.from_dict(data)
    if kind == "simulated":
        return SimulatedFlow.from_dict(data)
    raise ValueError(f"a flow's kind must be 'traced' or 'simulated', got {kind!r}")


QUIET = 0.15          # seconds without a line after which a packet is complete
MAX_ERRORS = 20       # errors a flow source keeps to show
LATE = 2.0            # ... or, for a packet sent over the fabric, after which the next node's lines are lost
REMEMBER = 5.0        # late lines of a flow already handed over are ignored this long
def _fabric(ifname: str | None) -> bool:
    return bool(ifname) and names.is_fabric(ifname)


@dataclass
class _Packet:
    """One packet being assembled: its events per node, as they come."""

    last: float                       # time.monotonic() of its latest line
    legs: dict[str, list[TraceEvent]] = field(default_factory=dict)
    marked: bool = False              # the flows table's rule traced it (a new connection)
    ended: bool = False               # dropped, rejected or delivered to a pod on some node
    origin: bool = False              # seen on the node where it entered the lab (not from the fabric)
    through: set[str] = field(default_factory=set)  # the nodes whose filters are done with it

    @property
    def complete(self) -> bool:
        return self.marked and self.ended and self.origin and self.through >= set(self.legs)

    def flow(self) -> TracedFlow:
        order = nft_trace.travel_order(self.legs)
        return TracedFlow(min(self.legs[n][0].t for n in order), tuple((n, tuple(self.legs[n])) for n in order))


class Assembler:
    """Groups the trace lines of every node into new connections' first packets (pure: no I/O)."""

    def __init__(self, quiet: float = QUIET):
        self.quiet = quiet
        self._by_id: dict[tuple[str, str], tuple[tuple, str, dict, float]] = {}  # (node, trace id) -> packet
        self._open: dict[tuple, _Packet] = {}
        self._done: dict[tuple, float] = {}

    @property
    def pending(self) -> int:
        return len(self._open)

    def feed(self, node: str, t: float, line: str, now: float | None = None) -> list[TracedFlow]:
        """One trace line of ``node`` (read at unix time ``t``); the flows it completed."""
        now = time.monotonic() if now is None else now
        e = nft_trace.parse_line(node, t, line)
        if e is None:
            return []
        if e.kind == "packet":
            p = e.packet
            key = (p.get("proto"), p.get("ip_id"), p.get("sport"), p.get("flags", ""))
            if p.get("ip_id") is None:
                self._by_id.pop((node, e.trace_id), None)
                return []
            self._by_id[(node, e.trace_id)] = (key, e.chain if e.table == names.POL_TABLE else "", p, now)
        found = self._by_id.get((node, e.trace_id))
        if found is None:
            return []
        key, base, packet, _ = found
        if key in self._done:
            return []
        pkt = self._open.get(key)
        if pkt is None:
            pkt = self._open[key] = _Packet(now)
        pkt.last = now
        events = pkt.legs.setdefault(node, [])
        if not events and e.kind == "packet" and not _fabric(e.packet.get("iif")):
            pkt.origin = True
        events.append(e)
        if names.is_flows_table(e.table) and e.kind == "rule":
            pkt.marked = True
        elif e.kind in ("rule", "policy") and not e.ours:
            if e.verdict == "drop" or e.verdict.startswith("reject"):
                pkt.ended = True
                pkt.through.add(node)
            elif base == "ingress" and e.verdict == "accept":  # the forward hook's last filter let it out:
                pkt.through.add(node)                          # to a pod of this node, or over the fabric
                pkt.ended = pkt.ended or not _fabric(packet.get("oif"))
        # handed over once every node it reached is done with it (their lines come in any order)
        return [self._close(key, now)] if pkt.complete else []

    def due(self, now: float | None = None) -> tuple[list[TracedFlow], float | None]:
        """The flows quiet for long enough, and when the next one will be (None: none waits)."""
        now = time.monotonic() if now is None else now
        out, next_at = [], None
        for key, pkt in list(self._open.items()):
            wait = self.quiet if pkt.ended or not pkt.through else max(self.quiet, LATE)  # its next node is late
            if now - pkt.last >= wait:
                flow = self._close(key, now)
                if flow is not None:
                    out.append(flow)
            else:
                at = pkt.last + wait
                next_at = at if next_at is None else min(next_at, at)
        self._prune(now)
        return out, next_at

    def flush(self) -> list[TracedFlow]:
        """Every flow still assembling (the log stops)."""
        return [f for key in list(self._open) if (f := self._close(key, time.monotonic())) is not None]

    def _close(self, key: tuple, now: float) -> TracedFlow | None:
        pkt = self._open.pop(key)
        self._done[key] = now
        return pkt.flow() if pkt.marked else None

    def _prune(self, now: float) -> None:
        if len(self._done) > 256:
            self._done = {k: at for k, at in self._done.items() if now - at < REMEMBER}
        if len(self._by_id) > 1024:
            self._by_id = {k: v for k, v in self._by_id.items() if now - v[3] < REMEMBER}


class FlowSource(ABC):
    """A running flow source of one lab. ``on_event`` gets each ``TracedFlow``/``SimulatedFlow``."""

    simulated = False

    def __init__(self, on_event: Callable[[Any], None]):
        self.on_event = on_event
        self.errors: list[str] = []
        self._stopped = threading.Event()
        self._stopping = threading.Lock()

    @property
    def running(self) -> bool:
        return not self._stopped.is_set()

    @property
    def pids(self) -> dict[str, list[int]]:
        """The processes this source runs in each node (``{}`` when it runs none)."""
        return {}

    def stop(self) -> None:
        """Stop handing over flows and clean up everything this source started (the flows still being
        assembled are handed over first). Idempotent."""
        if not self._stopping.acquire(blocking=False):
            return  # stopped, or stopping in another thread
        try:
            self._stop()
        finally:
            self._stopped.set()
            _forget(self)

    @abstractmethod
    def _stop(self) -> None:
        """Undo what starting did (called once)."""

    def emit(self, flow: Any) -> None:
        """Hand one flow to ``on_event`` (never raises: a failing listener must not end the source)."""
        if self._stopped.is_set():
            return
        try:
            self.on_event(flow)
        except Exception as exc:  # recorded, shown by the flow log
            log.exception("a flow log listener failed")
            self.note_error(f"a listener failed: {type(exc).__name__}: {exc}")

    def note_error(self, text: str) -> None:
        """Keep an error to show (the last ``MAX_ERRORS`` of them: a listener failing at every flow must not
        fill the memory)."""
        self.errors.append(text)
        del self.errors[:-MAX_ERRORS]


class Sources:
    """A runtime's running flow sources; ``stop_all`` ends them (the lab closes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[FlowSource] = []

    def add(self, source: FlowSource) -> FlowSource:
        with self._lock:
            self._sources.append(source)
        _owners[source] = self
        return source

    def discard(self, source: FlowSource) -> None:
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)

    def running(self) -> list[FlowSource]:
        with self._lock:
            return list(self._sources)

    def stop_all(self) -> None:
        for source in self.running():
            try:
                source.stop()
            except Exception:  # closing goes on: removing the lab ends what is left anyway
                log.exception("stopping a flow source failed")


_registry: "weakref.WeakKeyDictionary[Any, Sources]" = weakref.WeakKeyDictionary()
_owners: "weakref.WeakKeyDictionary[FlowSource, Sources]" = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def sources_of(runtime: Any) -> Sources:
    """The running flow sources of ``runtime`` (made on first use)."""
    with _registry_lock:
        found = _registry.get(runtime)
        if found is None:
            found = _registry[runtime] = Sources()
        return found


def _forget(source: FlowSource) -> None:
    owner = _owners.pop(source, None)
    if owner is not None:
        owner.discard(source)
