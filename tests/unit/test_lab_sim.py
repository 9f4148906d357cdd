"""The public ``Lab`` API on the sim backend: results, matrices, backends, life cycle."""
from __future__ import annotations

import json
import warnings

import pytest

import labkit
from labkit import LabkitError, ModelError, NotFound

WORLD = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y"}},
    *[{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": ns, "labels": {"app": app}},
       "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80, "name": "http"}]}]}}
      for ns, n, app in [("x", "a", "client"), ("x", "b", "web"), ("x", "c", "web"), ("y", "d", "client")]],
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "x"},
     "spec": {"selector": {"app": "web"}, "ports": [{"port": 8000, "targetPort": "http"}]}},
]
# x/b and x/c accept only pods of namespace x
POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"name": "same-ns", "namespace": "x"},
          "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"podSelector": {}}]}]}}


@pytest.fixture
def lab():
    with labkit.Lab("t", backend="sim") as lab:
        lab.apply(WORLD + [POLICY])
        yield lab


# ------------------------------------------------------------------ probes
@pytest.mark.parametrize("src, dst, port, ok", [
    ("x/a", "x/b", 80, True),
    ("y/d", "x/b", 80, False),
    ("x/a", "web", 8000, True),
    ("y/d", "web.x", 8000, False),
    ("x/a", "nope", 80, False),
    ("x/a", "203.0.113.10", 80, True),
    ("x/a", "8.8.8.8", 53, False),
    ("x/a", "x/a", 80, True),
    ("x/a", "x/b", 81, False),
])
def test_every_probe_result_is_simulated(lab, src, dst, port, ok):
    result = lab.probe(src, dst, port=port)
    assert result.simulated is True
    assert result.ok is ok and bool(result) is ok
    assert result.latency_ms is None
    assert (result.answered_by is None) is (not ok)
    assert (result.error is None) is ok
    assert "(simulated)" in repr(result)
    assert result._repr_html_().startswith("<span")


def test_probe_to_a_pod_ref_names_it(lab):
    result = lab.probe("x/a", "x/b")
    assert (result.src, result.dst, result.answered_by) == ("x/a", "x/b", "x/b")


def test_probe_default_namespace_refs():
    with labkit.Lab("t", backend="sim") as lab:
        lab.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"},
                   "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}})
        assert lab.probe("solo", "default/solo").answered_by == "default/solo"


def test_probes_through_a_service_spread_over_its_endpoints(lab):
    answered = [lab.probe("x/a", "web", 8000).answered_by for _ in range(60)]
    assert set(answered) == {"x/b", "x/c"}


def test_probe_errors_say_what_a_client_sees(lab):
    assert lab.probe("y/d", "x/b").error == "timed out"
    assert lab.probe("x/a", "x/b", 81).error == "connection refused"
    assert lab.probe("x/a", "nope").error == "NXDOMAIN nope"


@pytest.mark.parametrize("kwargs", [{"port": 0}, {"port": 65536}, {"port": "80"}, {"protocol": "tcp"},
                                    {"protocol": "ICMP"}])
def test_probe_validates_port_and_protocol(lab, kwargs):
    with pytest.raises(ModelError):
        lab.probe("x/a", "x/b", **kwargs)


def test_probe_unknown_pods(lab):
    with pytest.raises(NotFound, match="did you mean x/a"):
        lab.probe("a", "x/b")
    with pytest.raises(NotFound):
        lab.probe("x/a", "x/zz")


def test_explain_and_expected_validate_port_and_protocol(lab):
    for call in (lambda: lab.explain("x/a", "x/b", port=0), lambda: lab.expected(port=70000),
                 lambda: lab.matrix(port=-1)):
        with pytest.raises(ModelError, match="^port: "):
            call()
    with pytest.raises(ModelError, match="^protocol: "):
        lab.explain("x/a", "x/b", protocol="tcp")


def test_explain_through_the_lab(lab):
    ex = lab.explain("y/d", "x/b", 80)
    assert isinstance(ex, labkit.Explanation) and not ex.allowed
    assert "x/same-ns" in str(ex)


# ------------------------------------------------------------------ matrices
EXPECTED = {  # (src, dst) -> allowed on 80/TCP under POLICY
    **{(s, d): True for s in ("x/a", "x/b", "x/c", "y/d") for d in ("x/a", "x/b", "x/c", "y/d")},
    ("y/d", "x/b"): False, ("y/d", "x/c"): False,
}


def test_matrix_cells(lab):
    m = lab.matrix(80)
    assert m.pods == ["x/a", "x/b", "x/c", "y/d"]
    assert {(s, d): m.allowed(s, d) for s in m.pods for d in m.pods} == EXPECTED
    assert m.simulated and m.source == "simulated"
    assert m.count_allowed == 14


def test_matrix_repr_is_a_readable_table(lab):
    text = repr(lab.matrix(80))
    lines = text.splitlines()
    assert "80/TCP" in lines[0] and "simulated" in lines[0] and "matches the oracle" in lines[0]
    assert lines[1].split() == ["from\\to", "x/a", "x/b", "x/c", "y/d"]
    assert lines[5].split() == ["y/d", ".", "X", "X", "."]
    assert lines[2].split() == ["x/a", ".", ".", ".", "."]


def test_matrix_html(lab):
    html = lab.matrix(80)._repr_html_()
    assert html.startswith("<div") and "<table" in html and html.count("<tr>") == 5
    assert "y/d -&gt; x/b: denied" in html


def test_expected_equals_matrix_on_sim_and_no_differences(lab):
    m, e = lab.matrix(80), lab.expected(80)
    assert m.observed == e.observed == e.expected
    assert m.differences() == [] and e.differences() == []
    assert e.source == "expected"


def test_to_dict_round_trips_through_json(lab):
    d = lab.matrix(80).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["allowed"]["y/d"]["x/b"] is False and d["allowed"]["x/a"]["x/b"] is True
    assert d["differences"] == [] and d["port"] == 80 and d["protocol"] == "TCP"


def test_matrix_subsets(lab):
    assert lab.matrix(80, namespaces=["y"]).pods == ["y/d"]
    m = lab.matrix(80, pods=["y/d", "x/b"])
    assert m.pods == ["y/d", "x/b"] and not m.allowed("y/d", "x/b") and m.allowed("x/b", "y/d")
    with pytest.raises(NotFound):
        m.allowed("x/a", "x/b")


def test_matrix_other_port_and_protocol(lab):
    assert lab.matrix(81).count_allowed == 0
    assert lab.matrix(80, "UDP").count_allowed == 0


# ------------------------------------------------------------------ changes through the lab
def test_apply_returns_kubectl_like_changes():
    with labkit.Lab("t", backend="sim") as lab:
        changes = lab.apply(WORLD)
        assert isinstance(changes, labkit.Changes)
        assert repr(changes).splitlines()[0] == "namespace/x created"
        assert repr(lab.apply([])) == "(no changes)"
        assert "unchanged" in repr(lab.apply(WORLD))


def test_label_and_delete_change_the_verdict(lab):
    lab.label("namespace", "y", {"trusted": "yes"})
    assert not lab.probe("y/d", "x/b").ok
    lab.delete("netpol", "same-ns", namespace="x")
    assert lab.probe("y/d", "x/b").ok
    lab.label("pod", "x/b", {"app": None})
    assert lab.probe("x/a", "web", 8000).answered_by == "x/c"


def test_history_rebuilds_the_same_lab(lab):
    # how the CLI restores a lab between commands: the same operations give the same addresses
    lab.label("pod", "x/a", {"role": "probe"})
    lab.delete("pod", "c", "x")
    with labkit.Lab("copy", backend="sim") as other:
        other.replay(lab.history)
        assert other.cluster == lab.cluster


def test_probed_pods_are_ready_on_sim_also_in_a_restored_lab():
    probed = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x", "labels": {"app": "web"}},
              "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80, "name": "http"}],
                                       "readinessProbe": {"tcpSocket": {"port": "http"}}}]}}
    with labkit.Lab("t", backend="sim") as lab:
        lab.apply(WORLD + [probed])
        assert lab.cluster.not_ready == frozenset()
        with labkit.Lab("copy", backend="sim") as other:
            other.replay(lab.history)
            assert other.cluster.not_ready == frozenset()
            assert {other.probe("x/a", "web", 8000).answered_by for _ in range(40)} == {"x/b", "x/c", "x/p"}


def test_pod_and_service_addresses(lab):
    assert lab.pod_ip("x/a") == "10.244.1.3"
    assert lab.service_ip("x/web").startswith("10.96.")
    with pytest.raises(ModelError):
        lab.service_ip("x/nope")
    assert lab.pods == ["x/a", "x/b", "x/c", "y/d"]


def test_sim_rules_are_the_ruleset_docker_would_apply(lab):
    from labkit.dataplane import ruleset
    text = lab.rules()
    assert text.startswith("# simulated")
    assert ruleset.render(lab.cluster, 1) in text


# ------------------------------------------------------------------ backends
def test_labkit_backend_env_chooses_sim_for_auto(monkeypatch):
    monkeypatch.setenv("LABKIT_BACKEND", "sim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", labkit.LabkitNotice)
        with labkit.Lab("t", backend="auto") as lab:
            assert lab.backend_name == "sim" and lab.simulated
            assert "SIMULATED" in repr(lab) and "Simulated" in lab._repr_html_()


@pytest.mark.parametrize("env", ["kvm", "SIM"])
def test_bad_labkit_backend_env(monkeypatch, env):
    monkeypatch.setenv("LABKIT_BACKEND", env)
    with pytest.raises(ModelError, match="LABKIT_BACKEND"):
        labkit.Lab("t", backend="auto")


@pytest.mark.parametrize("kwargs", [{"backend": "kvm"}, {"name": "Bad_Name"}, {"name": "a" * 21},
                                    {"nodes": 0}, {"nodes": 9}])
def test_lab_arguments_are_validated(kwargs):
    with pytest.raises(ModelError):
        labkit.Lab(**({"name": "t", "backend": "sim"} | kwargs))


def test_two_nodes():
    with labkit.Lab("t", backend="sim", nodes=2) as lab:
        lab.apply(WORLD)
        assert lab.cluster.node_of("x/b") == "node-2"
        assert lab.pod_ip("x/b").startswith("10.244.2.")


# ------------------------------------------------------------------ life cycle
def test_context_manager_closes_and_a_closed_lab_refuses_work():
    with labkit.Lab("t", backend="sim") as lab:
        lab.apply(WORLD)
    assert "closed" in repr(lab)
    before = lab.cluster
    for call in (lambda: lab.probe("x/a", "x/b"), lambda: lab.matrix(80), lambda: lab.apply(POLICY),
                 lambda: lab.delete("pod", "a", "x"), lambda: lab.label("pod", "x/a", {"k": "v"}),
                 lambda: lab.exec("x/a", ["true"]), lambda: lab.rules()):
        with pytest.raises(LabkitError, match="closed"):
            call()
    assert lab.cluster is before
    lab.close()  # closing twice is fine


def test_closing_on_error_inside_the_with_block():
    with pytest.raises(RuntimeError):
        with labkit.Lab("t", backend="sim") as lab:
            raise RuntimeError("boom")
    with pytest.raises(LabkitError, match="closed"):
        lab.probe("kube-system/coredns", "kube-system/coredns", 53, "UDP")
