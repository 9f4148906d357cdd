"""Auto-checked exercises for the labkit notebooks: ``check``, ``hint``, ``solution``.

    >>> from labkit.exercises import check, hint, solution     # doctest: +SKIP
    >>> check("06-three-tier", lab)        # ✅/❌ per expectation, progress like 4/9
    >>> hint("06-three-tier")              # the next hint, one more each time
    >>> solution("06-three-tier")          # the reference solution as YAML (not applied)
    >>> check("02-no-nat", lab, answers={"source_seen_by_b1": "10.244.1.2", ...})  # questions

A check judges the property the task states, from the target's side: besides the scenario's
pods it creates fresh pods of its own (``@name`` in the expectations: a new pod of each
namespace involved and of a new namespace ``check-visitors``), probes on every port the
targets serve, both what must connect and what must not, and removes its pods again. It fails
when a policy the scenario gave was removed or changed, and notes the learner's selectors
that match no pod.

It judges what the learner's lab *does* (probes through ``Lab.probe``, the oracle's
``Lab.explain`` for the reasons), never the YAML the learner wrote. It returns a
``CheckResult`` and never raises for a wrong answer, except when ``LABKIT_STRICT_CHECKS=1``
(CI): then a failing check raises ``CheckFailed``, an ``AssertionError``. Notebooks apply
the reference solutions when ``solutions_requested()`` (``LABKIT_APPLY_SOLUTIONS=1``), so CI
proves that every exercise can be solved on every backend.
"""
from __future__ import annotations

from typing import Any, Mapping

from labkit.errors import LabkitError
from labkit.exercises.catalog import EXERCISES
from labkit.exercises.core import (SOLUTIONS_ENV, STRICT_ENV, CheckFailed, CheckResult, Exercise, Hint, Solution,
                                   _unknown, judge, solutions_requested, strict_checks)
from labkit.exercises.expect import ExpectationResult, Reach
from labkit.exercises.visitors import VISITOR_NAMESPACE, Visitor

__all__ = ["CheckFailed", "CheckResult", "Exercise", "ExpectationResult", "Hint", "Reach", "SOLUTIONS_ENV",
           "STRICT_ENV", "Solution", "VISITOR_NAMESPACE", "Visitor", "available", "check", "exercise", "hint",
           "provided", "reference_answers", "reset_hints", "solution", "solutions_requested", "strict_checks",
           "world"]

_revealed: dict[str, int] = {}


def exercise(exercise_id: str) -> Exercise:
    """The exercise called ``exercise_id`` (``NotFound`` lists the known ids)."""
    try:
        return EXERCISES[exercise_id]
    except (KeyError, TypeError) as exc:
        raise _unknown(exercise_id, EXERCISES) from exc


def available() -> dict[str, str]:
    """Every exercise id and its title, in course order."""
    return {k: e.title for k, e in EXERCISES.items()}


def world(exercise_id: str) -> str:
    """The YAML of the objects the exercise starts from (its notebook applies the same text)."""
    return exercise(exercise_id).world


def provided(exercise_id: str) -> str:
    """The YAML of the policies the notebook gave before the exercise (the check wants them unchanged)."""
    return exercise(exercise_id).provided


def check(exercise_id: str, lab: Any, *, strict: bool | None = None,
          answers: Mapping[str, Any] | None = None) -> CheckResult:
    """Probe ``lab`` and report, per expectation of the exercise, whether it holds.

    ``answers`` holds the learner's answers of a question exercise (``exercise(id).answers``
    lists the keys). ``strict=None`` follows ``LABKIT_STRICT_CHECKS``; ``strict=True`` raises
    ``CheckFailed`` when an expectation fails; ``strict=False`` never raises."""
    ex = exercise(exercise_id)
    if not all(hasattr(lab, name) for name in ("probe", "explain", "cluster")):
        raise LabkitError(f"check({exercise_id!r}, lab): the second argument must be your labkit.Lab, "
                          f"not {type(lab).__name__}")
    if answers is not None and not isinstance(answers, Mapping):
        raise LabkitError(f"check({exercise_id!r}, lab, answers=...): give a dict like "
                          f"{{{', '.join(repr(a.key) + ': ...' for a in ex.answers)}}}")
    result = judge(ex, lab, answers)
    if (strict_checks() if strict is None else strict) and not result.passed:
        raise CheckFailed(result)
    return result


def hint(exercise_id: str, number: int | None = None) -> Hint:
    """Reveal the next hint of an exercise (all hints so far are shown), or hint ``number`` (from 1)."""
    ex = exercise(exercise_id)
    total = len(ex.hints)
    if number is None:
        shown = min(total, _revealed.get(exercise_id, 0) + 1)
    else:
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= total:
            raise _bad_hint(exercise_id, number, total)
        shown = number
    _revealed[exercise_id] = max(shown, _revealed.get(exercise_id, 0))
    return Hint(exercise_id, ex.hints, shown)


def reset_hints(exercise_id: str | None = None) -> None:
    """Hide the hints again (of one exercise, or of all)."""
    if exercise_id is None:
        _revealed.clear()
    else:
        exercise(exercise_id)
        _revealed.pop(exercise_id, None)


def solution(exercise_id: str) -> Solution:
    """The reference solution as YAML text; ``lab.apply(solution(id))`` applies it."""
    ex = exercise(exercise_id)
    return Solution(ex.solution, ex.id)


def reference_answers(exercise_id: str, lab: Any) -> dict[str, Any]:
    """The right answers of a question exercise for this lab (teachers and CI; learners find them)."""
    return {a.key: a.reference(lab) for a in exercise(exercise_id).answers}


def _bad_hint(exercise_id: str, number: object, total: int) -> Exception:
    from labkit.errors import ModelError  # noqa: PLC0415
    return ModelError(f"hint({exercise_id!r}, {number!r}): choose a hint number from 1 to {total}")
