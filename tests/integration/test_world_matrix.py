"""The conformance world (x, y, z x a, b, c; six serving containers per pod) with no policy:
every pod reaches every pod on 80 and 81, TCP and UDP, exactly as the oracle says."""
from __future__ import annotations

import pytest

import labkit
from labkit.testing import conformance
from tests.conftest import share_lab
from tests.integration.helpers import POD_LABEL, lab_containers

pytestmark = pytest.mark.docker

LAB = "it-world"
WORLD = conformance.load_cases()["world"]
PODS = sorted(WORLD["pods"])


@pytest.fixture(scope="module")
def lab(request):
    share_lab(request.config, LAB)
    lab = labkit.Lab(LAB, backend="docker")
    try:
        lab.apply(conformance.world_manifests(WORLD))
        yield lab
    finally:
        lab.close()


def test_world_is_built(lab):
    assert sorted(lab.pods) == PODS
    per_pod = len(WORLD["containers_per_pod"]) + 1  # + the pause container
    pods = [c for c in lab_containers(LAB) if c.labels.get(POD_LABEL) in PODS]
    assert len(pods) == len(PODS) * per_pod
    assert not lab.cluster.policies


@pytest.mark.parametrize("port", [80, 81])
@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
def test_no_policy_means_all_allowed(lab, port, protocol):
    m = lab.matrix(port=port, protocol=protocol)
    expected = lab.expected(port=port, protocol=protocol)
    assert m.source == "observed" and not m.simulated
    assert m.pods == expected.pods and sorted(m.pods) == PODS
    assert m.differences() == [], repr(m)
    assert m.count_allowed == 81
    assert expected.count_allowed == 81
    assert m.observed == expected.expected
    for (src, dst), cell in m.results.items():  # the right pod answered every cell
        assert cell.ok and cell.answered_by == dst, (src, dst, cell)
