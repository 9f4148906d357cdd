"""Reading the kernel's trace of one connection: packets, hops and the facts they prove.

Owns the step from ``TraceEvent``s (``labkit.dataplane.nft_trace``) to a learner's account:
events are grouped into packets (one packet is the same IP id, TCP flags and direction on
one node), packets are put in the order they travelled (a node that routes a packet lowers
its TTL, so the node that saw the higher TTL saw it first), and each packet's passage
through one node becomes ``Hop``s: where it came in, each rule that matched with its verdict
(anti-spoofing, the Service dispatch, the endpoint chosen, DNAT with the addresses before and
after, the policy chains, conntrack's "established"), masquerade, and where it went out.
``Facts`` are what the walk proves: delivered or not, by which rule, through which nodes.
Pure: events and the model in, values out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from labkit.dataplane import names, nft_pol, nft_trace
from labkit.dataplane.nft_trace import TraceEvent
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster


@dataclass(frozen=True)
class Hop:
    """One step of a packet through one node: ``kind`` is enter, guard, service, endpoint, dnat,
    masquerade, policy, conntrack, drop, reject, leave or deliver."""

    node: str
    kind: str
    text: str
    rule: str = ""       # "table chain: rule text" as the kernel listed it ("" for a derived step)
    verdict: str = ""

    def to_dict(self) -> dict:
        return {"node": self.node, "kind": self.kind, "text": self.text, "rule": self.rule, "verdict": self.verdict}


@dataclass
class Packet:
    """One packet of the connection, on every node it crossed."""

    direction: str                       # "request" | "reply"
    flags: str                           # "SYN", "SYN,ACK", "" for UDP
    legs: list[tuple[str, list[TraceEvent]]] = field(default_factory=list)  # (node, its events), in travel order

    @property
    def label(self) -> str:
        return self.flags or ("datagram" if self.direction == "request" else "answer")


@dataclass
class Facts:
    """What one packet's walk proves, to compare with the oracle."""

    outcome: str = "unknown"             # "delivered" | "dropped" | "rejected" | "unknown"
    nodes: list[str] = field(default_factory=list)
    service: str | None = None
    endpoint: str | None = None          # the pod the packet was delivered to (or was going to)
    dnat: tuple[str, str] | None = None  # (before, after) "ip:port"
    masquerade: bool = False
    decisions: list[tuple[str, str, str | None]] = field(default_factory=list)  # (direction, verdict, policy)
    deciding_rule: str = ""

    def to_dict(self) -> dict:
        return {"outcome": self.outcome, "nodes": list(self.nodes), "service": self.service,
                "endpoint": self.endpoint, "dnat": list(self.dnat) if self.dnat else None,
                "masquerade": self.masquerade, "decisions": [list(d) for d in self.decisions],
                "deciding_rule": self.deciding_rule}


def packets(events: list[TraceEvent], sport: int) -> list[Packet]:
    """The connection's packets in the order they were first seen, each with its legs in travel order.

    A rule's line carries the trace id of the packet line before it (the id changes from hook to
    hook, never within one), so lines of other connections traced at the same time never mix in."""
    groups: dict[tuple, dict[str, list[TraceEvent]]] = {}
    firsts: dict[tuple, float] = {}
    by_id: dict[tuple[str, str], tuple | None] = {}
    for e in events:
        if e.kind == "packet":
            p = e.packet
            direction = "request" if p.get("sport") == sport else "reply" if p.get("dport") == sport else None
            key = None if direction is None else (direction, p.get("flags", ""), p.get("ip_id"))
            by_id[(e.node, e.trace_id)] = key
            if key is not None:
                firsts.setdefault(key, e.t)
        key = by_id.get((e.node, e.trace_id))
        if key is not None:
            groups.setdefault(key, {}).setdefault(e.node, []).append(e)
    out = []
    for key in sorted(groups, key=lambda k: firsts[k]):
        legs = groups[key]
        out.append(Packet(key[0], key[1], [(n, legs[n]) for n in nft_trace.travel_order(legs)]))
    return out


class Reader:
    """Turns packets into hops, knowing the lab's model (pods, Services, chains' comments)."""

    def __init__(self, cluster: Cluster, comments: dict[str, dict[str, str]]):
        self.cluster = cluster
        self.comments = comments                    # node -> chain -> comment
        self.by_ip = cluster.pod_by_ip()
        self.services = {ip: ref for ref, ip in cluster.service_ips.items() if ip}

    def who(self, ip: str | None, port: int | None = None) -> str:
        """``10.244.1.3`` -> ``10.244.1.3 (x/a)``: the model's name for an address."""
        if ip is None:
            return "?"
        name = self.by_ip.get(ip) or (f"Service {self.services[ip]}" if ip in self.services else None)
        for i in range(1, self.cluster.node_count + 1):
            if ip in (addr.node_ip(i), addr.node_gateway(i)):
                name = addr.node_name(i)
        if ip == addr.INTERNET_HOST_IP:
            name = "the internet host"
        where = f"{ip}:{port}" if port else ip
        return f"{where} ({name})" if name else where

    def port_owner(self, ifname: str) -> str:
        ip = names.port_pod_ip(ifname)
        if ip is not None:
            return f"pod {self.by_ip.get(ip, ip)}'s veth {ifname}"
        index = names.fabric_node(ifname)
        if index is not None:
            return f"the fabric port {ifname} of " + ("the internet host" if index == 0 else addr.node_name(index))
        if names.is_fabric(ifname):
            return f"the fabric ({ifname})"
        return ifname

    def hops(self, node: str, events: list[TraceEvent], facts: Facts, direction: str = "request") -> list[Hop]:
        """The steps of one packet through ``node``, adding what they prove to ``facts``."""
        out: list[Hop] = []
        packets_seen = [e for e in events if e.kind == "packet"]
        if not packets_seen:
            return out
        first = packets_seen[0].packet
        if node not in facts.nodes:
            facts.nodes.append(node)
        out.append(Hop(node, "enter", f"arrives from {self.port_owner(first.get('iif', '?'))}: "
                                      f"{self.who(first.get('saddr'), first.get('sport'))} -> "
                                      f"{self.who(first.get('daddr'), first.get('dport'))}"))
        last = first
        for e in events:
            if e.kind == "packet":
                p = e.packet
                if (p.get("daddr"), p.get("dport")) != (last.get("daddr"), last.get("dport")) and facts.dnat is None:
                    before = f"{last.get('daddr')}:{last.get('dport')}"
                    after = f"{p.get('daddr')}:{p.get('dport')}"
                    facts.dnat = (before, after)
                    text = (f"DNAT: the destination {before} became {self.who(p.get('daddr'), p.get('dport'))}"
                            if direction == "request" else
                            f"conntrack reverses the masquerade: the destination {before} became "
                            f"{self.who(p.get('daddr'), p.get('dport'))}")
                    out.append(Hop(node, "dnat", text))
                last = p
                continue
            if e.ours:
                continue
            hop = self._rule_hop(node, e, facts, last)
            if hop is not None:
                out.append(hop)
        if not any(h.kind in ("drop", "reject") for h in out):
            out.append(self._leave(node, last, facts, events))
        return out

    def _rule_hop(self, node: str, e: TraceEvent, facts: Facts, packet: dict) -> Hop | None:
        rule = f"{e.where}: {e.text}" if e.text else f"{e.where}: policy {e.verdict}"
        comment = self.comments.get(node, {}).get(e.chain, "")
        said = _comment(e.text)
        if e.kind == "policy":
            if e.table == names.POL_TABLE and e.chain in ("ingress", "egress"):
                subject = self._subject(node, e.chain, packet)
                if subject:
                    facts.decisions.append((e.chain, "accept", None))
                    return Hop(node, "policy", f"{e.chain} of {subject}: no NetworkPolicy selects it for {e.chain}, "
                                               "so nothing is checked (accepted)", rule, "accept")
            return None
        if e.kind != "rule":
            return None
        v = e.verdict
        if e.table == names.GUARD_TABLE:
            if v == "drop":
                facts.outcome, facts.deciding_rule = "dropped", rule
                return Hop(node, "drop", f"DROPPED by anti-spoofing: {said}", rule, v)
            return Hop(node, "guard", f"anti-spoofing: {said}", rule, v) if said else None
        if "ct state established,related accept" in e.text:
            return Hop(node, "conntrack", f"conntrack: this packet belongs to an established connection, so the "
                                          f"{e.chain} chain accepts it at once (no policy is checked again)", rule, v)
        if e.table == names.SVC_TABLE:
            return self._svc_hop(node, e, rule, comment, facts)
        if e.table == names.POL_TABLE:
            return self._pol_hop(node, e, rule, said, facts)
        return Hop(node, "rule", f"{e.where}: {e.text}", rule, v)

    def _svc_hop(self, node: str, e: TraceEvent, rule: str, comment: str, facts: Facts) -> Hop | None:
        v = e.verdict
        target = v.split()[-1] if v.startswith(("goto", "jump")) else ""
        if "@svc-dispatch" in e.text or "@nodeport-dispatch" in e.text:
            what = self.comments.get(node, {}).get(target, target)
            facts.service = facts.service or _service_ref(what)
            kind = "NodePort" if "nodeport" in e.text else "ClusterIP"
            return Hop(node, "service", f"Service dispatch ({kind}): {what}", rule, v)
        if e.chain.startswith(("svc_", "local_")) and target.startswith("ep_"):
            ep = self.comments.get(node, {}).get(target, target).removeprefix("endpoint ")
            if e.chain.startswith("local_"):
                choice = (f"chosen at random (numgen) among the endpoints on {node}" if "numgen" in e.text
                          else f"the only endpoint on {node}") + " (traffic policy Local)"
            else:
                choice = "chosen at random (numgen)" if "numgen" in e.text else "the only ready endpoint"
            return Hop(node, "endpoint", f"endpoint: {ep}, {choice}", rule, v)
        if "dnat to" in e.text:
            return None  # the DNAT hop comes from the packet's new destination
        if "mark set" in e.text:
            return None  # the chain want-masq's own rule: the jump to it was shown
        if "want-masq" in target:
            facts.masquerade = True
            why = ("NodePort" if e.chain.startswith("ext_") and "ip saddr" not in e.text else
                   "a pod reaching a NodePort: it goes cluster-wide" if e.chain.startswith("ext_") else
                   "hairpin: the pod reaches itself through its Service")
            return Hop(node, "masquerade", f"marked for masquerade ({why}): the answer must come back through "
                                           "this node", rule, v)
        if "masquerade" in e.text:
            facts.masquerade = True
            return Hop(node, "masquerade", "masquerade: the source address becomes this node's own address on the "
                                           "way out", rule, v)
        if target.startswith("nolocal_"):
            what = self.comments.get(node, {}).get(target, target)
            facts.service = facts.service or _service_ref(what)
            return Hop(node, "service", f"{what}: to chain {target}", rule, v)
        if e.chain.startswith("nolocal_") and v == "drop":
            facts.outcome, facts.deciding_rule = "dropped", rule
            return Hop(node, "drop", f"DROPPED: {_comment(e.text) or e.text} (a Local traffic policy uses only this "
                                     "node's endpoints; the client waits for a timeout)", rule, v)
        if "goto refuse" in v:
            why = ("no Service has this address and port" if "10.96.0.0/16" in e.text else
                   "the Service has no ready endpoint for this port (map svc-empty)")
            return Hop(node, "service", f"{why}: to chain refuse", rule, v)
        if e.chain == "refuse" or v.startswith("reject"):
            facts.outcome, facts.deciding_rule = "rejected", rule
            how = "a TCP reset" if "tcp reset" in e.text else "an ICMP port unreachable"
            return Hop(node, "reject", f"REJECTED at once with {how}: the client sees 'connection refused'", rule,
                       "reject")
        return None

    def _pol_hop(self, node: str, e: TraceEvent, rule: str, said: str, facts: Facts) -> Hop | None:
        v = e.verdict
        target = v.split()[-1] if v.startswith(("goto", "jump")) else ""
        if "vmap @ingress-isolated" in e.text or "vmap @egress-isolated" in e.text:
            return Hop(node, "policy", self.comments.get(node, {}).get(target, f"isolated: {target}"), rule, v)
        if target.startswith("np_"):
            return Hop(node, "policy", f"checks {self.comments.get(node, {}).get(target, target)}", rule, v)
        m = re.match(r"(\S+/\S+) (ingress|egress)\[(\d+)\]", said)
        if v == "accept" and m:
            facts.decisions.append((m.group(2), "accept", m.group(1)))
            return Hop(node, "policy", f"ALLOWED by NetworkPolicy {m.group(1)}, {m.group(2)} rule "
                                       f"{m.group(3)}: {said}", rule, v)
        if v == "accept" and "ip saddr" in e.text and "accept" in e.text and not said:
            return Hop(node, "policy", "a pod may always reach itself", rule, v)
        if v == "drop" and said.startswith(nft_pol.NO_ALLOW):
            direction = "ingress" if "ingress of" in said else "egress"
            facts.decisions.append((direction, "drop", None))
            facts.outcome, facts.deciding_rule = "dropped", rule
            return Hop(node, "drop", f"DROPPED: {said} (the pod is isolated, and none of the policies that "
                                     "select it has a rule for this peer and port)", rule, v)
        if v in ("drop", "reject") or v.startswith("reject"):
            facts.outcome, facts.deciding_rule = ("rejected" if "reject" in v else "dropped"), rule
            return Hop(node, "reject" if "reject" in v else "drop", f"{v.upper()}: {said or e.text}", rule, v)
        return None

    def _subject(self, node: str, chain: str, packet: dict) -> str | None:
        """The pod of ``node`` whose isolation this base chain judged: the sender for egress, the
        receiver for ingress (None: that address is not a pod of this node)."""
        owner = self.by_ip.get(packet.get("saddr" if chain == "egress" else "daddr") or "")
        return owner if owner and addr.node_name(self.cluster.pod_nodes[owner]) == node else None

    def _leave(self, node: str, p: dict, facts: Facts, events: list[TraceEvent]) -> Hop:
        """Where the packet went from ``node``: another node, a local pod, the internet host, or nowhere."""
        oif, dst = p.get("oif"), p.get("daddr") or ""
        if not any(e.family in ("ip", "inet") for e in events if not e.ours):
            return Hop(node, "leave", f"switched through {node}'s bridge towards {self.who(dst)} (not routed here)")
        mine = any(dst in (addr.node_ip(i), addr.node_gateway(i)) and addr.node_name(i) == node
                   for i in range(1, self.cluster.node_count + 1)) or (node == "node-1" and dst == addr.INTERNET_GATEWAY)
        if not oif and mine:
            self._decide(facts, "refused", f"{node} itself")
            return Hop(node, "reject", f"for {node} itself: no Service translated it and nothing on a node listens "
                                       "there, so the node's kernel refuses the connection", verdict="reject")
        if not oif:
            self._decide(facts, "dropped", "")
            facts.deciding_rule = facts.deciding_rule or "routing: no route"
            return Hop(node, "drop", f"DROPPED: {node} has no route to {dst} (no node has a way out of the lab, "
                                     "so nothing addressed outside it ever leaves)", verdict="drop")
        if dst == addr.INTERNET_HOST_IP:
            self._decide(facts, "delivered", "internet")
            return Hop(node, "deliver", f"leaves {node} over the fabric ({oif}) to the internet host, outside the "
                                        "cluster but still inside the lab")
        if names.is_fabric(oif):
            return Hop(node, "leave", f"leaves {node} over the fabric ({oif}) towards {self.who(dst)}")
        owner = self.by_ip.get(dst)
        if owner and addr.node_name(self.cluster.pod_nodes[owner]) == node:
            self._decide(facts, "delivered", owner)
            return Hop(node, "deliver", f"delivered to {owner} through cni0 (its veth)")
        if oif == names.BRIDGE and not owner:
            self._decide(facts, "dropped", "")
            return Hop(node, "drop", f"DROPPED: no pod has the address {dst}, so {node}'s ARP request for it goes "
                                     "unanswered and the packet is dropped", verdict="drop")
        return Hop(node, "leave", f"leaves {node} by {oif} towards {self.who(dst)}")

    @staticmethod
    def _decide(facts: Facts, outcome: str, endpoint: str) -> None:
        if facts.outcome == "unknown":
            facts.outcome, facts.endpoint = outcome, endpoint or facts.endpoint


def _comment(text: str) -> str:
    m = re.search(r'comment "([^"]*)"', text)
    return m.group(1) if m else ""


def _service_ref(comment: str) -> str | None:
    m = re.search(r"Service (\S+/\S+)", comment)
    return m.group(1) if m else None
