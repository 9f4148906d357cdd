"""The packet captures and flow logs the lab server runs for its callers, kept between their calls.

Owns ``Observers``: the server side of ``lab.capture`` and ``lab.flow_log`` on the remote backend,
the calls ``capture-start``, ``capture-stop``, ``flows-start``, ``flows-poll`` and ``flows-stop``
of a lab (``labkit.server.app`` routes them here; the client side is
``labkit.runtime.remote_observe``). A capture is the runtime's own ``CaptureHandle``; a flow log
is the runtime's ``FlowSource`` whose flows wait, numbered, in a bounded buffer (``KEEP``) for
the caller's polls. Each is known by a random id under its lab's key (name, owner): an id of
another lab or learner is not found. Bounds: ``MAX_CAPTURES`` and ``MAX_FLOW_LOGS`` per lab, a
``capture-stop`` that waits holds its call ``WAIT_CAP`` seconds at most, the pcap handed over
is never longer than the spec's ``max_bytes`` (whole records), a poll hands over ``PER_POLL``
flows at most. Everything a lab runs is stopped and forgotten when the lab closes or is removed
(``forget_lab``), and what nobody asked about for ``IDLE`` seconds by ``sweep`` (run by a thread
of its own while anything runs): a learner who closes their laptop leaves nothing running.
"""
from __future__ import annotations

import base64
import collections
import logging
import secrets
import struct
import threading
import time
from typing import Any, Callable

from labkit.errors import ModelError, NotFound
from labkit.runtime import capturing
from labkit.runtime.base import LabRuntime
from labkit.runtime.wire import Refused

log = logging.getLogger(__name__)

MAX_CAPTURES = 4    # per lab: running, or ended and not yet handed over
MAX_FLOW_LOGS = 4   # per lab
KEEP = 1000         # flows a flow log keeps for its poller (the oldest go first)
PER_POLL = 250      # flows one answer carries at most ("more": true says the rest are waiting)
WAIT_CAP = 15.0     # seconds a capture-stop that waits holds its call at most (then "done": false)
IDLE = 60.0         # seconds nobody called about a capture or flow log: it is stopped and forgotten
SWEEP_EVERY = 5.0
SPEC_KEYS = ("filter", "seconds", "count", "max_bytes")
# the calls that may wait long or must not wait for the lab's other calls: served beside its lock
BESIDE_THE_LOCK = frozenset({"capture-stop", "flows-poll", "flows-stop"})

Key = tuple[str, str]


def _key(runtime: LabRuntime) -> Key:
    return runtime.name, runtime.owner


class _Entry:
    """One capture or flow log: its lab, when it was last asked about, and the calls about it now."""

    def __init__(self, lab: Key, now: float):
        self.lab, self.seen, self.busy = lab, now, 0


class _Capture(_Entry):
    def __init__(self, lab: Key, now: float, handle: capturing.CaptureHandle):
        super().__init__(lab, now)
        self.handle = handle
        self.claimed = False  # its pcap was handed over (once)

    def stop(self) -> None:
        self.handle.stop()


class _Flows(_Entry):
    def __init__(self, lab: Key, now: float):
        super().__init__(lab, now)
        self.source: Any = None
        self.lock = threading.Lock()
        self.buffer: collections.deque[tuple[int, Any]] = collections.deque(maxlen=KEEP)
        self.seq = 0

    def add(self, flow: Any) -> None:  # the source's thread
        with self.lock:
            self.seq += 1
            self.buffer.append((self.seq, flow))

    def answer(self, after: int, most: int = PER_POLL) -> dict[str, Any]:
        """The flows numbered after ``after`` (``most`` of them), and how many the buffer lost meanwhile."""
        with self.lock:
            first = self.buffer[0][0] if self.buffer else self.seq + 1
            items = [(seq, flow) for seq, flow in self.buffer if seq > after]
        more, items = len(items) > most, items[:most]
        source = self.source
        return {"flows": [{"seq": seq, "flow": flow.to_dict()} for seq, flow in items],
                "last": items[-1][0] if items else after, "more": more, "missed": max(0, first - after - 1),
                "running": bool(source is not None and source.running),
                "errors": list(source.errors) if source is not None else []}

    def stop(self) -> None:
        if self.source is not None:
            self.source.stop()


class Observers:
    """The captures and flow logs of every lab this server runs (see the module's docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, idle: float = IDLE,
                 wait_cap: float = WAIT_CAP, sweep_every: float = SWEEP_EVERY):
        self.clock, self.idle, self.wait_cap, self.sweep_every = clock, idle, wait_cap, sweep_every
        self._lock = threading.Lock()  # guards the tables; never held while a runtime works
        self._captures: dict[str, _Capture] = {}
        self._flows: dict[str, _Flows] = {}
        self._sweeper: threading.Thread | None = None
        self._closed = threading.Event()

    def calls(self) -> dict[tuple[str, str], Callable[[LabRuntime, dict], dict]]:
        return {("POST", "capture-start"): self.capture_start, ("POST", "capture-stop"): self.capture_stop,
                ("POST", "flows-start"): self.flows_start, ("POST", "flows-poll"): self.flows_poll,
                ("POST", "flows-stop"): self.flows_stop}

    def count(self, lab: Key | None = None) -> dict[str, int]:
        """How many captures and flow logs are kept now (of one lab's key, or of every lab)."""
        with self._lock:
            return {"captures": sum(1 for e in self._captures.values() if lab is None or e.lab == lab),
                    "flow_logs": sum(1 for e in self._flows.values() if lab is None or e.lab == lab)}

    # ------------------------------------------------------------ captures
    def capture_start(self, runtime: LabRuntime, body: dict) -> dict:
        target = body.get("target")
        if not isinstance(target, str) or not target or len(target) > 300:
            raise ModelError("capture on a pod (\"ns/name\"), a node (\"node-1\") or \"internet\"", path="target")
        spec = body.get("spec", {})
        if not isinstance(spec, dict):
            raise ModelError(f"must be an object with {', '.join(SPEC_KEYS)}", path="spec")
        extra = sorted(k for k in spec if k not in SPEC_KEYS)
        if extra:
            raise ModelError(f"a capture takes only {', '.join(SPEC_KEYS)}", path=f"spec.{extra[0]}")
        spec = capturing.check_spec(**spec)  # the same errors, naming the same fields, as on a learner's machine
        key = _key(runtime)
        if self.count(key)["captures"] >= MAX_CAPTURES:  # the lab's lock is held: no other start races this one
            raise Refused(f"lab {runtime.name!r} has {MAX_CAPTURES} captures running (or ended and not yet read), "
                          "the most this lab server allows a lab: stop one first (cap.stop())")
        handle = runtime.capture(target, spec)
        ident = self._add(self._captures, _Capture(key, self.clock(), handle))
        return {"id": ident, "target": handle.target, "spec": dict(handle.spec), "started": handle.started,
                "interfaces": {str(k): v for k, v in handle.interfaces.items()}, "simulated": handle.simulated}

    def capture_stop(self, runtime: LabRuntime, body: dict) -> dict:
        """Stop the capture now (``wait`` false) or wait, ``wait_cap`` seconds at most, for its own end;
        once it ended, its pcap (base64), why it ended and its interfaces, handed over once."""
        ident, wait = _ident(body), body.get("wait", False)
        if not isinstance(wait, bool):
            raise ModelError("must be true (wait for the capture's own end) or false (stop it now)", path="wait")
        entry = self._use(self._captures, runtime, ident, "capture")
        try:
            handle = entry.handle
            if wait:
                handle.wait(self.wait_cap)
            else:
                handle.stop()
            if not handle.done:
                return {"done": False}
            with self._lock:
                if entry.claimed:  # another call of the same caller took it
                    raise _gone("capture", ident, runtime)
                entry.claimed = True
                self._captures.pop(ident, None)
        finally:
            self._release(entry)
        data, cut, packets = whole_records(handle.data(), handle.spec["max_bytes"])
        return {"done": True, "pcap": base64.b64encode(data).decode("ascii"),
                "reason": "bytes" if cut else handle.reason, "note": handle.note,
                "packets": packets if cut else handle.packets, "started": handle.started,
                "interfaces": {str(k): v for k, v in handle.interfaces.items()}}

    # ------------------------------------------------------------ flow logs
    def flows_start(self, runtime: LabRuntime, body: dict) -> dict:
        key = _key(runtime)
        if self.count(key)["flow_logs"] >= MAX_FLOW_LOGS:
            raise Refused(f"lab {runtime.name!r} has {MAX_FLOW_LOGS} flow logs running, the most this lab server "
                          "allows a lab: stop one first (log.stop())")
        entry = _Flows(key, self.clock())
        entry.source = runtime.flows(entry.add)
        return {"id": self._add(self._flows, entry), "simulated": bool(entry.source.simulated)}

    def flows_poll(self, runtime: LabRuntime, body: dict) -> dict:
        ident, after = _ident(body), _after(body)
        entry = self._use(self._flows, runtime, ident, "flow log")
        try:
            return entry.answer(after)
        finally:
            self._release(entry)

    def flows_stop(self, runtime: LabRuntime, body: dict) -> dict:
        """Stop the flow log; the answer has every flow after ``after`` (those still assembling too)."""
        ident, after = _ident(body), _after(body)
        entry = self._use(self._flows, runtime, ident, "flow log")
        with self._lock:
            self._flows.pop(ident, None)
        try:
            entry.stop()
            return entry.answer(after, KEEP)
        finally:
            self._release(entry)

    # ------------------------------------------------------------ bookkeeping
    def _add(self, table: dict, entry: _Entry) -> str:
        ident = secrets.token_hex(8)
        with self._lock:
            table[ident] = entry
            if self._sweeper is None and not self._closed.is_set():
                self._sweeper = threading.Thread(target=self._sweep_loop, name="labkit-observe-sweeper", daemon=True)
                self._sweeper.start()
        return ident

    def _use(self, table: dict, runtime: LabRuntime, ident: str, what: str) -> Any:
        with self._lock:
            entry = table.get(ident)
            if entry is None or entry.lab != _key(runtime):
                raise _gone(what, ident, runtime)
            entry.busy += 1
            entry.seen = self.clock()
        return entry

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.busy -= 1
            entry.seen = self.clock()

    def forget_lab(self, lab: Key) -> None:
        """Stop and forget every capture and flow log of ``lab`` (it closes, or was removed)."""
        self._drop(lambda e: e.lab == lab)

    def sweep(self, now: float | None = None) -> int:
        """Stop and forget what nobody asked about for ``idle`` seconds; returns how many."""
        now = self.clock() if now is None else now
        return self._drop(lambda e: e.busy == 0 and now - e.seen > self.idle)

    def close(self) -> None:
        self._closed.set()
        self._drop(lambda e: True)

    def _drop(self, which: Callable[[_Entry], bool]) -> int:
        with self._lock:
            gone = [(table, ident) for table in (self._captures, self._flows) for ident, e in table.items() if which(e)]
            entries = [table.pop(ident) for table, ident in gone]
        for entry in entries:  # a call waiting on one still gets its pcap (it holds the entry)
            try:
                entry.stop()
            except Exception:  # noqa: BLE001 - the others are stopped all the same; closing the lab ends the rest
                log.exception("stopping a capture or flow log of lab %s of %s failed", *entry.lab)
        return len(entries)

    def _sweep_loop(self) -> None:
        while not self._closed.wait(self.sweep_every):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("sweeping captures and flow logs failed")
            with self._lock:
                if not self._captures and not self._flows:  # nothing runs: the next start makes a new thread
                    self._sweeper = None
                    return


def _gone(what: str, ident: str, runtime: LabRuntime) -> NotFound:
    return NotFound(f"no {what} {ident!r} in lab {runtime.name!r} of {runtime.owner} on this lab server (it ended "
                    f"and was read, was stopped, nobody asked about it for {IDLE:g} s, or its lab closed)", path="id")


def _ident(body: dict) -> str:
    value = body.get("id")
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise ModelError("must be the id a start call answered", path="id")
    return value


def _after(body: dict) -> int:
    value = body.get("after", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ModelError("must be a whole number, 0 or more: the last flow's seq this caller has", path="after")
    return value


def whole_records(data: bytes, limit: int) -> tuple[bytes, bool, int]:
    """``data`` (a pcap file) cut to whole records within ``limit`` bytes: (bytes, cut?, records kept)."""
    if len(data) <= limit or len(data) < 24:
        return data, False, 0
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    end, kept = 24, 0
    while end + 16 <= len(data):
        (length,) = struct.unpack_from(order + "I", data, end + 8)
        if end + 16 + length > limit:
            break
        end, kept = end + 16 + length, kept + 1
    return data[:end], True, kept
