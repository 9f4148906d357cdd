"""Wrong designs found by attacking the checks (a reviewer who read the check's code and tried to
pass with a wrong design): each YAML in attacks/ is applied after the exercise's world and the
policies its notebook gave, and the check must fail. Names say the exercise and the trick:
port numbers instead of named ports, the whole internet on 443, a frontend open on every port, a
sidecar that only sleeps, DNS to anywhere (or to all of kube-system), a readiness probe that always succeeds, a sandbox that also locks egress, a scenario policy
undone by a new one, the check's own namespace excluded by name, an app moved instead of the
Service fixed, a Deployment relabelled, a policy for the pods one can see."""
from __future__ import annotations

from pathlib import Path

import pytest

import labkit
from labkit import exercises
from labkit.exercises import check
from tests.exercises.designs import EXTRA_WORLD

ATTACKS = sorted((Path(__file__).parent / "attacks").glob("*.yaml"))


def exercise_of(path: Path) -> str:
    number = path.stem.split("-")[1]  # F3-06-... -> 06
    matches = [e for e in exercises.available() if e.startswith(number + "-")]
    named = [e for e in matches if e in path.read_text().splitlines()[0]]
    return (named or matches)[0]


@pytest.fixture(autouse=True)
def no_strict(monkeypatch):
    monkeypatch.delenv("LABKIT_STRICT_CHECKS", raising=False)


@pytest.mark.parametrize("path", ATTACKS, ids=[p.stem for p in ATTACKS])
def test_the_attack_fails_the_check(path):
    exercise_id = exercise_of(path)
    with labkit.Lab("attacks", backend="sim", nodes=exercises.exercise(exercise_id).nodes) as lab:
        lab.apply(exercises.world(exercise_id))
        if exercise_id in EXTRA_WORLD:
            lab.apply(EXTRA_WORLD[exercise_id])
        if exercises.provided(exercise_id):
            lab.apply(exercises.provided(exercise_id))
        lab.apply(path.read_text())
        result = check(exercise_id, lab)
    assert not result.passed, f"{path.stem} passes {exercise_id}:\n{result!r}"


def test_there_are_attacks_on_every_exercise_that_builds_something():
    attacked = {exercise_of(p) for p in ATTACKS}
    assert {"01-sidecar", "03-debug-service", "04-dev-sandbox", "05-worker-egress", "06-three-tier"} <= attacked
