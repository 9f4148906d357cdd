"""A packet walk: one connection, hop by hop, as the kernel handled it, next to what the oracle says.

Owns ``Walk`` (the value ``lab.trace`` returns: text, HTML and plain-data forms) and the two
ways to build it: ``observed`` from the kernel's trace of every node (docker) and ``simulated``
from the oracle alone (sim, labelled so). A walk shows the first packet of the connection
(SYN, or the first datagram) through every node it crossed, the first answer on its way back,
and a line for the packets after them; its ``facts`` (delivered or not, where, by which rule,
Service and endpoint, DNAT, masquerade, each direction's policy verdict) are compared with the
oracle's, and each difference is flagged as a matrix difference is.
"""
from __future__ import annotations

import html
import ipaddress
from dataclasses import dataclass, field

from labkit.dataplane import nft_trace, ruleset
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.probe import walk_oracle
from labkit.probe.walk_read import Facts, Hop, Reader, packets
from labkit.results import ProbeResult
from labkit.semantics import oracle

_COLOURS = {"accept": "#1a7f37", "drop": "#cf222e", "reject": "#cf222e", "deliver": "#1a7f37"}


@dataclass
class Walk:
    """One connection's walk. ``request``/``reply``: the hops of its first packet and of the first answer;
    ``facts``: what they prove; ``expected``: the oracle's facts; ``differences``: where the two disagree."""

    src: str
    dst: str
    ip: str
    port: int
    protocol: str
    result: ProbeResult
    request: list[Hop]
    reply: list[Hop]
    facts: Facts
    expected: Facts
    explanation: oracle.Explanation
    simulated: bool
    later: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    request_label: str = ""
    reply_label: str = ""
    unrelated_packets: int = 0  # packets of other connections in the same trace: 0 unless marking is broken

    @property
    def agrees(self) -> bool:
        """Did the kernel do what the oracle says (always true when simulated: it is the oracle)?"""
        return not self.differences

    @property
    def complete(self) -> bool:
        """Did the trace show the whole decision (a verdict; for a delivered packet, each policy direction)?
        False when the monitor lost lines: many walks at once can overrun its socket."""
        f = self.facts
        if self.simulated:
            return True
        if f.outcome == "unknown":
            return False
        if f.outcome == "delivered" and not any(h.kind == "local" for h in self.request):
            wanted = ({"ingress"} if "/" in (f.endpoint or "") else set()) | (
                set() if self.src == oracle.INTERNET else {"egress"})
            return wanted <= {d[0] for d in f.decisions}
        return True

    @property
    def verdict(self) -> str:
        f = self.facts
        if f.outcome == "delivered":
            return f"delivered to {f.endpoint}" if f.endpoint else "delivered"
        return f.outcome

    def _head(self) -> str:
        target = self.dst if self.dst == self.ip else f"{self.dst} ({self.ip})"
        how = "simulated from the model (no kernel traced it)" if self.simulated else \
            f"traced by the kernel of {', '.join(self.facts.nodes) or 'no node'}"
        answer = f"answered by {self.result.answered_by}" if self.result.ok else f"failed: {self.result.error}"
        return f"{self.src} -> {target} port {self.port}/{self.protocol}: {self.verdict}; {answer} ({how})"

    def __str__(self) -> str:
        lines = [self._head()]
        for title, hops in ((f"-> request ({self.request_label or 'first packet'})", self.request),
                            (f"<- reply ({self.reply_label or 'first answer'})", self.reply)):
            if not hops:
                continue
            lines.append(title)
            node = None
            for h in hops:
                lines.append(f"  {h.node if h.node != node else '':<7} {h.text}")
                node = h.node
                if h.rule:
                    lines.append(f"  {'':<7}   rule: {h.rule}" + (f" ({h.verdict})" if h.verdict else ""))
        if not self.reply and self.facts.outcome == "delivered":
            lines.append("<- no answer was traced")
        lines += [f"then {x}" for x in self.later]
        if self.unrelated_packets:
            lines.append(f"Note: the kernel also traced {self.unrelated_packets} packet(s) of other connections; "
                         "labkit marks only the walked ones (please report this with lab.rules()).")
        if self.simulated:
            lines.append("Simulated: these are the oracle's hops (lab.explain), not the kernel's.")
        elif self.differences:
            lines += ["DIFFERS FROM THE ORACLE (lab.explain):"] + [f"  ! {d}" for d in self.differences]
        else:
            lines.append("The oracle (lab.explain) agrees.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        tag = "simulated" if self.simulated else ("agrees with the oracle" if self.agrees else
                                                  f"{len(self.differences)} difference(s) from the oracle")
        return f"<Walk {self.src} -> {self.dst} {self.port}/{self.protocol}: {self.verdict}, " \
               f"{len(self.request) + len(self.reply)} hops, {tag}>"

    def _rows(self, hops: list[Hop]) -> str:
        out, node = [], None
        for h in hops:
            colour = _COLOURS.get(h.verdict if h.kind not in ("deliver",) else "deliver", "inherit")
            weight = "bold" if h.kind in ("drop", "reject", "deliver") else "normal"
            rule = f"<br><code style='font-size:85%;color:#57606a'>{html.escape(h.rule)}</code>" if h.rule else ""
            out.append(f"<tr><td style='vertical-align:top;white-space:nowrap'>"
                       f"<b>{html.escape(h.node) if h.node != node else ''}</b></td>"
                       f"<td style='vertical-align:top;color:#57606a'>{html.escape(h.kind)}</td>"
                       f"<td style='text-align:left;color:{colour};font-weight:{weight}'>{html.escape(h.text)}{rule}"
                       "</td></tr>")
            node = h.node
        return "".join(out)

    def _repr_html_(self) -> str:
        banner = ("<div style='background:#fff8c5;padding:2px 6px'>simulated: the oracle's hops, not a kernel "
                  "trace</div>") if self.simulated else ""
        parts = [f"<div class='labkit-walk'>{banner}<b>{html.escape(self._head())}</b>"]
        for title, hops in ((f"&rarr; request ({html.escape(self.request_label or 'first packet')})", self.request),
                            (f"&larr; reply ({html.escape(self.reply_label or 'first answer')})", self.reply)):
            if hops:
                parts.append(f"<div style='margin-top:4px'><i>{title}</i></div>"
                             f"<table style='border-collapse:collapse'>{self._rows(hops)}</table>")
        parts += [f"<div>then {html.escape(x)}</div>" for x in self.later]
        if self.differences:
            items = "".join(f"<li>{html.escape(d)}</li>" for d in self.differences)
            parts.append(f"<div class='labkit-walk-differs' style='border:2px solid #d4a72c;padding:4px'>"
                         f"<b>Differs from the oracle (lab.explain):</b><ul>{items}</ul></div>")
        elif not self.simulated:
            parts.append("<div style='color:#1a7f37'>The oracle (lab.explain) agrees.</div>")
        parts.append(f"<details><summary>What the oracle says (lab.explain)</summary>"
                     f"{self.explanation._repr_html_()}</details>")
        return "".join(parts) + "</div>"

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "ip": self.ip, "port": self.port, "protocol": self.protocol,
                "simulated": self.simulated, "verdict": self.verdict, "result": self.result.to_dict(),
                "request": [h.to_dict() for h in self.request], "reply": [h.to_dict() for h in self.reply],
                "request_label": self.request_label, "reply_label": self.reply_label,
                "later": list(self.later), "facts": self.facts.to_dict(), "expected": self.expected.to_dict(),
                "differences": list(self.differences), "explanation": self.explanation.to_dict(),
                "unrelated_packets": self.unrelated_packets}


def differences(facts: Facts, expected: Facts, explanation: oracle.Explanation) -> list[str]:
    """Where the kernel's walk and the oracle disagree, in sentences."""
    out = []
    if facts.outcome != expected.outcome:
        out.append(f"the kernel's verdict is '{facts.outcome}', the oracle says '{expected.outcome}'")
    if facts.outcome == "delivered" and facts.endpoint and facts.endpoint not in explanation.may_answer:
        out.append(f"the packet reached {facts.endpoint}, which the oracle does not expect to answer "
                   f"(it expects {', '.join(explanation.may_answer) or 'nobody'})")
    seen = {d[0]: d for d in facts.decisions}
    for direction, verdict, policy in expected.decisions:
        got = seen.get(direction)
        if got is None:
            if facts.outcome in ("delivered", "refused") or direction == "egress":
                out.append(f"no {direction} decision was traced; the oracle expects '{verdict}'"
                           + (f" by {policy}" if policy else ""))
            continue
        if got[1] != verdict:
            out.append(f"{direction}: the kernel says '{got[1]}', the oracle says '{verdict}'")
        elif got[2] != policy:
            out.append(f"{direction}: accepted by {got[2] or 'no policy (not isolated)'} in the kernel, by "
                       f"{policy or 'no policy (not isolated)'} in the oracle")
    if facts.outcome == "delivered" and facts.masquerade != expected.masquerade:
        out.append(f"the kernel {'masqueraded' if facts.masquerade else 'did not masquerade'} the connection; "
                   f"the oracle says it {'is' if expected.masquerade else 'is not'} masqueraded")
    return out


def _unsent(src: str, ip: str, port: int, protocol: str, result: ProbeResult,
            cluster: Cluster) -> tuple[Hop, Facts] | None:
    """Why no node traced anything, when that is expected: the pod talked to itself (loopback), or the
    client could not send at all (no SCTP sockets in this kernel). None: the trace lost the lines."""
    if src != oracle.INTERNET and (ip == cluster.pod_ips.get(src) or ipaddress.IPv4Address(ip).is_loopback) \
            or src == oracle.INTERNET and ip == addr.INTERNET_HOST_IP:
        outcome = "delivered" if result.ok else "refused" if "refused" in (result.error or "") else "dropped"
        return walk_oracle.local_hop(src, ip, port, protocol), Facts(outcome=outcome, endpoint=src)
    if result.error and "not supported" in result.error:
        return Hop("", "unsent", f"nothing was sent: {result.error}"), Facts(outcome="unsent")
    if result.error and "unreachable" in result.error:
        return (Hop("", "unsent", f"nothing left {src}: {result.error} (it has no route to {ip}; the lab's internet "
                                  "host routes only to the nodes' addresses)"), Facts(outcome="dropped"))
    return None


def _merged(hops: list[Hop]) -> list[Hop]:
    """One conntrack hop per node (the egress and ingress chains both accept an established packet)."""
    out: list[Hop] = []
    for h in hops:
        if h.kind == "conntrack" and out and out[-1].kind == "conntrack" and out[-1].node == h.node:
            prev = out.pop()
            h = Hop(h.node, "conntrack", "conntrack: this packet belongs to an established connection, so the "
                                         "policy chains accept it at once (no policy is checked again)",
                    f"{prev.rule}; {h.rule}", h.verdict)
        out.append(h)
    return out


def comments(cluster: Cluster) -> dict[str, dict[str, str]]:
    """Each node's chains and what they are for (their comments, from the rendered ruleset)."""
    return {addr.node_name(i): nft_trace.chain_comments(ruleset.render(cluster, i))
            for i in range(1, cluster.node_count + 1)}


def observed(cluster: Cluster, src: str, dst: str, ip: str, port: int, protocol: str, result: ProbeResult,
             events: list[nft_trace.TraceEvent], sport: int) -> Walk:
    """The walk the kernel traced (docker), compared with the oracle."""
    explanation = oracle.explain(cluster, src, ip, port, protocol)
    _, _, expected = walk_oracle.expected(cluster, src, ip, port, protocol, explanation, result)
    found = packets(events, sport)
    if not found:
        unsent = _unsent(src, ip, port, protocol, result, cluster)
        if unsent is not None:
            hop, facts = unsent
            return Walk(src, dst, ip, port, protocol, result, [hop], [], facts, expected, explanation, False, [],
                        [] if facts.outcome == "unsent" else differences(facts, expected, explanation))
    reader = Reader(cluster, comments(cluster))
    first = next((p for p in found if p.direction == "request"), None)
    answer = next((p for p in found if p.direction == "reply"), None)
    facts, reply_facts = Facts(), Facts()
    request = [h for node, evs in (first.legs if first else []) for h in reader.hops(node, evs, facts)]
    reply = [h for node, evs in (answer.legs if answer else []) for h in reader.hops(node, evs, reply_facts, "reply")]
    if answer is not None and "RST" in answer.flags and facts.outcome == "delivered":
        facts.outcome = "refused"
    if reply and facts.dnat:
        reply.append(Hop(reply[-1].node, "dnat", f"conntrack reverses the DNAT: the answer's source "
                                                 f"{facts.dnat[1]} becomes {facts.dnat[0]} again, so {src} sees the "
                                                 "address it connected to"))
    request, reply = _merged(request), _merged(reply)
    if facts.outcome == "delivered" and result.answered_by and facts.endpoint != result.answered_by:
        facts.endpoint = result.answered_by
    rest = [p for p in found if p is not first and p is not answer]
    later = []
    if rest:
        flags = ", ".join(dict.fromkeys(p.label for p in rest))
        kinds = {h.kind for p in rest for node, evs in p.legs for h in reader.hops(node, evs, Facts())}
        how = "all accepted as established" if "conntrack" in kinds and not kinds & {"drop", "reject"} else \
            "some dropped" if kinds & {"drop", "reject"} else "traced"
        later.append(f"{len(rest)} more packet(s) of this connection ({flags}): {how}")
    elif protocol == "TCP" and facts.outcome == "delivered" and answer is not None:
        later.append("the connection's later packets (ACK, data, FIN) are not traced: like the answer, they "
                     "belong to an established connection, and conntrack lets them through")
    return Walk(src, dst, ip, port, protocol, result, request, reply, facts, expected, explanation, False, later,
                differences(facts, expected, explanation), first.label if first else "",
                answer.label if answer else "")


def simulated(cluster: Cluster, src: str, dst: str, ip: str, port: int, protocol: str,
              result: ProbeResult) -> Walk:
    """The oracle's walk (sim): the same hops the kernel should show, labelled simulated."""
    explanation = oracle.explain(cluster, src, ip, port, protocol)
    request, reply, facts = walk_oracle.expected(cluster, src, ip, port, protocol, explanation, result)
    first = "SYN" if protocol == "TCP" else "datagram"
    answer = "SYN,ACK" if protocol == "TCP" else "answer"
    return Walk(src, dst, ip, port, protocol, result, request, reply, facts, facts, explanation, True, [], [],
                first, answer if reply else "")
