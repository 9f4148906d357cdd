"""Plain-data forms of the public result types: ``to_dict`` is JSON, ``from_dict`` inverts it.

These values cross a process boundary as JSON (a backend in another process sends them),
so ``T.from_dict(json.loads(json.dumps(x.to_dict()))) == x`` must hold, and malformed input
must fail with a ``ModelError`` naming the key.
"""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import labkit
from labkit.errors import ModelError
from labkit.probe.matrix import Matrix
from labkit.results import ExecResult, ProbeResult
from labkit.semantics.oracle import Explanation, Outcome
from labkit.semantics.policy import Decision
from labkit.semantics.services import Endpoint

WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  containers: [{name: app, ports: [{containerPort: 80, name: http}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  containers: [{name: app, ports: [{containerPort: 80, name: http}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, labels: {app: web}}
spec:
  containers: [{name: app, ports: [{containerPort: 80, name: http}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: stranger, namespace: other, labels: {app: client}}
spec:
  containers: [{name: app, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8000, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 80}]
"""


def json_round_trip(value):
    data = value.to_dict()
    text = json.dumps(data, allow_nan=False)  # only JSON types, and nothing JSON cannot spell
    return type(value).from_dict(json.loads(text))


@pytest.fixture(scope="module")
def lab():
    with labkit.Lab("pd", backend="sim") as lab:
        lab.apply(WORLD)
        yield lab


# ------------------------------------------------------------------ values from a lab
@pytest.mark.parametrize("src, dst, port", [
    ("default/client", "default/web-1", 80),       # allowed by the policy
    ("other/stranger", "default/web-1", 80),       # denied: other namespace
    ("default/client", "web", 8000),               # through the Service
    ("default/client", "nope", 80),                # NXDOMAIN
    ("default/client", "default/web-1", 81),       # refused
])
def test_probe_results_round_trip(lab, src, dst, port):
    result = lab.probe(src, dst, port)
    assert result.may_answer is not None  # the lab fills in the oracle's prediction
    back = json_round_trip(result)
    assert back == result
    assert isinstance(back.may_answer, tuple)
    assert repr(back) == repr(result)


def test_exec_results_round_trip(lab):
    for argv in (["hostname"], ["cat", "/etc/resolv.conf"], ["ip", "addr"], ["no-such-tool"]):
        result = lab.exec("default/client", argv)
        assert json_round_trip(result) == result
    assert lab.exec("default/client", ["no-such-tool"]).exit_code != 0


@pytest.mark.parametrize("src, dst, port, allowed", [
    ("default/client", "default/web-1", 80, True),
    ("other/stranger", "default/web-1", 80, False),
    ("default/client", "web", 8000, True),
    ("other/stranger", "web.default", 8000, False),
])
def test_explanations_round_trip_with_their_decisions(lab, src, dst, port, allowed):
    explanation = lab.explain(src, dst, port)
    assert explanation.allowed is allowed
    assert any(o.decisions for o in explanation.outcomes)
    back = json_round_trip(explanation)
    assert back == explanation
    assert str(back) == str(explanation)
    for outcome in back.outcomes:
        assert isinstance(outcome.reasons, tuple) and isinstance(outcome.decisions, tuple)
        for decision in outcome.decisions:
            assert isinstance(decision, Decision) and isinstance(decision.isolating, tuple)


def test_explanation_chains_round_trip(lab):
    explanation = lab.explain("default/client", "default/web-1", 80)
    explanation.chains = ["table inet labkit chain fwd: accept", "chain ingress-default-web-1: accept"]
    assert json_round_trip(explanation) == explanation


def test_outcomes_and_decisions_round_trip_alone(lab):
    denied = lab.explain("other/stranger", "default/web-1", 80)
    decisions = [d for o in denied.outcomes for d in o.decisions]
    assert any(not d.allowed and d.isolating for d in decisions)
    for outcome in denied.outcomes:
        assert json_round_trip(outcome) == outcome
    for decision in decisions:
        assert json_round_trip(decision) == decision


def test_endpoints_round_trip(lab):
    endpoints = list(lab.endpoints("default/web"))
    assert [e.pod for e in endpoints] == ["default/web-1", "default/web-2"]
    for endpoint in endpoints:
        assert json_round_trip(endpoint) == endpoint
    not_ready = Endpoint("default/web-3", "10.0.0.9", 80, "TCP", False)
    assert json_round_trip(not_ready) == not_ready


def test_matrix_round_trips(lab):
    matrix = lab.matrix(80)
    back = json_round_trip(matrix)
    assert back == matrix
    assert repr(back) == repr(matrix)
    assert back.allowed("default/client", "default/web-1") and not back.allowed("other/stranger", "default/web-1")


def test_matrix_with_differences_and_results_round_trips(lab):
    simulated = lab.matrix(80)  # sim: observed is the oracle
    pods = simulated.pods
    observed = list(simulated.expected)
    observed[pods.index("other/stranger")] |= 1 << pods.index("default/web-1")  # one cell disagrees
    results = {(s, d): lab.probe(s, d, 80) for s in pods for d in pods}
    matrix = Matrix(list(pods), 80, "TCP", observed, list(simulated.expected), "observed", results)
    assert matrix.differences() == [("other/stranger", "default/web-1")]
    data = json.loads(json.dumps(matrix.to_dict()))
    back = Matrix.from_dict(data)
    assert back == matrix
    assert back.results[("default/client", "default/web-1")] == results[("default/client", "default/web-1")]
    assert back.differences() == matrix.differences()
    assert "!" in repr(back) and repr(back) == repr(matrix)


def test_matrix_to_dict_keeps_its_keys_and_adds_expected_and_results(lab):
    matrix = lab.matrix(80)
    data = matrix.to_dict()
    assert list(data)[:6] == ["port", "protocol", "source", "pods", "allowed", "differences"]
    assert set(data) == {"port", "protocol", "source", "pods", "allowed", "differences", "expected", "results"}
    assert data["expected"] == data["allowed"]  # sim: observed is the oracle
    assert data["expected"]["other/stranger"]["default/web-1"] is False
    assert data["results"] == []


# ------------------------------------------------------------------ malformed input
def probe_dict():
    return ProbeResult(True, 1.5, "x/b", None, False, "x/a", "x/b", 80, "TCP", ("x/b",)).to_dict()


@pytest.mark.parametrize("key", ["ok", "latency_ms", "answered_by", "error", "simulated", "src", "dst", "port",
                                 "protocol", "may_answer"])
def test_a_missing_key_is_named(key):
    data = probe_dict()
    del data[key]
    with pytest.raises(ModelError, match=f"^ProbeResult: missing key '{key}'$"):
        ProbeResult.from_dict(data)


@pytest.mark.parametrize("key, value, what", [
    ("ok", "yes", "must be a boolean, got a string"),
    ("ok", None, "must be a boolean, got null"),
    ("port", True, "must be an integer, got a boolean"),
    ("port", 80.0, "must be an integer, got a number"),
    ("latency_ms", "fast", "must be a number or null, got a string"),
    ("answered_by", 3, "must be a string or null, got an integer"),
    ("may_answer", "x/b", "must be a list or null, got a string"),
    ("may_answer", [1], "must be a list of strings"),
])
def test_a_bad_value_is_named(key, value, what):
    data = {**probe_dict(), key: value}
    with pytest.raises(ModelError, match=f"^ProbeResult: key '{key}' {what}"):
        ProbeResult.from_dict(data)


def test_an_integer_latency_is_read_as_a_float():
    result = ProbeResult.from_dict({**probe_dict(), "latency_ms": 2})
    assert result.latency_ms == 2.0 and isinstance(result.latency_ms, float)


@pytest.mark.parametrize("cls", [ProbeResult, ExecResult, Matrix, Explanation, Outcome, Decision, Endpoint])
@pytest.mark.parametrize("data", [None, [], "x", 3])
def test_not_an_object(cls, data):
    with pytest.raises(ModelError, match=f"^{cls.__name__}: expected an object"):
        cls.from_dict(data)


def test_exec_result_missing_key():
    with pytest.raises(ModelError, match="^ExecResult: missing key 'output'$"):
        ExecResult.from_dict({"exit_code": 0})
    with pytest.raises(ModelError, match="^ExecResult: key 'exit_code' must be an integer"):
        ExecResult.from_dict({"exit_code": "0", "output": ""})


def test_nested_errors_name_the_path(lab):
    data = lab.explain("other/stranger", "default/web-1", 80).to_dict()
    del data["outcomes"][0]["decisions"][1]["allowed"]
    with pytest.raises(ModelError, match=r"^Explanation: outcomes\[0\]\.decisions\[1\]: missing key 'allowed'$"):
        Explanation.from_dict(data)
    data = lab.endpoints("default/web")[0].to_dict()
    del data["ready"]
    with pytest.raises(ModelError, match="^Endpoint: missing key 'ready'$"):
        Endpoint.from_dict(data)


def test_matrix_errors_name_the_key(lab):
    good = lab.matrix(80).to_dict()
    for key in ("pods", "port", "protocol", "source", "allowed", "expected", "results"):
        data = dict(good)
        del data[key]
        with pytest.raises(ModelError, match=f"^Matrix: missing key '{key}'$"):
            Matrix.from_dict(data)
    data = json.loads(json.dumps(good))
    del data["expected"]["default/client"]
    with pytest.raises(ModelError, match="^Matrix: expected: missing key 'default/client'$"):
        Matrix.from_dict(data)
    data = json.loads(json.dumps(good))
    data["allowed"]["default/client"]["default/web-2"] = 1
    with pytest.raises(ModelError, match=r"^Matrix: allowed\['default/client'\]: key 'default/web-2' must be a boolean"):
        Matrix.from_dict(data)
    data = {**good, "results": [{"from": "a/b", "to": "a/c", "result": {"ok": True}}]}
    with pytest.raises(ModelError, match=r"^Matrix: results\[0\]\.result: missing key 'latency_ms'$"):
        Matrix.from_dict(data)
    data = {**good, "results": [{"from": "a/b", "result": probe_dict()}]}
    with pytest.raises(ModelError, match=r"^Matrix: results\[0\]: missing key 'to'$"):
        Matrix.from_dict(data)


# ------------------------------------------------------------------ properties
texts = st.text(max_size=40)
maybe_texts = st.none() | texts
probe_results = st.builds(
    ProbeResult,
    ok=st.booleans(),
    latency_ms=st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    answered_by=maybe_texts,
    error=maybe_texts,
    simulated=st.booleans(),
    src=texts,
    dst=texts,
    port=st.integers(min_value=0, max_value=65535),
    protocol=st.sampled_from(["TCP", "UDP", "SCTP"]),
    may_answer=st.none() | st.lists(texts, max_size=4).map(tuple),
)
exec_results = st.builds(ExecResult, exit_code=st.integers(min_value=-(2 ** 31), max_value=2 ** 31), output=st.text())


@given(probe_results)
def test_any_probe_result_round_trips(result):
    back = json_round_trip(result)
    assert back == result
    assert type(back.may_answer) is type(result.may_answer)
    if result.latency_ms is not None:
        assert isinstance(back.latency_ms, float) and math.isclose(back.latency_ms, result.latency_ms)
    assert back.matches_oracle == result.matches_oracle


@given(exec_results)
def test_any_exec_result_round_trips(result):
    back = json_round_trip(result)
    assert back == result and str(back) == str(result) and back.ok == result.ok
