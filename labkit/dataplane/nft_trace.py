"""The kernel's own trace of chosen packets: which packets to mark, and what ``nft monitor trace`` said.

Owns the two trace tables and the reading of the trace. ``walk_tables(sports, protocol)`` marks
chosen connections only, by their clients' source ports, in both directions (``meta nftrace set 1``
before any other hook: bridge prerouting for frames from a pod's port or the fabric, ip
prerouting for routed packets); ``flow_tables()`` marks the first packet of every new
connection (after conntrack). ``disarm`` removes either, idempotently. ``parse_line`` turns
one monitor line into a ``TraceEvent``; ``chain_comments`` reads what each chain of a rendered
ruleset is for. Pure: text in, values out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from labkit.dataplane import names

_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
MARK = "meta nftrace set 1"
WALK_SPORTS = (20000, 29999)  # a walk's client port: below Linux's ephemeral range (32768-60999), so no other
                              # client of the lab uses it at the same time


def walk_tables(sports: list[int], protocol: str | None, table: str = names.TRACE_TABLE) -> str:
    """Trace tables for the connections whose clients use the source ports ``sports`` (both directions);
    ``protocol`` None marks TCP, UDP and SCTP alike."""
    ports = str(sports[0]) if len(sports) == 1 else "{ " + ", ".join(str(p) for p in sorted(sports)) + " }"
    protos = [_PROTO[protocol]] if protocol else list(_PROTO.values())
    # TCP: only the packets that open or refuse the connection (SYN, SYN-ACK, RST); the rest of the
    # connection would multiply the trace (and overrun the monitor's socket when many walks run at once)
    only = {"tcp": " tcp flags & (syn | rst) != 0"}
    rules = [f"meta l4proto {p} th {side} {ports}{only.get(p, '')} {MARK}" for p in protos
             for side in ("sport", "dport")]
    out = [disarm(table, ("bridge", "ip"))]
    for family in ("bridge", "ip"):
        out += [f"table {family} {table} {{", "  chain walk {",
                "    type filter hook prerouting priority -350; policy accept;",
                *(f"    {r} {names.nft_comment('labkit packet walk: trace these connections')}" for r in rules),
                "  }", "}"]
    return "\n".join(out) + "\n"


def flow_tables(table: str = names.FLOWS_TABLE) -> str:
    """A trace table that marks the first packet of every new connection (the flow log)."""
    return disarm(table, ("ip",)) + "\n".join([
        f"table ip {table} {{", "  chain new-flows {",
        "    type filter hook prerouting priority -150; policy accept;",
        f"    ct state new {MARK} {names.nft_comment('labkit flow log: trace new connections')}",
        "  }", "}"]) + "\n"


def disarm(table: str = names.TRACE_TABLE, families: tuple[str, ...] = ("bridge", "ip")) -> str:
    """Remove trace tables (present or not) in one transaction."""
    return "".join(f"add table {f} {table}\ndelete table {f} {table}\n" for f in families)


_LINE = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) (packet|rule|policy|verdict|unknown rule)\b:? ?(.*)$")
_VERDICT = re.compile(r"^(.*) \(verdict ([^)]*)\)\s*$")
_IP_FIELDS = {"saddr": "saddr", "daddr": "daddr", "id": "ip_id", "ttl": "ttl", "length": "length"}
_INTS = {"ip_id", "ttl", "length", "sport", "dport"}
_TCP_FLAGS = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"))


def tcp_flags(text: str) -> str:
    """``0x12`` or ``syn`` (as nft prints them) -> ``SYN,ACK``."""
    if text.startswith("0x"):
        bits = int(text, 16)
        return ",".join(name for bit, name in _TCP_FLAGS if bits & bit) or text
    return ",".join(part.upper() for part in text.split("|"))


@dataclass(frozen=True)
class TraceEvent:
    """One line of the kernel's trace, on one node: a packet entering a chain, a rule that matched
    (with its verdict), or a base chain's policy."""

    node: str
    t: float
    trace_id: str
    family: str
    table: str
    chain: str
    kind: str                # "packet" | "rule" | "policy" | "verdict"
    text: str = ""           # the rule, as nft lists it (with its comment)
    verdict: str = ""        # "accept", "drop", "continue", "jump x", "goto y", "return", ...
    packet: dict = field(default_factory=dict)  # for "packet": iif, oif, saddr, daddr, sport, dport, ...

    @property
    def where(self) -> str:
        return f"{self.family} {self.table} {self.chain}"

    def to_dict(self) -> dict:
        return {"node": self.node, "t": self.t, "trace_id": self.trace_id, "family": self.family,
                "table": self.table, "chain": self.chain, "kind": self.kind, "text": self.text,
                "verdict": self.verdict, "packet": dict(self.packet)}

    @classmethod
    def from_dict(cls, data: dict) -> "TraceEvent":
        """The inverse of ``to_dict`` (a lab server sends walks' events so); bad data raises ValueError."""
        if not isinstance(data, dict) or not isinstance(data.get("packet", {}), dict):
            raise ValueError("a trace event must be an object with a 'packet' object")
        texts = ("node", "trace_id", "family", "table", "chain", "kind", "text", "verdict")
        if any(not isinstance(data.get(k, ""), str) for k in texts) or not isinstance(data.get("t"), (int, float)):
            raise ValueError(f"a trace event needs strings {', '.join(texts)} and a number t")
        return cls(t=float(data["t"]), packet=dict(data.get("packet") or {}), **{k: data.get(k, "") for k in texts})

    @property
    def ours(self) -> bool:
        """A line of labkit's own marking tables (not part of the lab's rules)."""
        return names.is_trace_table(self.table) or names.is_flows_table(self.table)


def parse_packet(text: str) -> dict:
    """The fields of a trace's ``packet:`` line (``iif``, ``oif``, ``saddr``, ``daddr``, ``ip_id``, ``ttl``,
    ``length``, ``proto``, ``sport``, ``dport``, ``flags``, ``mark``): the first of each, read word by word
    (the flow log reads thousands of these a second)."""
    words, out, i = text.split(), {}, 0
    n = len(words)
    while i < n - 1:
        w, nxt = words[i], words[i + 1]
        if w in ("iif", "oif"):
            out.setdefault(w, nxt.strip('"'))
            i += 2
            continue
        if w == "ip" and nxt in _IP_FIELDS and i + 2 < n:
            key = _IP_FIELDS[nxt]
            out.setdefault(key, int(words[i + 2]) if key in _INTS else words[i + 2])
            i += 3
            continue
        if w in ("tcp", "udp", "sctp", "icmp"):
            out.setdefault("proto", w)
            if nxt in ("sport", "dport") and i + 2 < n:
                out.setdefault(nxt, int(words[i + 2]))
                i += 3
                continue
            if w == "tcp" and nxt == "flags" and i + 3 < n and words[i + 2] == "==":
                out.setdefault("flags", tcp_flags(words[i + 3]))
                i += 4
                continue
        elif w == "meta" and nxt == "mark" and i + 2 < n:
            out.setdefault("mark", words[i + 2])
            i += 3
            continue
        i += 1
    if "proto" not in out and "flags" in out:
        out["proto"] = "tcp"
    return out


def parse_line(node: str, t: float, line: str) -> TraceEvent | None:
    """One ``nft monitor trace`` line; None for lines that are not trace events."""
    m = _LINE.match(line.strip())
    if not m:
        return None
    trace_id, family, table, chain, kind, rest = m.groups()
    rest = rest.strip()
    if kind == "packet":
        return TraceEvent(node, t, trace_id, family, table, chain, "packet", packet=parse_packet(rest))
    if kind == "policy":
        return TraceEvent(node, t, trace_id, family, table, chain, "policy", verdict=rest.split()[0] if rest else "")
    if kind == "verdict":
        return TraceEvent(node, t, trace_id, family, table, chain, "verdict", verdict=rest)
    vm = _VERDICT.match(rest)
    text, verdict = (vm.group(1), vm.group(2)) if vm else (rest, "")
    return TraceEvent(node, t, trace_id, family, table, chain, "rule", text=text.strip(), verdict=verdict.strip())


def travel_order(legs: dict[str, list[TraceEvent]]) -> list[str]:
    """The nodes one packet crossed, in the order it crossed them: a node that routes a packet lowers its
    TTL, so the node that saw the higher TTL saw it first (then the earlier line)."""
    def entry_ttl(node: str) -> int:
        return next((e.packet.get("ttl", 0) for e in legs[node] if e.kind == "packet"), 0)

    return sorted(legs, key=lambda n: (-entry_ttl(n), legs[n][0].t))


_CHAIN = re.compile(r"^\s*chain (\S+) \{")
_COMMENT = re.compile(r'^\s*comment "(.*)"\s*$')


def chain_comments(ruleset: str) -> dict[str, str]:
    """``{chain name: its comment}`` for every commented chain of a ruleset's text."""
    out, current = {}, None
    for line in ruleset.splitlines():
        m = _CHAIN.match(line)
        if m:
            current = m.group(1)
            continue
        c = _COMMENT.match(line)
        if c and current and current not in out:
            out[current] = c.group(1)
        current = None if c or not line.strip() else current
    return out
