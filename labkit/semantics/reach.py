"""The whole reachability matrix at once, as bitsets: the fast path of the oracle.

Owns the same rules as ``semantics.policy`` (tests check that both agree pair by pair),
computed per policy rule instead of per pair so that 1,000 pods x 100 policies stay fast:
row ``s`` of the result is an int whose bit ``d`` says "pod s may open port/protocol on
pod d's IP".
"""
from __future__ import annotations

from labkit.model.cluster import Cluster
from labkit.model.objects import LabelSelector, NetworkPolicy, Peer, PolicyRule
from labkit.semantics.policy import in_block, port_matches


class _Index:
    def __init__(self, cluster: Cluster, pods: list[str]):
        self.cluster, self.pods = cluster, pods
        self.objs = [cluster.pods[r] for r in pods]
        self.all = (1 << len(pods)) - 1
        self.by_ns: dict[str, list[int]] = {}
        for i, p in enumerate(self.objs):
            self.by_ns.setdefault(p.namespace, []).append(i)
        self._sel: dict[tuple, int] = {}
        self._ns: dict[LabelSelector, list[str]] = {}

    def namespaces(self, selector: LabelSelector) -> list[str]:
        if selector not in self._ns:
            self._ns[selector] = [n for n, ns in self.cluster.namespaces.items() if selector.matches(ns.labels)]
        return self._ns[selector]

    def selected(self, selector: LabelSelector | None, namespaces: list[str]) -> int:
        key = (selector, tuple(namespaces))
        if key not in self._sel:
            bits = 0
            for ns in namespaces:
                for i in self.by_ns.get(ns, ()):
                    if selector is None or selector.matches(self.objs[i].labels):
                        bits |= 1 << i
            self._sel[key] = bits
        return self._sel[key]

    def peer(self, peer: Peer, policy: NetworkPolicy) -> int:
        if peer.ip_block is not None:
            bits = 0
            for i, ref in enumerate(self.pods):
                if in_block(self.cluster.pod_ips[ref], peer):
                    bits |= 1 << i
            return bits
        namespaces = [policy.namespace] if peer.namespace_selector is None else \
            self.namespaces(peer.namespace_selector)
        return self.selected(peer.pod_selector, namespaces)

    def rule_peers(self, rule: PolicyRule, policy: NetworkPolicy) -> int:
        if not rule.peers:
            return self.all
        bits = 0
        for peer in rule.peers:
            bits |= self.peer(peer, policy)
        return bits

    def rule_targets(self, rule: PolicyRule, port: int, protocol: str) -> int:
        """Destination pods on which the rule's ports match (named ports differ per pod)."""
        if not rule.ports:
            return self.all
        bits = 0
        for pp in rule.ports:
            if isinstance(pp.port, str):
                for i, obj in enumerate(self.objs):
                    if port_matches(pp, port, protocol, obj):
                        bits |= 1 << i
            elif port_matches(pp, port, protocol, None):
                return self.all
        return bits


def listening(cluster: Cluster, pods: list[str], port: int, protocol: str) -> int:
    bits = 0
    for i, ref in enumerate(pods):
        if any(p.container_port == port and p.protocol == protocol for p in cluster.pods[ref].spec.served_ports()):
            bits |= 1 << i
    return bits


def matrix_rows(cluster: Cluster, pods: list[str], port: int, protocol: str) -> list[int]:
    """Row per source pod: bit d set when the oracle allows pod s -> pod d's IP on port/protocol."""
    ix = _Index(cluster, pods)
    n = len(pods)
    ingress = [ix.all] * n          # per destination: allowed sources
    egress = [ix.all] * n           # per source: allowed destinations
    in_isolated, eg_isolated = 0, 0
    for policy in (cluster.policies[r] for r in sorted(cluster.policies)):
        subjects = ix.selected(policy.pod_selector, [policy.namespace])
        if not subjects:
            continue
        for direction in policy.policy_types:
            rules = policy.ingress if direction == "Ingress" else policy.egress
            grants = [(ix.rule_peers(r, policy), ix.rule_targets(r, port, protocol)) for r in rules]
            for i in _bits(subjects):
                bit = 1 << i
                if direction == "Ingress":
                    if not in_isolated & bit:
                        in_isolated |= bit
                        ingress[i] = 0
                    for peers, targets in grants:
                        if targets & bit:
                            ingress[i] |= peers
                else:
                    if not eg_isolated & bit:
                        eg_isolated |= bit
                        egress[i] = 0
                    for peers, targets in grants:
                        egress[i] |= peers & targets
    serving = listening(cluster, pods, port, protocol)
    isolated_dsts = list(_bits(in_isolated))
    open_dsts = ix.all & ~in_isolated
    rows = []
    for s in range(n):
        reachable = open_dsts
        for d in isolated_dsts:
            if ingress[d] >> s & 1:
                reachable |= 1 << d
        row = egress[s] & reachable & serving
        rows.append(row | (serving & (1 << s)))  # a pod can always reach itself
    return rows


def _bits(value: int):
    while value:
        low = value & -value
        yield low.bit_length() - 1
        value ^= low
