"""Every case of the upstream-derived NetworkPolicy file, on the sim backend (docker: issue 5)."""
from __future__ import annotations

import pytest

import labkit
from labkit.testing import conformance

DATA = conformance.load_cases()
CASES = DATA["cases"]


@pytest.fixture(scope="module")
def world():
    with labkit.Lab("conformance", backend="sim") as lab:
        yield conformance.World(lab, DATA)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_on_sim(world, case):
    report = world.run(case)
    assert report.checks, "a case without probes checks nothing"
    assert report.ok, report.failures()


def test_every_probe_and_step_is_run(world):
    reports = [world.run(c) for c in CASES]
    expected_checks = sum(len(s.get("probes") or []) for c in CASES for s in c.get("steps") or [
        {"probes": c.get("probes")}])
    assert sum(len(r.checks) for r in reports) == expected_checks
    assert all(r.ok for r in reports), "\n".join(r.failures() for r in reports if not r.ok)
    table = conformance.summary_table(reports)
    assert len(table.splitlines()) == len(CASES) + 1


@pytest.mark.parametrize("case", DATA["validation_cases"], ids=[c["name"] for c in DATA["validation_cases"]])
def test_validation_case(case):
    spec = {"podSelector": {}}
    if "ingress_rule" in case:
        spec["ingress"] = [case["ingress_rule"]]
    if "egress_rule" in case:
        spec.update(policyTypes=["Egress"], egress=[case["egress_rule"]])
    doc = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": case["name"], "namespace": "default"}, "spec": spec}
    with labkit.Lab("validation", backend="sim") as lab:
        if case["verdict"] == "reject":
            with pytest.raises(labkit.ModelError) as err:
                lab.apply(doc)
            assert f"NetworkPolicy default/{case['name']}: spec." in str(err.value)
            assert lab.cluster.policies == {}
        else:
            lab.apply(doc)
            assert f"default/{case['name']}" in lab.cluster.policies
