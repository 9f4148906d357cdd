"""``lab.compare``: NetworkPolicy variants side by side, the table a learner fills in by probing.

The sim tests pin the empty-rule semantics of Kubernetes (``ingress: []`` vs ``[{}]`` vs
``from: []`` vs an empty namespaceSelector or podSelector) and that comparing leaves the lab
as it was; the docker test checks that real packets fill in the same table.
"""
from __future__ import annotations

import pytest

import labkit
from labkit.errors import ModelError

WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: prometheus, namespace: dev, labels: {app: prometheus}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: tester, namespace: dev, labels: {app: tester}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: tester, namespace: dev}
spec: {type: NodePort, selector: {app: tester}, ports: [{port: 80, nodePort: 30080}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-keep, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"""
HEAD = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: tester-in, namespace: dev}
spec:
  podSelector: {matchLabels: {app: tester}}
  policyTypes: [Ingress]
"""
VARIANTS = {
    "no policy": None,
    "ingress: []": HEAD + "  ingress: []\n",
    "ingress: [{}]": HEAD + "  ingress: [{}]\n",
    "from: []": HEAD + "  ingress: [{from: []}]\n",
    "namespaceSelector: {}": HEAD + "  ingress: [{from: [{namespaceSelector: {}}]}]\n",
    "podSelector: {}": HEAD + "  ingress: [{from: [{podSelector: {}}]}]\n",
}
PROBES = {"same namespace": ("dev/prometheus", "dev/tester", 80), "other namespace": ("shop/web", "dev/tester"),
          "outside": {"src": "internet", "dst": "198.18.0.1", "port": 30080}}
# What Kubernetes defines: [] allows nothing; an empty rule, or a rule with an empty "from",
# allows every source; an empty namespaceSelector means every pod of every namespace (not
# addresses outside the cluster); a podSelector alone means the policy's own namespace.
TRUTH = {
    "no policy": {"same namespace": True, "other namespace": True, "outside": True},
    "ingress: []": {"same namespace": False, "other namespace": False, "outside": False},
    "ingress: [{}]": {"same namespace": True, "other namespace": True, "outside": True},
    "from: []": {"same namespace": True, "other namespace": True, "outside": True},
    "namespaceSelector: {}": {"same namespace": True, "other namespace": True, "outside": False},
    "podSelector: {}": {"same namespace": True, "other namespace": False, "outside": False},
}


@pytest.fixture
def lab():
    with labkit.Lab("h3-compare", backend="sim") as lab:
        lab.apply(WORLD)
        yield lab


def test_the_empty_rules_table(lab):
    table = lab.compare(VARIANTS, PROBES)
    assert table.observed() == TRUTH
    assert table.allowed("namespaceSelector: {}", "other namespace")
    assert not table.allowed("podSelector: {}", "other namespace")
    assert table.differences() == [] and table.simulated


def test_comparing_leaves_the_lab_as_it_was(lab):
    before = sorted(lab.cluster.policies)
    lab.compare(VARIANTS, PROBES)
    assert sorted(lab.cluster.policies) == before == ["shop/web-keep"]
    assert lab.probe("dev/prometheus", "dev/tester").ok and not lab.probe("dev/tester", "shop/web").ok


def test_a_variant_may_hold_several_policies_and_they_add_up(lab):
    deny = HEAD + "  ingress: []\n"
    same_namespace = HEAD.replace("tester-in", "tester-in-2") + "  ingress: [{from: [{podSelector: {}}]}]\n"
    table = lab.compare({"two policies": deny + "---" + same_namespace}, PROBES)
    assert table.observed() == {"two policies": TRUTH["podSelector: {}"]}
    assert sorted(lab.cluster.policies) == ["shop/web-keep"]


def test_predictions_are_marked_right_or_wrong(lab):
    guesses = {"ingress: []": {"same namespace": False, "other namespace": True, "outside": None},
               "ingress: [{}]": {"same namespace": True}}
    table = lab.compare(VARIANTS, PROBES, predictions=guesses)
    assert table.wrong_predictions() == [("ingress: []", "other namespace")]
    assert len(table.unpredicted()) == 18 - 3
    text = str(table)
    assert "blocked ✔" in text and "blocked ✘" in text and "your predictions: 2 of 3 right" in text
    assert "other namespace = shop/web -> dev/tester 80/TCP" in text
    page = table._repr_html_()
    assert "<table>" in page and "you said: allowed" in page and "ingress: [{}]" in page


def test_no_predictions_says_how_to_make_them(lab):
    assert "fill in the prediction dict" in str(lab.compare({"ingress: []": VARIANTS["ingress: []"]}, PROBES))


@pytest.mark.parametrize("kwargs, path", [
    ({"predictions": {"nope": {}}}, "predictions['nope']"),
    ({"predictions": {"ingress: []": {"elsewhere": True}}}, "predictions['ingress: []']['elsewhere']"),
    ({"predictions": {"ingress: []": {"outside": "yes"}}}, "predictions['ingress: []']['outside']"),
    ({"probes": {"x": ("dev/prometheus",)}}, "probes['x']"),
    ({"probes": {"x": ("dev/prometheus", "dev/tester", 0)}}, "probes['x'].port"),
    ({"probes": {"x": ("dev/prometheus", "dev/tester", 80, "ICMP")}}, "probes['x'].protocol"),
    ({"variants": {"pod": "apiVersion: v1\nkind: Pod\nmetadata: {name: z}\nspec: {containers: [{name: a}]}\n"}},
     "variants['pod'][0].kind"),
    ({"variants": {"clash": HEAD.replace("tester-in", "web-keep").replace("namespace: dev", "namespace: shop")}},
     "variants['clash'][0].metadata.name"),
])
def test_bad_input_names_the_field_and_changes_nothing(lab, kwargs, path):
    args = {"variants": VARIANTS, "probes": PROBES, **kwargs}
    history = len(lab.history)
    with pytest.raises(ModelError) as error:
        lab.compare(**args)
    assert error.value.path == path
    assert len(lab.history) == history  # nothing was applied


def test_an_invalid_variant_fails_after_the_earlier_ones_were_taken_away(lab):
    broken = dict(list(VARIANTS.items())[:3])
    broken["broken"] = HEAD + "  ingress: [{ports: [{port: 0}]}]\n"
    with pytest.raises(ModelError):
        lab.compare(broken, PROBES)
    assert sorted(lab.cluster.policies) == ["shop/web-keep"]


@pytest.mark.docker
def test_real_packets_fill_in_the_same_table():
    with labkit.Lab("h3-compare-d", backend="docker") as lab:
        lab.apply(WORLD)
        table = lab.compare(VARIANTS, PROBES, timeout=0.5)
        assert table.observed() == TRUTH
        assert table.differences() == [] and not table.simulated
        assert sorted(lab.cluster.policies) == ["shop/web-keep"]
