"""The kernel's trace of lab packets, read from the nodes: packet walks and the flow log's source.

Owns ``NodeWatch`` (the node agent's ``nft-watch`` running in one node: arm, stream the trace,
disarm) and ``walk``: arm every node at once for one connection (its client's source port),
make that one connection, disarm, and return the probe's result with the trace's events in
time order. Tracing is switched off on every way out: the agent disarms when told to stop,
when its stdin ends (this process died) and after its own time limit.
"""
from __future__ import annotations

import json
import secrets
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from labkit.dataplane import names, nft_trace
from labkit.errors import BackendError
from labkit.results import ProbeResult
from labkit.runtime.base import ProbeRequest
from labkit.model import addressing as addr
from labkit.runtime.docker import engine
from labkit.semantics import oracle

if TYPE_CHECKING:
    from labkit.runtime.docker.dockerlab import DockerLab

WALK_SECONDS = 60          # the agent disarms by itself after this long, whatever happens here
STAGGER_MS = 3             # between the walks' connections: a burst of traces would overrun the monitor
_locks: "weakref.WeakKeyDictionary[DockerLab, threading.Lock]" = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def _walk_lock(lab: "DockerLab") -> threading.Lock:
    """One walk at a time per lab (its walks share the trace table's name); other labs' walks run beside it."""
    with _guard:
        return _locks.setdefault(lab, threading.Lock())


class NodeWatch:
    """``nft-watch`` in one node: armed when constructed, ``stop()`` returns what it saw."""

    def __init__(self, client, container_id: str, what: str, node: str, arm: str, disarm: str, seconds: float):
        self.node, self.what = node, what
        self._stream = engine.ExecStream(client, container_id, engine.NODE_AGENT + ["nft-watch"], f"tracing in {what}")
        self.lines: list[tuple[float, str]] = []
        self.errors: list[str] = []
        try:
            self._stream.send_line(json.dumps({"arm": arm, "disarm": disarm, "seconds": seconds}))
            first = self._read(15.0)
            while first is not None and "line" in first:  # other tracing in this node (a flow log) streams
                self.lines.append((float(first["t"]), first["line"]))  # before the agent has armed its own
                first = self._read(15.0)
            if not first or not first.get("armed"):
                said = first.get("error") if first else self._stream.stderr().strip()[-500:]
                raise BackendError(f"could not switch tracing on in {what}: "
                                   f"{said or 'the node agent ended without answer'}")
            self.pids: list[int] = [int(p) for p in first.get("pids", [])]  # the agent and its monitor
        except BaseException:
            self._stream.close()
            raise

    def _read(self, timeout: float) -> dict | None:
        line = self._stream.read_line(timeout)
        if line is None:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return {"error": line}

    def read(self, timeout: float) -> dict | None:
        """The next message (``{"t", "line"}``, ``{"done"}``, ``{"error"}``); None when the agent ended."""
        return self._read(timeout)

    def probe(self, payload: dict, timeout: float) -> dict:
        """Run a ``probe`` request in this node while the trace runs; its answer (trace lines are kept)."""
        self._stream.send_line(json.dumps({"probe": payload}))
        while (msg := self._read(timeout)) is not None:
            if "line" in msg:
                self.lines.append((float(msg["t"]), msg["line"]))
            elif "probe" in msg:
                return msg["probe"]
            elif "error" in msg:
                raise BackendError(f"probing from {self.what} while tracing: {msg['error']}")
        raise BackendError(f"the trace in {self.what} ended before the probe's answer")

    def stop(self, timeout: float = 10.0) -> list[tuple[float, str]]:
        """Disarm, and return every trace line seen (time, text)."""
        try:
            self._stream.send_line("stop")
            while (msg := self._read(timeout)) is not None:
                if "line" in msg:
                    self.lines.append((float(msg["t"]), msg["line"]))
                elif "error" in msg:
                    self.errors.append(str(msg["error"]))
                elif msg.get("done"):
                    break
        finally:
            self._stream.close()
        if self.errors:
            raise BackendError(f"tracing in {self.what}: {'; '.join(self.errors)}")
        return self.lines

    def request_stop(self) -> None:
        """Ask the agent to disarm and end; whoever reads gets the last lines, then ``{"done"}``."""
        try:
            self._stream.send_line("stop")
        except OSError:  # the agent already ended
            pass

    def close(self) -> None:
        """Give up without reading (the agent disarms when its stdin ends)."""
        self._stream.close()


def arm_all(lab: "DockerLab", arm: str, disarm: str, seconds: float) -> list[NodeWatch]:
    """A watch armed in every node of ``lab`` at once; on any failure, or Ctrl-C, none stays armed."""
    with ThreadPoolExecutor(max_workers=max(1, len(lab.nodes))) as pool:
        futures = [pool.submit(NodeWatch, lab.client, n.id, n.what, n.name, arm, disarm, seconds) for n in lab.nodes]
        try:
            for f in futures:
                f.exception()  # waits; a KeyboardInterrupt lands here
        except BaseException:
            pool.shutdown(wait=True)
            _close([f.result() for f in futures if f.done() and not f.cancelled() and f.exception() is None])
            raise
    watches = [f.result() for f in futures if f.exception() is None]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        _close(watches)
        raise failed[0]
    return watches


def _close(watches: list[NodeWatch]) -> None:
    """Let go of watches without reading them: each agent disarms its node when its stdin ends."""
    for w in watches:
        try:
            w.close()
        except OSError:  # its stream is already gone: the agent ended (and disarmed) by itself
            continue


def _probe(lab: "DockerLab", watches: list[NodeWatch], requests: list[ProbeRequest],
           timeout: float) -> list[ProbeResult]:
    """The walks' connections, all at once: from pods through their node's watcher (no second exec),
    from the internet host by a probe of its own."""
    results: list[ProbeResult | None] = [None] * len(requests)
    groups: dict[str, list[int]] = {}
    for k, r in enumerate(requests):
        where = "internet" if r.src == oracle.INTERNET else addr.node_name(lab.cluster.pod_nodes[r.src])
        groups.setdefault(where, []).append(k)
    before = lab.neighbour_snapshot()

    def run(item: tuple[str, list[int]]) -> None:
        where, ks = item
        if where == "internet":
            for k, res in zip(ks, lab.probe([requests[k] for k in ks], timeout)):
                results[k] = res
            return
        watch = next(w for w in watches if w.node == where)
        answer = watch.probe({"timeout": timeout, "stagger_ms": STAGGER_MS,
                              "probes": [lab.probe_spec(k, requests[k]) for k in ks]}, timeout * 4 + 30)
        for res in answer["results"]:
            results[int(res["id"])] = lab.probe_result(res, requests[int(res["id"])])

    with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        list(pool.map(run, groups.items()))
    done = [r for r in results if r is not None]
    lab.judge_failures(done, before)
    return done


def walk(lab: "DockerLab", requests: list[ProbeRequest],
         timeout: float) -> tuple[list[ProbeResult], list[nft_trace.TraceEvent]]:
    """Connections (each with its own ``sport``), traced by the kernel of every node at once;
    (their results, the trace's events by time)."""
    sports = [r.sport for r in requests]
    if None in sports or len(set(sports)) != len(sports):
        raise BackendError("every traced connection needs a source port of its own")
    table = names.trace_table(secrets.token_hex(4))  # this walk's own: another process's walks keep theirs
    arm = nft_trace.walk_tables(sports, requests[0].protocol if len({r.protocol for r in requests}) == 1 else None,
                                table)
    disarm = nft_trace.disarm(table, ("bridge", "ip"))
    with _walk_lock(lab):
        watches = arm_all(lab, arm, disarm, WALK_SECONDS)
        events: list[nft_trace.TraceEvent] = []
        failures: list[str] = []
        try:
            results = _probe(lab, watches, requests, timeout)
            for w in watches:  # each stop disarms its node, even when another failed
                try:
                    lines = w.stop()
                except BackendError as exc:
                    failures.append(str(exc))
                    continue
                events += [e for t, line in lines if (e := nft_trace.parse_line(w.node, t, line)) is not None]
        finally:
            _close(watches)  # on any way out (Ctrl-C included): a stopped watch's close does nothing more
        if failures:
            raise BackendError("; ".join(failures))
    events.sort(key=lambda e: e.t)  # stable: a node's own lines keep their order
    return results, events
