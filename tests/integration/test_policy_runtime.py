"""NetworkPolicy behaviour on a real engine beyond the conformance file: changes are atomic
and enforced when apply returns, conntrack keeps established flows, explain names the
kernel rule that decided, and node-to-pod traffic (readiness probes) is never policed."""
from __future__ import annotations

import pytest

import labkit
from tests.conftest import share_lab

pytestmark = pytest.mark.docker
LAB = "polrt"
WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 81, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {containers: [{name: c, ports: [{containerPort: 80, name: http}, {containerPort: 81, protocol: UDP}]}]}
"""
DENY_B = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"name": "deny-b", "namespace": "x"}, "spec": {"podSelector": {"matchLabels": {"pod": "b"}}}}


@pytest.fixture(scope="module")
def lab(request):
    share_lab(request.config, LAB)
    with labkit.Lab(LAB, backend="docker") as lab:
        lab.apply(WORLD)
        yield lab


@pytest.fixture(autouse=True)
def no_policies(lab):
    yield
    for ref in list(lab.cluster.policies):
        ns, name = ref.split("/")
        lab.delete("networkpolicy", name, ns)
    lab.reset_connections()


def test_policy_is_enforced_when_apply_returns_and_lifted_when_deleted(lab):
    assert lab.probe("x/a", "x/b", 80).ok
    lab.apply(DENY_B)
    result = lab.probe("x/a", "x/b", 80)
    assert not result.ok and result.error == "timed out"
    assert not lab.probe("x/a", "x/b", 81, "UDP").ok
    assert lab.probe("x/b", "x/a", 80).ok, "isolating b for ingress must not touch its egress"
    lab.delete("networkpolicy", "deny-b", "x")
    assert lab.probe("x/a", "x/b", 80).ok


def test_an_invalid_policy_changes_nothing_in_the_kernel(lab):
    lab.apply(DENY_B)
    before = lab.rules()
    bad = {**DENY_B, "metadata": {"name": "bad", "namespace": "x"},
           "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}}
    with pytest.raises(labkit.ModelError, match=r"spec.ingress\[0\].ports\[0\].endPort"):
        lab.apply([DENY_B | {"metadata": {"name": "fine", "namespace": "x"}}, bad])
    assert lab.rules() == before
    assert set(lab.cluster.policies) == {"x/deny-b"}


def test_established_connection_survives_a_deny_until_reset(lab):
    conn = lab.connect("x/a", "x/b", 80)
    try:
        assert conn.established and conn.send().answered_by == "x/b"
        lab.apply(DENY_B)
        assert not lab.probe("x/a", "x/b", 80).ok, "new connections are denied"
        assert conn.send().ok, "conntrack keeps the established flow alive"
        assert lab.reset_connections() == 1
        assert not conn.send().ok, "after the flush the flow faces the deny"
    finally:
        conn.close()


def test_explain_names_the_kernel_rule_with_its_counter(lab):
    lab.apply(DENY_B)
    assert not lab.probe("x/a", "x/b", 80).ok
    ex = lab.explain("x/a", "x/b", 80)
    assert not ex.allowed
    kernel = "\n".join(ex.chains)
    assert "in_x_b" in kernel and "no policy allows it" in kernel
    packets = int(kernel.split("counter packets ")[1].split()[0])
    assert packets >= 1, "the drop rule counted the probe's SYN"
    allow = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "allow-a", "namespace": "x"},
             "spec": {"podSelector": {"matchLabels": {"pod": "b"}},
                      "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}],
                                   "ports": [{"port": "http"}]}]}}
    lab.apply(allow)
    assert lab.probe("x/a", "x/b", 80).ok
    ex = lab.explain("x/a", "x/b", 80)
    assert ex.allowed
    assert any("np_x_allow-a_in" in c and "x/allow-a ingress[0]" in c for c in ex.chains), ex.chains


def test_readiness_probes_from_the_node_pass_through_a_deny_all(lab):
    lab.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "r", "namespace": "x", "labels": {"pod": "r"}},
               "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}],
                                        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]}})
    try:
        lab.apply({**DENY_B, "metadata": {"name": "deny-all", "namespace": "x"}, "spec": {"podSelector": {}}})
        assert lab.cluster.is_ready("x/r"), "node-to-pod traffic is always allowed"
        assert not lab.probe("x/a", "x/r", 80).ok
    finally:
        lab.delete("pod", "r", "x")
