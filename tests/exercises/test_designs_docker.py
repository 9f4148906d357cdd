"""The checks tell right from wrong on real packets too: for each exercise that builds something,
a lab on the docker backend goes through a sample of the wrong designs of designs.py (the
families the sim suite covers in full: fencing in the attacker, too-wide peers and ports, a
typo, a deleted scenario policy, a selector widened) and the reference solution, resetting
between designs. Every wrong one fails, the right one passes, and the check's own pods are
gone afterwards (checked with the docker CLI, not through labkit)."""
from __future__ import annotations

import pytest

import labkit
from labkit import exercises
from labkit.exercises import VISITOR_NAMESPACE, check
from tests.exercises.designs import DESIGNS, build, feedback, reset
from tests.integration.helpers import POD_LABEL, lab_containers

pytestmark = pytest.mark.docker

SAMPLE = {
    "01-sidecar": ["two pods instead of one", "the reference solution"],
    "03-debug-service": ["selectors widened to every backend", "readiness probe removed instead of fixed",
                         "the reference solution"],
    "04-dev-sandbox": ["fence in the attackers (egress jails on shop and grafana)", "a typo in a selector",
                       "too-wide peers: any namespace's prometheus", "the reference solution"],
    "05-worker-egress": ["too-wide peers: 443 to anywhere", "deleting the scenario's api-from-web instead of adding "
                         "api-from-worker", "too-wide ports: the storage host on every port", "the reference solution"],
    "06-three-tier": ["fence in the attackers (the intruder, the db's and the frontend's egress)",
                      "too-wide ports: frontend to backend on every port", "the reference solution"],
}


@pytest.mark.parametrize("exercise_id", list(SAMPLE))
def test_wrong_designs_fail_and_the_solution_passes_on_docker(exercise_id):
    designs = {d.name: d for d in DESIGNS[exercise_id]}
    name = f"designs-{exercise_id[:2]}"
    with labkit.Lab(name, backend="docker", nodes=exercises.exercise(exercise_id).nodes) as lab:
        build(lab, exercise_id, designs["nothing"] if "nothing" in designs else designs["no policy at all"])
        for design_name in SAMPLE[exercise_id]:
            design = designs[design_name]
            reset(lab, exercise_id)
            build(lab, exercise_id, design)
            if exercise_id == "03-debug-service":
                _wait_for_search(lab)
            result = check(exercise_id, lab)
            assert result.passed is design.right, f"{design.name} on docker:\n{result!r}"
            if design.note:
                assert design.note in feedback(result)
            assert not result.simulated
            leftovers = [c.labels.get(POD_LABEL) for c in lab_containers(name)
                         if (c.labels.get(POD_LABEL) or "").split("/")[-1].startswith("check-")]
            assert not leftovers and not any(n.startswith(VISITOR_NAMESPACE) for n in lab.cluster.namespaces)


def _wait_for_search(lab) -> None:
    """Readiness is probed once a second: give a fixed probe up to 10 s to make the search pods ready
    (a design that leaves them unready just waits the 10 s and is judged as it is)."""
    import time  # noqa: PLC0415
    for _ in range(20):
        endpoints = lab.endpoints("store/search")
        if endpoints and all(e.ready for e in endpoints):
            return
        time.sleep(0.5)
