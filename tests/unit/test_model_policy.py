"""NetworkPolicy and label-selector validation, as the Kubernetes API server does it.

Every error must name the document and the field path (issue #2), so most tests compare
the location part of the message exactly.
"""
from __future__ import annotations

import pytest

from labkit.errors import ModelError
from labkit.model.manifests import parse
from labkit.model.objects import NetworkPolicy, PolicyPort


def netpol(spec, name="p", namespace="x"):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def ingress_rule(rule, **spec):
    return netpol({"podSelector": {}, "ingress": [rule], **spec})


def one(doc) -> NetworkPolicy:
    (obj,) = parse(doc)
    return obj


def error(doc) -> ModelError:
    with pytest.raises(ModelError) as exc:
        parse(doc)
    return exc.value


# ------------------------------------------------------------------ endPort
def test_end_port_below_port_names_document_and_field_exactly():
    doc = netpol({"podSelector": {}, "ingress": [{"ports": [{"port": 443}, {"port": 80, "endPort": 79}]}]},
                 name="deny-all")
    assert str(error(doc)) == "NetworkPolicy x/deny-all: spec.ingress[0].ports[1].endPort: must be >= port (80)"


@pytest.mark.parametrize("port, why", [
    ({"endPort": 90}, "without port"),
    ({"port": "http", "endPort": 90}, "named port"),
    ({"port": 80, "endPort": 65536}, "not a valid port number"),
    ({"port": 80, "endPort": "90"}, "not a valid port number"),
])
def test_end_port_needs_a_numeric_port_and_a_valid_number(port, why):
    err = error(ingress_rule({"ports": [port]}))
    assert err.where == "NetworkPolicy x/p"
    assert err.path == "spec.ingress[0].ports[0].endPort"
    assert why in err.problem


@pytest.mark.parametrize("end", [80, 81, 65535])
def test_end_port_equal_or_above_port_is_a_range(end):
    policy = one(ingress_rule({"ports": [{"port": 80, "endPort": end}]}))
    assert policy.ingress[0].ports == (PolicyPort("TCP", 80, end),)


# ------------------------------------------------------------------ peers
@pytest.mark.parametrize("selector", ["podSelector", "namespaceSelector"])
def test_peer_with_ip_block_and_a_selector_is_invalid(selector):
    peer = {"ipBlock": {"cidr": "10.0.0.0/8"}, selector: {}}
    err = error(ingress_rule({"from": [{"podSelector": {}}, peer]}))
    assert err.path == "spec.ingress[0].from[1]"
    assert "ipBlock" in err.problem


@pytest.mark.parametrize("direction, key", [("ingress", "from"), ("egress", "to")])
def test_empty_peer_is_invalid(direction, key):
    err = error(netpol({"podSelector": {}, direction: [{key: [{}]}]}))
    assert (err.where, err.path) == ("NetworkPolicy x/p", f"spec.{direction}[0].{key}[0]")


def test_pod_and_namespace_selector_in_one_peer_are_kept_together():
    policy = one(ingress_rule({"from": [{"podSelector": {"matchLabels": {"pod": "a"}},
                                         "namespaceSelector": {"matchLabels": {"ns": "y"}}}]}))
    (peer,) = policy.ingress[0].peers
    assert peer.pod_selector is not None and peer.namespace_selector is not None
    assert peer.ip_block is None


# ------------------------------------------------------------------ ipBlock
@pytest.mark.parametrize("except_", [
    "192.168.0.0/24",   # outside the block
    "10.0.0.0/8",       # equal to the block: must be a strict subset
    "0.0.0.0/0",        # larger than the block
    "fd00::/64",        # other address family
])
def test_except_must_lie_strictly_inside_cidr(except_):
    err = error(ingress_rule({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", except_]}}]}))
    assert err.path == "spec.ingress[0].from[0].ipBlock.except[1]"


def test_except_inside_cidr_is_accepted():
    policy = one(ingress_rule({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}))
    assert policy.ingress[0].peers[0].ip_block.except_ == ("10.1.0.0/16",)


@pytest.mark.parametrize("cidr", ["10.0.0.0", "10.0.0.0/33", "300.1.2.3/8", "abc/8", "", 10, None])
def test_bad_cidr_is_rejected(cidr):
    err = error(ingress_rule({"from": [{"ipBlock": {"cidr": cidr}}]}))
    assert err.path == "spec.ingress[0].from[0].ipBlock.cidr"


def test_bad_except_cidr_is_rejected():
    err = error(ingress_rule({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/40"]}}]}))
    assert err.path == "spec.ingress[0].from[0].ipBlock.except[0]"


def test_ipv6_block_is_accepted():
    policy = one(ingress_rule({"from": [{"ipBlock": {"cidr": "fd00::/48", "except": ["fd00::/64"]}}]}))
    (peer,) = policy.ingress[0].peers
    assert (peer.ip_block.cidr, peer.ip_block.except_) == ("fd00::/48", ("fd00::/64",))
    assert peer.pod_selector is None and peer.namespace_selector is None


# ------------------------------------------------------------------ ports and protocols
@pytest.mark.parametrize("port", [0, 65536, -1, True, 8.5])
def test_policy_port_number_range(port):
    err = error(ingress_rule({"ports": [{"port": port}]}))
    assert err.path == "spec.ingress[0].ports[0].port"


@pytest.mark.parametrize("name", ["HTTP", "http-", "-http", "a--b", "123", "abcdefghijklmnop", "80"])
def test_policy_named_port_follows_iana_service_name_rules(name):
    # "80" as a string is a name (IntOrString), and a name needs at least one letter
    err = error(ingress_rule({"ports": [{"port": name}]}))
    assert err.path == "spec.ingress[0].ports[0].port"


@pytest.mark.parametrize("protocol", ["tcp", "ICMP", "", 6])
def test_protocol_must_be_tcp_udp_or_sctp(protocol):
    err = error(ingress_rule({"ports": [{"port": 80, "protocol": protocol}]}))
    assert err.path == "spec.ingress[0].ports[0].protocol"


def test_lower_case_protocol_suggests_the_right_spelling():
    assert "'UDP'" in error(ingress_rule({"ports": [{"port": 53, "protocol": "udp"}]})).problem


def test_port_defaults_to_tcp_and_no_port_means_every_port():
    policy = one(ingress_rule({"ports": [{"protocol": "UDP"}, {"port": 80}]}))
    assert policy.ingress[0].ports == (PolicyPort("UDP", None), PolicyPort("TCP", 80))


# ------------------------------------------------------------------ selectors
@pytest.mark.parametrize("expr, field", [
    ({"key": "pod", "operator": "In"}, "values"),
    ({"key": "pod", "operator": "NotIn", "values": []}, "values"),
    ({"key": "pod", "operator": "Exists", "values": ["a"]}, "values"),
    ({"key": "pod", "operator": "DoesNotExist", "values": ["a"]}, "values"),
    ({"key": "pod", "operator": "in", "values": ["a"]}, "operator"),
    ({"key": "pod", "operator": "Equals", "values": ["a"]}, "operator"),
    ({"operator": "Exists"}, "key"),
    ({"key": "-bad", "operator": "Exists"}, "key"),
    ({"key": "pod", "operator": "In", "values": "a"}, "values"),
    ({"key": "pod", "operator": "In", "values": ["a b"]}, "values[0]"),
    ({"key": "pod", "operator": "Exists", "value": ["a"]}, "value"),
])
def test_match_expressions_operator_and_value_rules(expr, field):
    err = error(netpol({"podSelector": {"matchExpressions": [{"key": "ok", "operator": "Exists"}, expr]}}))
    assert err.path == f"spec.podSelector.matchExpressions[1].{field}"


@pytest.mark.parametrize("op, values", [("In", ["a", "b"]), ("NotIn", ["a"]), ("Exists", None),
                                        ("DoesNotExist", [])])
def test_valid_match_expressions_parse(op, values):
    expr = {"key": "pod", "operator": op} | ({} if values is None else {"values": values})
    policy = one(netpol({"podSelector": {"matchExpressions": [expr]}}))
    (req,) = policy.pod_selector.match_expressions
    assert (req.key, req.operator, req.values) == ("pod", op, tuple(values or ()))


def test_match_labels_value_must_be_a_string():
    err = error(netpol({"podSelector": {"matchLabels": {"tier": 1}}}))
    assert err.path == "spec.podSelector.matchLabels.tier"
    assert "must be a string" in err.problem


@pytest.mark.parametrize("labels, pod, selected", [
    ({}, {}, True),
    ({"a": "1"}, {"a": "1", "b": "2"}, True),
    ({"a": "1"}, {"a": "2"}, False),
    ({"a": "1"}, {}, False),
])
def test_match_labels_semantics(labels, pod, selected):
    policy = one(netpol({"podSelector": {"matchLabels": labels}}))
    assert policy.pod_selector.matches(pod) is selected


# ------------------------------------------------------------------ policyTypes defaulting
@pytest.mark.parametrize("spec, types", [
    ({}, ("Ingress",)),
    ({"ingress": [{}]}, ("Ingress",)),
    ({"egress": [{}]}, ("Ingress", "Egress")),
    ({"egress": []}, ("Ingress",)),              # an empty list adds no Egress
    ({"policyTypes": [], "egress": [{}]}, ("Ingress", "Egress")),
    ({"policyTypes": ["Egress"]}, ("Egress",)),
    ({"policyTypes": ["Egress"], "ingress": [{}]}, ("Egress",)),  # explicit types win
    ({"policyTypes": ["Ingress", "Egress"]}, ("Ingress", "Egress")),
])
def test_policy_types_defaulting_like_the_api_server(spec, types):
    assert one(netpol({"podSelector": {}, **spec})).policy_types == types


@pytest.mark.parametrize("types, path", [
    (["ingress"], "spec.policyTypes[0]"),
    (["Ingress", "Both"], "spec.policyTypes[1]"),
    ("Ingress", "spec.policyTypes"),
    ("", "spec.policyTypes"),
])
def test_bad_policy_types_are_rejected(types, path):
    assert error(netpol({"podSelector": {}, "policyTypes": types})).path == path


# ------------------------------------------------------------------ unknown fields
@pytest.mark.parametrize("spec, path", [
    ({"podSelector": {}, "ingress": [{"form": [{"podSelector": {}}]}]}, "spec.ingress[0].form"),
    ({"podSelector": {}, "egress": [{"from": [{"podSelector": {}}]}]}, "spec.egress[0].from"),
    ({"podSelector": {}, "ingres": []}, "spec.ingres"),
    ({"podSelector": {"matchLabel": {}}}, "spec.podSelector.matchLabel"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "excepts": []}}]}]},
     "spec.ingress[0].from[0].ipBlock.excepts"),
])
def test_unknown_fields_are_errors_with_their_path(spec, path):
    err = error(netpol(spec))
    assert err.path == path
    assert "unknown field" in err.problem


def test_wrong_api_version_for_network_policy():
    doc = netpol({"podSelector": {}}) | {"apiVersion": "extensions/v1beta1"}
    assert error(doc).path == "apiVersion"
