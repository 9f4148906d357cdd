"""The editors' field languages and manifest builders (``labkit.widgets.forms``): no widgets."""
from __future__ import annotations

import pytest

import labkit
from labkit.errors import ModelError
from labkit.model.manifests import parse_document
from labkit.widgets import forms


@pytest.mark.parametrize("text, want", [
    ("", None),
    ("  ", None),
    ("*", {}),
    ("app=web", {"matchLabels": {"app": "web"}}),
    ("app==web, tier=db", {"matchLabels": {"app": "web", "tier": "db"}}),
    ("tier!=db", {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}),
    ("env in (a, b)", {"matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]}),
    ("env notin (a)", {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["a"]}]}),
    ("legacy, !beta", {"matchExpressions": [{"key": "legacy", "operator": "Exists"},
                                            {"key": "beta", "operator": "DoesNotExist"}]}),
    ("kubernetes.io/metadata.name=kube-system", {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}),
])
def test_selectors(text, want):
    assert forms.parse_selector(text, "pods") == want


@pytest.mark.parametrize("text", ["app===web", "a=b=c", "env in ()", "(x)"])
def test_bad_selectors_name_the_field(text):
    with pytest.raises(ModelError) as info:
        forms.parse_selector(text, "peer pods")
    assert info.value.path == "peer pods"


def test_service_selectors_are_plain_maps():
    assert forms.parse_labels("app=web, tier=fe", "selector") == {"app": "web", "tier": "fe"}
    with pytest.raises(ModelError, match="plain map"):
        forms.parse_labels("app in (a)", "selector")


@pytest.mark.parametrize("text, want", [
    ("", []),
    ("80", [{"protocol": "TCP", "port": 80}]),
    ("80/tcp, 53/UDP", [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 53}]),
    ("8000-8080/TCP", [{"protocol": "TCP", "port": 8000, "endPort": 8080}]),
    ("http", [{"protocol": "TCP", "port": "http"}]),
    ("any/UDP", [{"protocol": "UDP"}]),
])
def test_ports(text, want):
    assert forms.parse_ports(text, "ports") == want


def test_a_bad_port_fails_in_the_model_with_its_path():
    doc = forms.policy_manifest("x", "p", ports="80/FOO")
    with pytest.raises(ModelError, match=r"spec.ingress\[0\].ports\[0\].protocol"):
        parse_document(doc)


@pytest.mark.parametrize("preset", sorted(forms.PRESETS))
def test_every_preset_is_a_valid_policy(preset):
    values = forms.PRESETS[preset]
    obj = parse_document(forms.policy_manifest("x", **values))
    assert obj.policy_types == (values["direction"],) and obj.pod_selector.empty


def test_deny_all_has_no_rules_and_ports_alone_allow_any_peer():
    deny = forms.policy_manifest("x", "d", direction="Egress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Egress"]}
    ports_only = forms.policy_manifest("x", "p", ports="80")
    assert ports_only["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 80}]}]
    peers = forms.policy_manifest("x", "p", direction="Egress", peer_namespaces="*")
    assert peers["spec"]["egress"] == [{"to": [{"namespaceSelector": {}}]}]
    with pytest.raises(ModelError, match="Ingress or Egress"):
        forms.policy_manifest("x", "p", direction="Both")


@pytest.mark.parametrize("kind, spec_part", [
    ("ClusterIP", {"type": "ClusterIP"}),
    ("NodePort", {"type": "NodePort"}),
    ("headless", {"clusterIP": "None"}),
])
def test_service_manifests(kind, spec_part):
    doc = forms.service_manifest("x", "web", "app=web", 80, "8080", "TCP", kind, 30080)
    assert spec_part.items() <= doc["spec"].items()
    assert doc["spec"]["ports"][0]["targetPort"] == 8080
    assert ("nodePort" in doc["spec"]["ports"][0]) is (kind == "NodePort")
    parse_document(doc)
    with pytest.raises(ModelError, match="ClusterIP, NodePort or headless"):
        forms.service_manifest("x", "web", "app=web", 80, kind="LoadBalancer")


def test_dry_run_reports_changes_and_changes_nothing():
    with labkit.Lab("f", backend="sim") as lab:
        lab.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
        before = lab.cluster
        text = forms.to_yaml(forms.policy_manifest("x", "deny"))
        assert forms.dry_run(lab.cluster, text) == ["networkpolicy/x/deny created"]
        assert lab.cluster is before and before.policies == {}
        with pytest.raises(ModelError, match="empty"):
            forms.dry_run(lab.cluster, "")
        with pytest.raises(ModelError, match="document 1 is str"):
            forms.dry_run(lab.cluster, "deny")  # a bare word is YAML here, never a file name
