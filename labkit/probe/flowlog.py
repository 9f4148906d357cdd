"""The live flow log: connection attempts in the lab as they happen, with their verdict and why.

Owns ``FlowEvent`` (one row: who tried to reach whom, the verdict the kernel gave — or, on sim,
the oracle — and the NetworkPolicy rule or Service that decided it) and ``FlowLog`` (what
``lab.flow_log()`` returns: a bounded buffer fed by the runtime's flow source from its own
thread, filters, listeners, stop, and the table in text, HTML and plain-data forms). On docker a
row is read from the kernel's trace of the connection's first packet (``walk_read.Reader``, the
packet walk's own reader); a TCP SYN sent again (after 1 s, 3 s ...) joins its first attempt's row
as a count. On sim a row is one probe the oracle answered, marked simulated.
"""
from __future__ import annotations

import html
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from labkit.errors import ModelError
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.probe import walk
from labkit.probe.walk_read import Facts, Hop, Reader
from labkit.semantics import cluster_dns, oracle

VERDICTS = ("allowed", "denied", "rejected", "unknown")
KEEP = 500            # rows kept (the oldest go first)
REPEAT_WINDOW = 10.0  # seconds: the same call again (a SYN retransmitted, the same probe repeated, a live
                      # matrix's next round) with the same verdict joins its row, which moves to the top
SHOWN = 200           # rows an HTML table shows at most
_DENIED_STYLE = "color:#cf222e;font-weight:bold"


@dataclass(frozen=True)
class FlowEvent:
    """One connection attempt. ``src``/``dst``: a pod ref, ``Service ns/name``, a node, ``internet`` or an
    IP; ``verdict``: allowed, denied (dropped) or rejected (refused at once by a rule); ``deciding``: the
    NetworkPolicy rule or Service that decided; ``node``: where it was decided; ``count``: attempts."""

    t: float
    src: str
    dst: str
    port: int | None
    protocol: str
    verdict: str
    deciding: str
    node: str = ""
    count: int = 1
    simulated: bool = False
    endpoint: str | None = None  # the pod a Service sent it to
    sport: int | None = None     # the client's port (None on sim)
    last: float | None = None    # the latest attempt, when there were several (``count`` > 1)

    @property
    def latest(self) -> float:
        return self.last if self.last is not None else self.t

    @property
    def denied(self) -> bool:
        return self.verdict != "allowed"

    def pods(self) -> set[str]:
        return {ref for ref in (self.src, self.dst, self.endpoint) if ref and "/" in ref and " " not in ref}

    def namespaces(self) -> set[str]:
        return {(ref.split(" ", 1)[-1]).split("/")[0] for ref in (self.src, self.dst, self.endpoint)
                if ref and "/" in ref}

    def __str__(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.latest)) + f".{int(self.latest * 1000) % 1000:03d}"
        port = f":{self.port}/" if self.port is not None else " "
        times = f" x{self.count}" if self.count > 1 else ""
        where = f" on {self.node}" if self.node else ""
        sim = " (simulated)" if self.simulated else ""
        return f"{when} {self.src} -> {self.dst}{port}{self.protocol} {self.verdict.upper()}{times}: " \
               f"{self.deciding}{where}{sim}"

    def to_dict(self) -> dict:
        return asdict(self)


def _pod_ref(pod: str) -> str:
    return pod if "/" in pod else f"default/{pod}"


def filtered(events: list[FlowEvent], pod: str | None = None, namespace: str | None = None,
             verdict: str | None = None) -> list[FlowEvent]:
    """The events that involve ``pod`` (as source, destination or endpoint), a pod of ``namespace``,
    and have ``verdict``."""
    if verdict is not None and verdict not in VERDICTS:
        raise ModelError(f"verdict={verdict!r}: one of {', '.join(VERDICTS)} (or None for all)", path="verdict")
    ref = _pod_ref(pod) if pod else None
    return [e for e in events if (ref is None or ref in e.pods()) and
            (not namespace or namespace in e.namespaces()) and (verdict is None or e.verdict == verdict)]


# ------------------------------------------------------------ reading flows
class _Namer:
    """The model's name for an address: a pod ref, ``Service ns/name``, a node, ``internet`` or the IP."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.by_ip = cluster.pod_by_ip()
        self.services = {ip: ref for ref, ip in cluster.service_ips.items() if ip}
        self.nodes = {addr.node_ip(i): addr.node_name(i) for i in range(1, cluster.node_count + 1)}
        self.nodes.update({addr.node_gateway(i): addr.node_name(i) for i in range(1, cluster.node_count + 1)})

    def __call__(self, ip: str | None) -> str:
        if not ip:
            return "?"
        if ip in self.by_ip:
            return self.by_ip[ip]
        if ip in self.services:
            return f"Service {self.services[ip]}"
        if ip == addr.INTERNET_HOST_IP:
            return oracle.INTERNET
        return self.nodes.get(ip, ip)


_ALLOWED_BY = re.compile(r"ALLOWED by NetworkPolicy (\S+), (ingress|egress) rule (\d+)")
_COMMENT = re.compile(r'comment "([^"]*)"')


def _allowed_because(hops: list[Hop], facts: Facts) -> str:
    parts = []
    if facts.service:
        parts.append(f"Service {facts.service} -> {facts.endpoint or '?'}")
    policies = [f"NetworkPolicy {m.group(1)} {m.group(2)} rule {m.group(3)}"
                for h in hops if (m := _ALLOWED_BY.match(h.text))]
    if policies:
        parts += policies
    elif any(h.text.startswith("a pod may always reach itself") for h in hops):
        parts.append("a pod may always reach itself")
    else:
        parts.append("not isolated")
    return "; ".join(parts)


def _denied_because(hops: list[Hop], facts: Facts, dst: str) -> tuple[str, str]:
    """(the sentence, the node) of the rule that dropped or rejected the packet (sent to ``dst``)."""
    final = next((h for h in hops if h.kind in ("drop", "reject")), None)
    node = final.node if final else ""
    m = _COMMENT.search(facts.deciding_rule)
    if m:
        return m.group(1), node
    why = next((h.text.split(": to chain refuse")[0] for h in hops if "to chain refuse" in h.text), None)
    service = facts.service or (dst.split(" ", 1)[1] if dst.startswith("Service ") else None)
    if why:
        return (f"Service {service}: {why}" if service else why), node
    return (final.text if final else facts.deciding_rule or facts.outcome), node


def from_trace(reader: Reader, namer: _Namer, flow: Any) -> tuple[FlowEvent, tuple]:
    """A ``TracedFlow`` as a row, and the connection it belongs to (source, port, destination, protocol)."""
    facts = Facts()
    hops = [h for node, events in flow.legs for h in reader.hops(node, list(events), facts)]
    first = next(e.packet for node, events in flow.legs for e in events if e.kind == "packet")
    proto = (first.get("proto") or "?").upper()
    dst = namer(first.get("daddr"))
    if facts.outcome in ("dropped", "rejected"):
        verdict = "denied" if facts.outcome == "dropped" else "rejected"
        deciding, node = _denied_because(hops, facts, dst)
    elif facts.outcome == "unknown":  # never shown as allowed: its last node's lines did not come in time
        last = flow.legs[-1][0]
        verdict, node = "unknown", last
        deciding = f"seen on {', '.join(n for n, _ in flow.legs)} only: where it ended was not traced in time"
    else:
        verdict, deciding = "allowed", _allowed_because(hops, facts)
        node = next((h.node for h in hops if h.kind == "deliver"), flow.legs[-1][0])
    event = FlowEvent(flow.t, namer(first.get("saddr")), dst, first.get("dport"), proto,
                      verdict, deciding, node, 1, False, facts.endpoint, first.get("sport"))
    return event, (first.get("saddr"), first.get("daddr"), first.get("dport"), proto, verdict, deciding)


_VIA_SERVICE = re.compile(r"is (?:NodePort \d+ of )?Service ([^\s/;,]+/[^\s;,]+)")


def from_simulation(cluster: Cluster, namer: _Namer, flow: Any) -> tuple[FlowEvent, tuple]:
    """A ``SimulatedFlow`` as a row (the oracle's outcome for the endpoint the probe reached)."""
    r, result, ex = flow.request, flow.result, flow.explanation
    outcomes = ex.outcomes or [oracle.Outcome(False, None, tuple(ex.reasons), result.error)]
    if result.ok:
        outcome = next((o for o in outcomes if o.allowed and o.answered_by == result.answered_by), outcomes[0])
    else:
        outcome = next((o for o in outcomes if not o.allowed), outcomes[0])
    service = next((m.group(1) for reason in outcome.reasons if (m := _VIA_SERVICE.search(reason))), None)
    against = [d for d in outcome.decisions if not d.allowed]
    node = ""
    if against:
        d = against[0]
        verdict, deciding = "denied", f"no policy allows it: {d.direction} of {d.subject}"
        if d.subject in cluster.pod_nodes:
            node = addr.node_name(cluster.pod_nodes[d.subject])
    elif not outcome.allowed and outcome.error == "connection refused" and not outcome.decisions:
        verdict, deciding = "rejected", outcome.reasons[-1] if outcome.reasons else "refused"
    elif not outcome.allowed and outcome.error != "connection refused":
        verdict, deciding = "denied", outcome.reasons[0] if outcome.reasons else (outcome.error or "no answer")
    else:
        parts = [f"Service {service} -> {result.answered_by or outcome.answered_by or '?'}"] if service else []
        policies = [f"NetworkPolicy {d.policy} {d.direction} rule {d.rule}" for d in outcome.decisions if d.policy]
        parts += policies or (["a pod may always reach itself"] if outcome.reasons and
                              outcome.reasons[-1].startswith("a pod can always reach itself") else ["not isolated"])
        verdict, deciding = "allowed", "; ".join(parts)
        if not outcome.allowed:  # delivered, but nothing listens: the pod refuses it
            deciding += f"; {outcome.reasons[-1]}"
        target = result.answered_by or outcome.answered_by or next(
            (d.subject for d in outcome.decisions if d.direction == "ingress"), None)
        if target in cluster.pod_nodes:
            node = addr.node_name(cluster.pod_nodes[target])
    event = FlowEvent(flow.t, r.src, _destination(cluster, namer, r.src, r.dst), r.port, r.protocol, verdict,
                      deciding, node, 1, True, outcome.answered_by if service else None, None)
    return event, (r.src, r.dst, r.port, r.protocol, verdict, deciding, event.endpoint)


def _destination(cluster: Cluster, namer: _Namer, src: str, dst: str) -> str:
    if oracle.is_ip(dst):
        return namer(dst)
    if "/" in dst:
        return dst
    ips = cluster_dns.resolve_from(cluster, src, dst).ips
    return namer(ips[0]) if ips else dst


# ------------------------------------------------------------ the log
class FlowLog:
    """A running (then stopped) flow log of one lab: ``events()`` are the rows, newest last.

    ``listeners`` are called with each new or updated ``FlowEvent`` from the source's thread (keep
    them short; a widget hands the work to its own loop). ``version`` grows with every change."""

    def __init__(self, lab: Any, start: Callable[[Callable[[Any], None]], Any], seconds: float | None = None,
                 keep: int = KEEP):
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or seconds <= 0):
            raise ModelError(f"seconds={seconds!r}: a number of seconds more than 0, or None to run until "
                             "stop()", path="seconds")
        self.lab, self.keep, self.seconds = lab, keep, seconds
        self.simulated = bool(lab.simulated)
        self.listeners: list[Callable[[FlowEvent], None]] = []
        self.version = 0
        self.started = time.time()
        self.stopped: float | None = None
        self._lock = threading.Lock()
        self._rows: OrderedDict[int, FlowEvent] = OrderedDict()
        self._repeats: dict[tuple, tuple[int, float]] = {}
        self._serial = 0
        self._readers: tuple[Cluster, Reader | None, _Namer] | None = None
        self._timer: threading.Timer | None = None
        self._source = start(self._received)
        if seconds is not None:
            self._timer = threading.Timer(seconds, self.stop)
            self._timer.daemon = True
            self._timer.start()

    # ------------------------------------------------------------ public
    @property
    def running(self) -> bool:
        return self.stopped is None and self._source.running

    @property
    def errors(self) -> list[str]:
        return list(self._source.errors)

    @property
    def pids(self) -> dict[str, list[int]]:
        """The processes the log runs in each node (docker: the ``nft-watch`` agent and its ``nft monitor``)."""
        return self._source.pids

    def events(self, pod: str | None = None, namespace: str | None = None,
               verdict: str | None = None) -> list[FlowEvent]:
        """The rows by the time of their latest attempt, filtered by pod (source, destination or endpoint),
        namespace and verdict."""
        with self._lock:
            rows = sorted(self._rows.values(), key=lambda e: e.latest)
        return filtered(rows, pod, namespace, verdict)

    def stop(self) -> None:
        """Stop the log (every node is disarmed, its agents end); the rows stay. Idempotent."""
        if self._timer is not None:
            self._timer.cancel()
        self._source.stop()
        if self.stopped is None:
            self.stopped = time.time()

    def wait_for(self, match: Callable[[FlowEvent], bool], timeout: float = 2.0) -> FlowEvent | None:
        """The first row for which ``match`` is true, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((e for e in self.events() if match(e)), None)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(0.01)

    def __enter__(self) -> "FlowLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ feeding
    def _model(self, traced: bool) -> tuple[Cluster, Reader | None, _Namer]:
        """The lab's model now, its namer and (for kernel traces) a trace reader, made once per model."""
        cluster = self.lab.cluster
        made = self._readers
        if made is None or made[0] is not cluster or (traced and made[1] is None):
            made = self._readers = (cluster, Reader(cluster, walk.comments(cluster)) if traced else None,
                                    _Namer(cluster))
        return made

    def _received(self, flow: Any) -> None:
        cluster, reader, namer = self._model(not flow.simulated)
        if flow.simulated:
            event, key = from_simulation(cluster, namer, flow)
        else:
            event, key = from_trace(reader, namer, flow)
        now = time.monotonic()
        with self._lock:
            seen = self._repeats.get(key)
            if seen is not None and seen[0] in self._rows and now - seen[1] < REPEAT_WINDOW:
                old = self._rows[seen[0]]
                event = replace(old, count=old.count + 1, last=max(old.latest, event.t))
                self._rows[seen[0]] = event
                self._rows.move_to_end(seen[0])  # the least recently seen rows are the first to go
                self._repeats[key] = (seen[0], now)
            else:
                self._serial += 1
                self._rows[self._serial] = event
                self._repeats[key] = (self._serial, now)
                while len(self._rows) > self.keep:
                    self._rows.popitem(last=False)
                if len(self._repeats) > 4 * self.keep:
                    self._repeats = {k: v for k, v in self._repeats.items() if v[0] in self._rows}
            self.version += 1
        for listener in list(self.listeners):
            listener(event)

    # ------------------------------------------------------------ showing
    def _state(self) -> str:
        rows = self.events()
        denied = sum(1 for e in rows if e.denied)
        state = "running" if self.running else "stopped"
        return f"{state}, {len(rows)} flow(s), {denied} denied or rejected"

    def __repr__(self) -> str:
        sim = " (SIMULATED: the oracle's answers to the lab's probes)" if self.simulated else ""
        return f"<FlowLog {self._state()}{sim}>"

    def __str__(self) -> str:
        lines = [repr(self)] + [str(e) for e in self.events()[-SHOWN:]]
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = f"<div><b>Flow log</b>: {html.escape(self._state())}</div>"
        errors = "".join(f"<div class='labkit-error'>{html.escape(e)}</div>" for e in self.errors)
        return f"<div class='labkit-flowlog'>{head}{errors}{table_html(self.events(), self.simulated)}</div>"

    def to_dict(self) -> dict:
        return {"simulated": self.simulated, "running": self.running, "started": self.started,
                "stopped": self.stopped, "events": [e.to_dict() for e in self.events()], "errors": self.errors}


def table_html(events: list[FlowEvent], simulated: bool, limit: int = SHOWN) -> str:
    """The rows as an HTML table, newest first; denied and rejected rows in bold red."""
    banner = ("<div class='labkit-flows-simulated' style='background:#fff8c5;padding:2px 6px'><b>simulated</b>: "
              "each row is a probe the oracle answered, not a packet the kernel saw</div>") if simulated else ""
    if not events:
        return banner + "<div><i>no connection attempts yet</i></div>"
    rows = []
    for e in reversed(events[-limit:]):
        style = f" style='{_DENIED_STYLE}'" if e.denied else ""
        cls = "labkit-flow denied" if e.denied else "labkit-flow allowed"
        when = time.strftime("%H:%M:%S", time.localtime(e.latest))
        port = f"{e.port}/{e.protocol}" if e.port is not None else e.protocol
        cells = [when, e.src, e.dst, port, e.verdict + (f" x{e.count}" if e.count > 1 else ""), e.deciding, e.node]
        rows.append(f"<tr class='{cls}'{style}>" + "".join(f"<td style='text-align:left;padding:1px 8px'>"
                                                           f"{html.escape(c)}</td>"
                                                           for c in cells) + "</tr>")
    head = "".join(f"<th style='text-align:left;padding:1px 8px'>{h}</th>" for h in
                   ("time", "source", "destination", "port", "verdict", "deciding", "node"))
    return f"{banner}<table class='labkit-flows'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
