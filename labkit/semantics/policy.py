"""NetworkPolicy verdicts for one connection and one direction, with the reason in words.

Owns the rules of networking.k8s.io/v1 as upstream Kubernetes defines them: a pod is
isolated for a direction once a policy of its namespace selects it for that direction;
the allowed traffic is the union of the rules of all such policies; a peer is a
podSelector (in the policy's namespace), a namespaceSelector, both (AND), or an ipBlock
with except; ports by number, name (resolved on the destination pod), range (endPort).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from labkit.model.cluster import Cluster
from labkit.model.objects import NetworkPolicy, Peer, Pod, PolicyPort, PolicyRule
from labkit.results import _Reader


@dataclass(frozen=True)
class Decision:
    """The verdict of one direction (``ingress`` of the destination or ``egress`` of the source)."""

    direction: str
    allowed: bool
    isolating: tuple[str, ...]  # refs of the policies that select the pod for this direction
    policy: str | None = None  # the policy whose rule allowed it
    rule: int | None = None
    reason: str = ""
    subject: str = ""  # the pod whose isolation is judged (destination for ingress, source for egress)

    def to_dict(self) -> dict:
        return {"direction": self.direction, "allowed": self.allowed, "isolating": list(self.isolating),
                "policy": self.policy, "rule": self.rule, "reason": self.reason, "subject": self.subject}

    @classmethod
    def from_dict(cls, data: Any) -> "Decision":
        r = _Reader(data, cls.__name__)
        return cls(r.get("direction", str), r.get("allowed", bool), r.strings("isolating"),
                   r.get("policy", str, null=True), r.get("rule", int, null=True), r.get("reason", str),
                   r.get("subject", str))


@lru_cache(maxsize=4096)
def network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def in_block(ip: str, peer: Peer) -> bool:
    block = peer.ip_block
    address = ipaddress.ip_address(ip)
    if address.version != network(block.cidr).version or address not in network(block.cidr):
        return False
    return not any(address in network(e) for e in block.except_)


def peer_matches(cluster: Cluster, policy: NetworkPolicy, peer: Peer, other: Pod | None, ip: str) -> bool:
    """Does ``peer`` (of ``policy``) match the other end: a pod, or just an address?"""
    if peer.ip_block is not None:
        return in_block(ip, peer)
    if other is None:
        return False
    if peer.namespace_selector is None:
        if other.namespace != policy.namespace:
            return False
    elif not peer.namespace_selector.matches(cluster.namespaces[other.namespace].labels):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(other.labels)


def port_matches(pp: PolicyPort, port: int, protocol: str, target: Pod | None) -> bool:
    """Does a rule's port entry match ``port``/``protocol`` on the destination ``target``?"""
    if pp.protocol != protocol:
        return False
    if pp.port is None:
        return True
    if isinstance(pp.port, str):
        return target is not None and any(
            p.name == pp.port and p.protocol == protocol and p.container_port == port
            for p in target.spec.ports())
    if pp.end_port is not None:
        return pp.port <= port <= pp.end_port
    return pp.port == port


def rule_matches(cluster: Cluster, policy: NetworkPolicy, rule: PolicyRule, other: Pod | None,
                 other_ip: str, port: int, protocol: str, target: Pod | None) -> bool:
    if rule.ports and not any(port_matches(pp, port, protocol, target) for pp in rule.ports):
        return False
    return not rule.peers or any(peer_matches(cluster, policy, p, other, other_ip) for p in rule.peers)


def selecting(cluster: Cluster, pod: Pod, direction: str) -> list[NetworkPolicy]:
    """Policies of the pod's namespace that select it for ``direction`` (``Ingress``/``Egress``)."""
    return [p for ref, p in sorted(cluster.policies.items())
            if p.namespace == pod.namespace and direction in p.policy_types and p.pod_selector.matches(pod.labels)]


def describe_peer(peer: Peer, policy: NetworkPolicy) -> str:
    if peer.ip_block is not None:
        excepts = f" except {', '.join(peer.ip_block.except_)}" if peer.ip_block.except_ else ""
        return f"addresses in {peer.ip_block.cidr}{excepts}"
    pods = "any pod" if peer.pod_selector is None or peer.pod_selector.empty else \
        f"pods with {peer.pod_selector}"
    if peer.namespace_selector is None:
        return f"{pods} in namespace {policy.namespace}"
    if peer.namespace_selector.empty:
        return f"{pods} in any namespace"
    return f"{pods} in namespaces with {peer.namespace_selector}"


def describe_rule(rule: PolicyRule, policy: NetworkPolicy, direction: str) -> str:
    word = "from" if direction == "ingress" else "to"
    peers = " or ".join(describe_peer(p, policy) for p in rule.peers) if rule.peers else "anywhere"
    ports = ", ".join(_describe_port(pp) for pp in rule.ports) if rule.ports else "any port"
    return f"{word} {peers}, on {ports}"


def _describe_port(pp: PolicyPort) -> str:
    if pp.port is None:
        return f"any {pp.protocol} port"
    if pp.end_port is not None:
        return f"{pp.port}-{pp.end_port}/{pp.protocol}"
    return f"{pp.port}/{pp.protocol}" if isinstance(pp.port, int) else f"named port {pp.port!r}/{pp.protocol}"


def _decide(cluster: Cluster, subject: Pod, direction: str, other: Pod | None, other_ip: str,
            port: int, protocol: str, target: Pod | None, other_name: str) -> Decision:
    policies = selecting(cluster, subject, direction.capitalize())
    refs = tuple(p.ref for p in policies)
    if not policies:
        return Decision(direction, True, refs, subject=subject.ref, reason=(
            f"no NetworkPolicy selects {subject.ref} for {direction}, so its {direction} is allowed by default"))
    for policy in policies:
        rules = policy.ingress if direction == "ingress" else policy.egress
        for i, rule in enumerate(rules):
            if rule_matches(cluster, policy, rule, other, other_ip, port, protocol, target):
                return Decision(direction, True, refs, policy.ref, i, subject=subject.ref, reason=(
                    f"{subject.ref} is isolated for {direction} by {', '.join(refs)}; {direction} rule {i} "
                    f"of {policy.ref} ({describe_rule(rule, policy, direction)}) allows {other_name} "
                    f"on {port}/{protocol}"))
    return Decision(direction, False, refs, subject=subject.ref, reason=(
        f"{subject.ref} is isolated for {direction} by {', '.join(refs)}, and no rule of "
        f"{'that policy' if len(refs) == 1 else 'those policies'} allows {other_name} on {port}/{protocol}"))


def ingress(cluster: Cluster, dst: Pod, src: Pod | None, src_ip: str, port: int, protocol: str) -> Decision:
    """May ``src`` (a pod, or just ``src_ip``) open ``port``/``protocol`` on ``dst``?"""
    return _decide(cluster, dst, "ingress", src, src_ip, port, protocol, dst,
                   f"traffic from {src.ref if src else src_ip}")


def egress(cluster: Cluster, src: Pod, dst: Pod | None, dst_ip: str, port: int, protocol: str) -> Decision:
    """May ``src`` send to ``dst`` (a pod, or just ``dst_ip``) on ``port``/``protocol``?"""
    return _decide(cluster, src, "egress", dst, dst_ip, port, protocol, dst,
                   f"traffic to {dst.ref if dst else dst_ip}")
