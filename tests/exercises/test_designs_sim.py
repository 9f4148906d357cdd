"""Every wrong design a learner really writes fails its exercise's check, and every right one
passes (the reference solution and honest alternatives), on the simulated backend; the
feedback names what failed (a selector that matches no pod, a scenario policy removed).
The same designs run on docker in tests/exercises/test_designs_docker.py (a sample of them)."""
from __future__ import annotations

import pytest

import labkit
from labkit import exercises
from labkit.exercises import VISITOR_NAMESPACE, check
from tests.exercises.designs import DESIGNS, build, feedback

CASES = [(ex, d) for ex, designs in DESIGNS.items() for d in designs]


@pytest.fixture(autouse=True)
def no_strict(monkeypatch):
    monkeypatch.delenv("LABKIT_STRICT_CHECKS", raising=False)


@pytest.mark.parametrize("exercise_id, design", CASES, ids=[f"{e}:{d.name}" for e, d in CASES])
def test_the_check_tells_right_from_wrong(exercise_id, design):
    nodes = exercises.exercise(exercise_id).nodes
    with labkit.Lab("designs", backend="sim", nodes=nodes) as lab:
        build(lab, exercise_id, design)
        before = (sorted(lab.pods), sorted(lab.cluster.namespaces), sorted(lab.cluster.policies))
        result = check(exercise_id, lab, answers=design.answers or None)
        after = (sorted(lab.pods), sorted(lab.cluster.namespaces), sorted(lab.cluster.policies))
    assert result.passed is design.right, f"{design.name}: expected {'pass' if design.right else 'fail'}\n{result!r}"
    if design.note:
        assert design.note in feedback(result), f"{design.name}: feedback lacks {design.note!r}\n{result!r}"
    assert after == before, "the check must leave the lab as it found it (its own pods removed)"
    assert not any(n.startswith(VISITOR_NAMESPACE) for n in after[1])


def test_every_exercise_has_wrong_designs_and_a_right_one():
    assert set(DESIGNS) == set(exercises.available())
    for exercise_id, designs in DESIGNS.items():
        assert any(d.right for d in designs) and sum(not d.right for d in designs) >= 3, exercise_id
