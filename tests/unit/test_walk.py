"""Packet walks read from real kernel traces (recorded from a two-node docker lab) and built from the oracle.

``data/walks/two-nodes.json`` holds the ``nft monitor trace`` lines every node printed for nine
connections of one lab (recorded with ``lab.trace`` on docker), with the lab's manifests: a sim
lab built from the same manifests has the same addresses, so the walks are read here exactly as
``lab.trace`` reads them, without a Docker engine. The docker tests (tests/integration/test_trace.py)
make the same walks live.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import labkit
from labkit.dataplane import names, nft_trace, ruleset
from labkit.probe import walk as packet_walk
from labkit.probe.walk_read import packets
from labkit.results import ProbeResult

DATA = json.loads((Path(__file__).parent / "data" / "walks" / "two-nodes.json").read_text())
POLICY = "x/deny-c"


@pytest.fixture(scope="module")
def lab():
    with labkit.Lab("walks", backend="sim", nodes=DATA["nodes"]) as lab:
        lab.apply(DATA["yaml"])
        yield lab


def events(case: dict) -> list[nft_trace.TraceEvent]:
    found = [nft_trace.parse_line(node, t, line) for node, t, line in case["lines"]]
    return sorted((e for e in found if e is not None), key=lambda e: e.t)


def observe(lab, name: str, cluster=None, extra: list | None = None) -> packet_walk.Walk:
    case = DATA["cases"][name]
    result = ProbeResult.from_dict(case["result"])
    evs = sorted(events(case) + (extra or []), key=lambda e: e.t)
    return packet_walk.observed(cluster or lab.cluster, case["src"], case["dst"], case["ip"], case["port"],
                                case["protocol"], result, evs, case["sport"])


@pytest.mark.parametrize("name", sorted(DATA["cases"]))
def test_every_recorded_walk_reads_as_the_oracle_says(lab, name):
    walk = observe(lab, name)
    assert walk.verdict == DATA["cases"][name]["verdict"]
    assert walk.agrees, walk.differences
    assert not walk.simulated
    assert walk.request and walk.request[0].kind == "enter"
    json.dumps(walk.to_dict())  # plain data all the way down
    assert "The oracle (lab.explain) agrees." in str(walk)


def test_a_service_walk_shows_dispatch_endpoint_dnat_fabric_and_the_reply(lab):
    walk = observe(lab, "service-cross-node")
    kinds = [h.kind for h in walk.request]
    assert kinds.index("service") < kinds.index("endpoint") < kinds.index("dnat") < kinds.index("deliver")
    assert walk.facts.service == "x/web"
    assert walk.facts.dnat == (f"{lab.service_ip('x/web')}:80", f"{lab.pod_ip('x/b')}:80")
    assert walk.facts.nodes == ["node-1", "node-2"]
    assert [h.node for h in walk.request if h.kind == "enter"] == ["node-1", "node-2"]
    assert walk.request_label == "SYN" and walk.reply_label == "SYN,ACK"
    assert [h.node for h in walk.reply if h.kind == "enter"] == ["node-2", "node-1"]
    assert any(h.kind == "conntrack" and "established" in h.rule for h in walk.reply)
    assert "conntrack reverses the DNAT" in walk.reply[-1].text
    assert any("@svc-dispatch" in h.rule for h in walk.request)
    assert walk.later and "established" in walk.later[0]


def test_hairpin_and_nodeport_are_masqueraded(lab):
    hairpin = observe(lab, "hairpin")
    assert hairpin.facts.masquerade and hairpin.facts.nodes == ["node-2"]
    assert any(h.kind == "masquerade" and "hairpin" in h.text for h in hairpin.request)
    nodeport = observe(lab, "nodeport-internet")
    assert nodeport.facts.service == "x/np" and nodeport.facts.masquerade
    assert nodeport.request[0].text.startswith("arrives from the fabric port lkf0 of the internet host")
    assert any("@nodeport-dispatch" in h.rule for h in nodeport.request)
    assert any("reverses the masquerade" in h.text for h in nodeport.reply)


@pytest.mark.parametrize("name, direction, subject", [("egress-denied", "egress", "x/c"),
                                                      ("ingress-denied", "ingress", "x/c")])
def test_a_denied_packet_stops_at_its_policy_rule(lab, name, direction, subject):
    walk = observe(lab, name)
    assert walk.facts.outcome == "dropped" and not walk.reply
    assert (direction, "drop", None) in walk.facts.decisions
    assert walk.facts.deciding_rule.startswith(f"inet {names.POL_TABLE} ")
    assert f'no policy allows it: {direction} of {subject}' in walk.facts.deciding_rule
    assert walk.request[-1].kind == "drop" and walk.request[-1].verdict == "drop"
    assert any(f"isolated by {POLICY}" in h.text for h in walk.request)


def test_an_allowing_rule_is_named_and_other_outcomes_are_told_apart(lab):
    allowed = observe(lab, "egress-allowed-same-node")
    assert ("egress", "accept", POLICY) in allowed.facts.decisions
    assert any(h.text.startswith(f"ALLOWED by NetworkPolicy {POLICY}, egress rule 0") for h in allowed.request)
    rejected = observe(lab, "no-endpoints")
    assert rejected.facts.outcome == "rejected" and rejected.request[-1].rule.startswith("ip labkit-svc refuse")
    refused = observe(lab, "refused-by-pod")
    assert refused.facts.outcome == "refused" and refused.reply_label == "RST,ACK"
    udp = observe(lab, "udp-cross-node")
    assert udp.request_label == "datagram" and udp.reply


def test_a_kernel_that_disagrees_with_the_oracle_is_flagged(lab):
    """The same trace read against a model without the policy: the kernel dropped what the oracle allows."""
    with labkit.Lab("walks-nopolicy", backend="sim", nodes=2) as other:
        other.apply(DATA["yaml"])
        other.delete("networkpolicy", "deny-c", "x")
        walk = observe(lab, "ingress-denied", cluster=other.cluster)
    assert not walk.agrees
    assert "the kernel's verdict is 'dropped', the oracle says 'delivered'" in walk.differences
    assert "DIFFERS FROM THE ORACLE" in str(walk)
    assert "labkit-walk-differs" in walk._repr_html_()
    assert "difference(s) from the oracle" in repr(walk)


def test_other_connections_in_the_same_trace_never_mix_in(lab):
    alone = observe(lab, "service-cross-node")
    noise = events(DATA["cases"]["udp-cross-node"]) + events(DATA["cases"]["hairpin"])
    mixed = observe(lab, "service-cross-node", extra=noise)
    assert mixed.to_dict()["request"] == alone.to_dict()["request"]
    assert mixed.to_dict()["reply"] == alone.to_dict()["reply"]


def test_packets_are_put_in_travel_order_by_their_ttl(lab):
    case = DATA["cases"]["service-cross-node"]
    backwards = [nft_trace.TraceEvent(e.node, -e.t, e.trace_id, e.family, e.table, e.chain, e.kind, e.text,
                                      e.verdict, e.packet) for e in events(case)]
    found = packets(sorted(backwards, key=lambda e: e.t), case["sport"])
    syn = next(p for p in found if p.flags == "SYN")
    assert [node for node, _ in syn.legs] == ["node-1", "node-2"]  # TTL 64 on node-1, 63 on node-2


def test_trace_lines_are_parsed():
    e = nft_trace.parse_line("node-1", 1.0, 'trace id 43578712 inet labkit-pol fence packet: iif "cni0" oif '
                             '"lkfabric" ether saddr 0a:58:0a:f4:01:03 ip saddr 10.244.1.3 ip daddr 10.244.2.2 '
                             'ip ttl 63 ip id 22028 ip protocol tcp ip length 60 tcp sport 44048 tcp dport 80 '
                             'tcp flags == 0x12 tcp window 64240')
    assert (e.kind, e.where, e.packet["oif"], e.packet["ttl"], e.packet["flags"]) == \
        ("packet", "inet labkit-pol fence", "lkfabric", 63, "SYN,ACK")
    r = nft_trace.parse_line("node-2", 2.0, 'trace id 1 inet labkit-pol in_x_c rule counter packets 0 bytes 0 drop '
                             'comment "no policy allows it: ingress of x/c" (verdict drop)')
    assert (r.kind, r.verdict, r.chain) == ("rule", "drop", "in_x_c") and r.text.endswith('ingress of x/c"')
    p = nft_trace.parse_line("node-1", 3.0, "trace id 1 ip labkit-svc dnat-in policy accept ")
    assert (p.kind, p.verdict) == ("policy", "accept")
    assert nft_trace.parse_line("node-1", 4.0, "some other output") is None


def test_the_trace_tables_mark_only_the_chosen_source_ports():
    one = nft_trace.walk_tables([21000], "TCP")
    assert one.count("th sport 21000 tcp flags & (syn | rst) != 0 meta nftrace set 1") == 2  # bridge and ip
    assert one.count("th dport 21000 tcp flags & (syn | rst) != 0") == 2  # the answer: SYN-ACK, or RST
    assert "table bridge labkit-trace" in one and "table ip labkit-trace" in one and "udp" not in one
    many = nft_trace.walk_tables([21002, 21001], None)
    assert "th sport { 21001, 21002 }" in many
    assert "meta l4proto udp th sport { 21001, 21002 } meta nftrace set 1" in many  # every UDP datagram
    assert one.startswith(nft_trace.disarm())  # arming first clears a left-over table
    assert nft_trace.disarm() == ("add table bridge labkit-trace\ndelete table bridge labkit-trace\n"
                                  "add table ip labkit-trace\ndelete table ip labkit-trace\n")
    flows = nft_trace.flow_tables()
    assert "ct state new meta nftrace set 1" in flows and "priority -150" in flows


def test_chains_are_known_by_their_comments(lab):
    comments = nft_trace.chain_comments(ruleset.render(lab.cluster, 1))
    assert comments["in_x_c"] == f"ingress of x/c: isolated by {POLICY}"
    assert comments["svc_x_web_tcp-80"].startswith("Service x/web port")


def test_sim_walks_are_the_oracle_s_and_say_so(lab):
    walk = lab.trace("x/a", "web.x", 80)
    assert walk.simulated and walk.agrees
    assert [h.kind for h in walk.request] == ["dns", "enter", "service", "endpoint", "dnat", "policy", "leave",
                                              "enter", "policy", "deliver"]
    assert walk.reply and "Simulated" in str(walk) and "simulated" in walk._repr_html_()
    denied = lab.trace("x/a", "x/c", 80)
    assert denied.verdict == "dropped" and denied.request[-1].kind == "drop" and not denied.reply
    walks = lab.trace_many([("x/a", "x/b", 80, "TCP"), ("x/c", "x/b", 80, "TCP")])
    assert [w.verdict for w in walks] == ["delivered to x/b", "dropped"]
    itself = lab.trace("x/a", "x/a", 80)
    assert [h.kind for h in itself.request] == ["local"] and itself.verdict == "delivered to x/a"


def test_a_sim_walk_ends_at_the_drop_of_a_local_traffic_policy():
    lab = labkit.Lab("walk-local", backend="sim", nodes=2)
    try:
        lab.apply([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "labels": {"app": n}},
                    "spec": {"nodeName": node, "containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}}
                   for n, node in (("echo", "node-1"), ("far", "node-2"))] + [
                   {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
                    "spec": {"selector": {"app": "echo"}, "internalTrafficPolicy": "Local", "ports": [{"port": 80}]}}])
        walk = lab.trace("far", "echo", 80)
        assert walk.verdict == "dropped" and walk.agrees
        assert [h.kind for h in walk.request] == ["dns", "enter", "service", "drop"]
        assert "no local endpoints" in walk.request[-1].text and walk.facts.nodes == ["node-2"]
    finally:
        lab.close()


def test_bad_trace_input_names_the_field(lab):
    with pytest.raises(labkit.ModelError) as err:
        lab.trace("x/a", "nowhere.x", 80)
    assert err.value.path == "dst"
    with pytest.raises(labkit.ModelError) as err:
        lab.trace_many([("x/a", "x/b", 0, "TCP")])
    assert "probes[0].port" in str(err.value)
    with pytest.raises(labkit.ModelError):
        lab.trace_many([])
