"""The oracle's account of one connection, as a packet walk: what the kernel should do with it.

Owns the expected hops and facts for a connection, built from ``oracle.explain`` alone (the
same model the sim backend answers from): the source node, the Service dispatch and the
endpoint (the one that answered, else the first), DNAT, each direction's policy decision with
its policy and rule, masquerade, the fabric hop between nodes, delivery, and the reply
accepted as established. The sim backend shows these hops (labelled simulated); on docker
they are the yardstick the kernel's trace is compared with. Pure.
"""
from __future__ import annotations

import ipaddress

from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.probe.walk_read import Facts, Hop
from labkit.results import ProbeResult
from labkit.semantics import oracle
from labkit.semantics import services as svc


def chosen(explanation: oracle.Explanation, result: ProbeResult) -> oracle.Outcome | None:
    """The outcome this connection took: the answering endpoint's, else the first denied one."""
    outs = explanation.outcomes
    if result.answered_by:
        found = next((o for o in outs if o.answered_by == result.answered_by), None)
        if found is not None:
            return found
    return next((o for o in outs if not o.allowed), outs[0] if outs else None)


def expected_outcome(outcome: oracle.Outcome | None) -> str:
    if outcome is None:
        return "unknown"
    if outcome.allowed:
        return "delivered"
    if outcome.error == "connection refused":
        said = " ".join(outcome.reasons)
        return "rejected" if "is rejected" in said or "no ready endpoints" in said else "refused"
    return "dropped"


def local_hop(src: str, ip: str, port: int, protocol: str) -> Hop:
    """A pod connecting to its own address: the packet never leaves the pod's network namespace."""
    if src == oracle.INTERNET:
        return Hop("", "local", f"the internet host connects to its own address {ip}:{port}/{protocol}: the packet "
                                "never leaves it, so no node sees it")
    return Hop("", "local", f"{src} connects to its own address {ip}:{port}/{protocol}: the packet goes through "
                            "the pod's loopback and never reaches its node, so no rule of any node sees it (a pod can "
                            "always reach itself; NetworkPolicies never apply to that)")


def _decision_hop(node: str, d) -> Hop:
    if not d.isolating:
        return Hop(node, "policy", f"{d.direction} of {d.subject}: no NetworkPolicy selects it for {d.direction}, "
                                   "so nothing is checked (accepted)", verdict="accept")
    if d.allowed:
        return Hop(node, "policy", f"ALLOWED by NetworkPolicy {d.policy}, {d.direction} rule {d.rule}: {d.reason}",
                   verdict="accept")
    return Hop(node, "drop", f"DROPPED: no policy allows it: {d.direction} of {d.subject} ({d.reason})",
               verdict="drop")


def expected(cluster: Cluster, src: str, ip: str, port: int, protocol: str, explanation: oracle.Explanation,
             result: ProbeResult) -> tuple[list[Hop], list[Hop], Facts]:
    """(request hops, reply hops, facts) as the oracle predicts them for this connection."""
    outcome = chosen(explanation, result)
    facts = Facts(outcome=expected_outcome(outcome))
    internet = src == oracle.INTERNET
    node_ips = {addr.node_ip(i): i for i in range(1, cluster.node_count + 1)}
    first = node_ips.get(ip, 1) if internet else cluster.pod_nodes[src]
    here = addr.node_name(first)
    src_ip = addr.INTERNET_HOST_IP if internet else cluster.pod_ips[src]
    hops = [Hop(here, "enter", f"arrives from {'the internet host' if internet else src}: {src_ip} -> {ip}:{port}")]
    if outcome is None:
        return hops, [], facts
    if ip == src_ip or not internet and ipaddress.IPv4Address(ip).is_loopback:
        facts.endpoint = outcome.answered_by
        return [local_hop(src, ip, port, protocol)], [], facts
    service = svc.service_by_ip(cluster, ip)
    nodeport = [s for s in cluster.services.values() for p in s.ports if p.node_port == port] if ip in node_ips else []
    if service is not None or nodeport:
        ref = service.ref if service is not None else nodeport[0].ref
        facts.service = ref
        kind = "ClusterIP" if service is not None else "NodePort"
        hops.append(Hop(here, "service", f"Service dispatch ({kind}): Service {ref} port {port}/{protocol}"))
        if outcome.answered_by:
            n = len(explanation.outcomes)
            target = cluster.pod_ips.get(outcome.answered_by)
            hops.append(Hop(here, "endpoint", f"endpoint: {outcome.answered_by}, "
                                              + ("chosen at random (numgen)" if n > 1 else "the only ready endpoint")))
            hops.append(Hop(here, "dnat", f"DNAT: the destination {ip}:{port} became {target} ({outcome.answered_by})"))
            facts.dnat = (f"{ip}:{port}", str(target))
        elif facts.outcome == "dropped" and not outcome.decisions:  # a Local traffic policy: no endpoint here
            hops.append(Hop(here, "drop", f"DROPPED: {outcome.reasons[-1] if outcome.reasons else outcome.error}",
                            verdict="drop"))
            facts.nodes = [here]
            return hops, [], facts
    facts.endpoint = outcome.answered_by
    endpoint_node = cluster.pod_nodes.get(outcome.answered_by or "", first)
    decisions = {d.direction: d for d in outcome.decisions}
    facts.decisions = [(d.direction, "accept" if d.allowed else "drop", d.policy if d.isolating and d.allowed
                        else None) for d in outcome.decisions]
    if not internet and "egress" in decisions:
        hops.append(_decision_hop(here, decisions["egress"]))
        if not decisions["egress"].allowed:
            facts.nodes = [here]
            return hops, [], facts
    if outcome.client_ip and outcome.client_ip != src_ip:
        facts.masquerade = True
        hops.append(Hop(here, "masquerade", f"masquerade: the source address becomes {outcome.client_ip}"))
    facts.nodes = [here]
    there = addr.node_name(endpoint_node)
    if endpoint_node != first:
        hops.append(Hop(here, "leave", f"leaves {here} over the fabric towards {there}"))
        hops.append(Hop(there, "enter", f"arrives at {there} from the fabric"))
        facts.nodes.append(there)
    if "ingress" in decisions:
        hops.append(_decision_hop(there, decisions["ingress"]))
    if facts.outcome in ("rejected", "refused"):
        hops.append(Hop(there, "reject", f"REFUSED: {outcome.reasons[-1] if outcome.reasons else outcome.error}",
                        verdict="reject"))
        return hops, [], facts
    if not outcome.allowed:
        return hops, [], facts
    hops.append(Hop(there, "deliver", f"delivered to {outcome.answered_by} through cni0 (its veth)"))
    reply = [Hop(there, "conntrack", "the answer belongs to an established connection: accepted at once")]
    if endpoint_node != first:
        reply.append(Hop(here, "conntrack", f"back over the fabric to {here}: established, accepted"))
    if facts.dnat or facts.masquerade:
        reply.append(Hop(here, "dnat", "conntrack undoes the translation: the answer seems to come from "
                                       f"{ip}:{port}, to {src_ip}"))
    return hops, reply, facts
