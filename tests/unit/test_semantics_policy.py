"""NetworkPolicy verdicts of the oracle (``labkit.semantics.oracle.explain``) on pod IPs.

The world: namespaces x, y, z (label ns=<name>), pods a, b, c in each (label pod=<name>),
every pod serving 80/TCP (named "http"), 81/TCP and 80/UDP.
"""
from __future__ import annotations

import pytest

from labkit.model.cluster import Cluster
from labkit.model.manifests import parse
from labkit.semantics.oracle import explain

NAMESPACES = ("x", "y", "z")
PODS = [f"{n}/{p}" for n in NAMESPACES for p in "abc"]
PORTS = [{"containerPort": 80, "name": "http"}, {"containerPort": 81},
         {"containerPort": 80, "protocol": "UDP", "name": "dns-ish"}]


def world_docs(ports=PORTS):
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": {"ns": n}}}
            for n in NAMESPACES]
    for ref in PODS:
        n, p = ref.split("/")
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": p, "namespace": n, "labels": {"pod": p}},
                     "spec": {"containers": [{"name": "app", "ports": ports}]}})
    return docs


def netpol(spec, name="p", namespace="x"):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def world(*policies, extra=()) -> Cluster:
    return Cluster.new().applied(parse(world_docs() + list(extra) + list(policies)))[0]


def allowed(c, src, dst, port=80, protocol="TCP"):
    return explain(c, src, dst, port, protocol).allowed


def sources(c, dst, port=80, protocol="TCP"):
    """Every other pod that may open port/protocol on ``dst``."""
    return {s for s in PODS if s != dst and allowed(c, s, dst, port, protocol)}


def targets(c, src, port=80, protocol="TCP"):
    return {d for d in PODS if d != src and allowed(c, src, d, port, protocol)}


OTHERS = lambda ref: set(PODS) - {ref}  # noqa: E731


DENY_INGRESS = netpol({"podSelector": {}, "policyTypes": ["Ingress"]}, "deny-in")
DENY_EGRESS = netpol({"podSelector": {}, "policyTypes": ["Egress"]}, "deny-out")


# ------------------------------------------------------------------ isolation per direction
def test_no_policy_allows_everything():
    c = world()
    ex = explain(c, "x/a", "y/b", 80)
    assert ex.allowed and ex.may_answer == ["y/b"]
    assert "no NetworkPolicy selects y/b for ingress" in str(ex)


def test_ingress_isolation_only_affects_ingress_of_selected_pods():
    c = world(DENY_INGRESS)
    assert sources(c, "x/b") == set()
    assert targets(c, "x/b") == OTHERS("x/b") - {"x/a", "x/c"}  # egress of x/b is not isolated
    assert sources(c, "y/b") == OTHERS("y/b")  # pods of other namespaces are not selected


def test_egress_isolation_only_affects_egress_of_selected_pods():
    c = world(DENY_EGRESS)
    assert targets(c, "x/a") == set()
    assert sources(c, "x/a") == OTHERS("x/a") - {"x/b", "x/c"}


def test_policy_types_egress_only_does_not_isolate_ingress():
    c = world(netpol({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{"from": [{"podSelector": {}}]}]}))
    assert sources(c, "x/a") == {"y/a", "y/b", "y/c", "z/a", "z/b", "z/c"}  # only egress of x pods is cut


def test_isolation_only_for_pods_the_policy_selects():
    c = world(netpol({"podSelector": {"matchLabels": {"pod": "a"}}}))
    assert sources(c, "x/a") == set()
    assert sources(c, "x/b") == OTHERS("x/b")


def test_policies_only_select_pods_of_their_own_namespace():
    c = world(netpol({"podSelector": {}}, namespace="y"))
    assert sources(c, "x/a") == OTHERS("x/a")
    assert sources(c, "y/a") == set()


# ------------------------------------------------------------------ peers
def allow_from(*peers, name="allow"):
    return netpol({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": list(peers)}]}, name)


def test_pod_selector_alone_means_the_policys_namespace():
    c = world(allow_from({"podSelector": {"matchLabels": {"pod": "b"}}}))
    assert sources(c, "x/a") == {"x/b"}


def test_namespace_selector_alone_means_every_pod_there():
    c = world(allow_from({"namespaceSelector": {"matchLabels": {"ns": "y"}}}))
    assert sources(c, "x/a") == {"y/a", "y/b", "y/c"}


def test_empty_namespace_selector_means_every_namespace():
    c = world(allow_from({"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "c"}}}))
    assert sources(c, "x/a") == {"x/c", "y/c", "z/c"}


def test_both_selectors_in_one_peer_are_and():
    c = world(allow_from({"namespaceSelector": {"matchLabels": {"ns": "y"}},
                          "podSelector": {"matchLabels": {"pod": "b"}}}))
    assert sources(c, "x/a") == {"y/b"}


def test_two_peers_are_or():
    c = world(allow_from({"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                         {"podSelector": {"matchLabels": {"pod": "b"}}}))
    assert sources(c, "x/a") == {"y/a", "y/b", "y/c", "x/b"}


def test_namespace_selector_on_the_automatic_name_label():
    c = world(allow_from({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}))
    assert sources(c, "x/a") == {"z/a", "z/b", "z/c"}


def test_union_of_policies():
    c = world(allow_from({"podSelector": {"matchLabels": {"pod": "b"}}}, name="one"),
              allow_from({"namespaceSelector": {"matchLabels": {"ns": "z"}},
                          "podSelector": {"matchLabels": {"pod": "c"}}}, name="two"),
              DENY_INGRESS)
    assert sources(c, "x/a") == {"x/b", "z/c"}


def test_union_of_rules_in_one_policy():
    c = world(netpol({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]},
        {"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}))
    assert sources(c, "x/a") == {"x/b", "x/c"}


@pytest.mark.parametrize("rule", [{}, {"from": []}, {"ports": [{"port": 80}]}])
def test_rule_without_peers_allows_everyone(rule):
    c = world(netpol({"podSelector": {}, "ingress": [rule]}))
    assert sources(c, "x/a") == OTHERS("x/a")


# ------------------------------------------------------------------ matchExpressions
@pytest.mark.parametrize("expr, expected", [
    ({"key": "pod", "operator": "In", "values": ["b", "c"]}, {"x/b", "x/c"}),
    ({"key": "pod", "operator": "NotIn", "values": ["b"]}, {"x/c", "x/d"}),   # x/d has no "pod" label
    ({"key": "pod", "operator": "Exists"}, {"x/b", "x/c"}),
    ({"key": "pod", "operator": "DoesNotExist"}, {"x/d"}),
])
def test_match_expressions(expr, expected):
    unlabelled = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "d", "namespace": "x", "labels": {}},
                  "spec": {"containers": [{"name": "app", "ports": PORTS}]}}
    c = world(allow_from({"podSelector": {"matchExpressions": [expr]}}), extra=[unlabelled])
    got = {s for s in PODS + ["x/d"] if s != "x/a" and allowed(c, s, "x/a")}
    assert got == expected


def test_match_labels_and_expressions_are_and():
    c = world(allow_from({"namespaceSelector": {"matchLabels": {"ns": "y"},
                                                "matchExpressions": [{"key": "ns", "operator": "NotIn",
                                                                      "values": ["y"]}]}}))
    assert sources(c, "x/a") == set()


# ------------------------------------------------------------------ ports
def only_ports(*ports):
    return netpol({"podSelector": {}, "ingress": [{"ports": list(ports)}]})


@pytest.mark.parametrize("ports, open_", [
    ([{"port": 80}], {(80, "TCP")}),
    ([{"port": 81}], {(81, "TCP")}),
    ([{"port": 80, "protocol": "UDP"}], {(80, "UDP")}),
    ([{"protocol": "UDP"}], {(80, "UDP")}),
    ([{"port": 80, "endPort": 81}], {(80, "TCP"), (81, "TCP")}),
    ([{"port": "http"}], {(80, "TCP")}),
    ([{"port": "dns-ish", "protocol": "UDP"}], {(80, "UDP")}),
    ([{"port": "dns-ish"}], set()),               # the name exists, but for UDP, not TCP
    ([{"port": "nope"}], set()),
])
def test_rule_ports(ports, open_):
    c = world(only_ports(*ports))
    for combo in [(80, "TCP"), (81, "TCP"), (80, "UDP")]:
        assert allowed(c, "y/b", "x/a", *combo) is (combo in open_), combo


def test_named_ports_resolve_on_each_destination_pod():
    # the same name maps to different numbers on different pods
    def web(name, number):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "x", "labels": {"app": "w"}},
                "spec": {"containers": [{"name": "app", "ports": [{"containerPort": number, "name": "web"},
                                                                  {"containerPort": 8080 if number != 8080 else 9090}]}]}}
    c = world(netpol({"podSelector": {"matchLabels": {"app": "w"}}, "ingress": [{"ports": [{"port": "web"}]}]}),
              extra=[web("w1", 8080), web("w2", 9090)])
    assert allowed(c, "y/a", "x/w1", 8080) and not allowed(c, "y/a", "x/w1", 9090)
    assert allowed(c, "y/a", "x/w2", 9090) and not allowed(c, "y/a", "x/w2", 8080)


def test_named_ports_in_egress_rules_resolve_on_the_destination():
    c = world(netpol({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]}))
    assert targets(c, "x/a", 80) == OTHERS("x/a")
    assert targets(c, "x/a", 81) == set()


def test_end_port_range_bounds():
    ports = [{"containerPort": p} for p in (7999, 8000, 8100, 8101)]
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "r", "namespace": "x"},
             "spec": {"containers": [{"name": "app", "ports": ports}]}}]
    c = world(only_ports({"port": 8000, "endPort": 8100}), extra=pods)
    assert [allowed(c, "y/a", "x/r", p) for p in (7999, 8000, 8100, 8101)] == [False, True, True, False]


def test_port_and_peer_must_both_match():
    c = world(netpol({"podSelector": {"matchLabels": {"pod": "a"}},
                      "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 81}]}]}))
    assert allowed(c, "x/b", "x/a", 81) and not allowed(c, "x/b", "x/a", 80)
    assert not allowed(c, "x/c", "x/a", 81)


# ------------------------------------------------------------------ ipBlock
def test_ip_block_with_except_against_pod_ips():
    c = world()
    ya = c.pod_ips["y/a"]
    c = world(allow_from({"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{ya}/32"]}}))
    assert sources(c, "x/a") == OTHERS("x/a") - {"y/a"}


def test_ip_block_matching_nothing():
    c = world(allow_from({"ipBlock": {"cidr": "192.168.0.0/16"}}))
    assert sources(c, "x/a") == set()


def test_egress_ip_block_to_one_pod():
    c = world()
    zc = c.pod_ips["z/c"]
    c = world(netpol({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": f"{zc}/32"}}]}]}))
    assert targets(c, "x/a") == {"z/c"}


# ------------------------------------------------------------------ self, listening
@pytest.mark.parametrize("port, protocol", [(80, "TCP"), (81, "TCP"), (80, "UDP")])
def test_a_pod_can_always_reach_itself(port, protocol):
    c = world(DENY_INGRESS, DENY_EGRESS)
    assert allowed(c, "x/a", "x/a", port, protocol)
    assert not allowed(c, "x/a", "x/b", port, protocol)


def test_nothing_listening_is_refused_even_without_policies():
    c = world()
    ex = explain(c, "x/a", "y/b", 82)
    assert not ex.allowed
    assert ex.outcomes[0].error == "connection refused"
    assert "nothing in y/b listens on 82/TCP" in str(ex)
    assert not allowed(c, "x/a", "x/a", 81, "UDP")


def test_denied_by_policy_times_out():
    ex = explain(world(DENY_INGRESS), "y/a", "x/b", 80)
    assert ex.outcomes[0].error == "timed out"


# ------------------------------------------------------------------ explanations
def test_explanation_names_the_policy_and_rule_that_allowed_it():
    c = world(netpol({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 80}]}]}, "allow-y"))
    ex = explain(c, "y/c", "x/a", 80)
    assert ex.allowed
    text = str(ex)
    assert "ingress rule 1 of x/allow-y" in text
    assert "x/a is isolated for ingress by x/allow-y" in text
    (outcome,) = ex.outcomes
    ingress = [d for d in outcome.decisions if d.direction == "ingress"][0]
    assert (ingress.policy, ingress.rule, ingress.isolating) == ("x/allow-y", 1, ("x/allow-y",))


def test_explanation_names_every_isolating_policy_when_denied():
    c = world(DENY_INGRESS, allow_from({"podSelector": {"matchLabels": {"pod": "b"}}}))
    ex = explain(c, "y/c", "x/a", 80)
    assert not ex.allowed
    assert "isolated for ingress by x/allow, x/deny-in" in str(ex)
    assert "no rule of those policies allows traffic from y/c on 80/TCP" in str(ex)


def test_explanation_for_egress_denial_names_the_policy():
    ex = explain(world(DENY_EGRESS), "x/a", "y/b", 80)
    assert "x/a is isolated for egress by x/deny-out, and no rule of that policy allows traffic to y/b" in str(ex)


def test_explanation_reads_as_sentences_and_renders():
    ex = explain(world(DENY_INGRESS), "y/a", "x/b", 80)
    lines = str(ex).splitlines()
    assert lines[0] == "y/a -> x/b on 80/TCP: denied."
    assert len(lines) > 1 and all(line.startswith("  - ") and line.endswith(".") for line in lines[1:])
    assert not any(line.endswith("..") for line in lines)
    html = ex._repr_html_()
    assert "DENIED" in html and "<li>" in html and "&rarr;" in html
    assert repr(ex) == "<Explanation y/a -> x/b 80/TCP: denied>"
