"""The machinery of auto-checked exercises: expectations, results, hints, solutions.

Owns how an exercise is judged: by the *behaviour* of the learner's lab (probes through
the public ``Lab`` API, compared with what the exercise expects), never by reading the
learner's YAML. Results are values with a readable ``repr`` and ``_repr_html_`` (✅/❌ per
expectation and progress like ``3/5``); nothing is printed. ``LABKIT_STRICT_CHECKS=1``
turns a failing check into a ``CheckFailed`` (an ``AssertionError``) so CI notices a broken
exercise; ``LABKIT_APPLY_SOLUTIONS=1`` asks notebooks to apply the reference solutions.
"""
from __future__ import annotations

import contextlib
import html
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Mapping

from labkit.errors import LabkitError, NotFound
from labkit.exercises.expect import Context, ExpectationResult, judge_all
from labkit.exercises.visitors import (Visitor, provided_policies, scenario_intact, selector_notes, visiting,
                                      world_intact)

STRICT_ENV = "LABKIT_STRICT_CHECKS"
SOLUTIONS_ENV = "LABKIT_APPLY_SOLUTIONS"


class CheckFailed(LabkitError, AssertionError):
    """A check failed while ``LABKIT_STRICT_CHECKS=1`` (CI): the message is the whole result."""

    def __init__(self, result: "CheckResult"):
        self.result = result
        super().__init__(repr(result))


def strict_checks() -> bool:
    """True when ``LABKIT_STRICT_CHECKS=1``: failing checks raise instead of only reporting."""
    return os.environ.get(STRICT_ENV, "").strip() == "1"


def solutions_requested() -> bool:
    """True when ``LABKIT_APPLY_SOLUTIONS=1``: notebooks apply the reference solutions (CI, teachers)."""
    return os.environ.get(SOLUTIONS_ENV, "").strip() == "1"


@dataclass
class CheckResult:
    """The result of ``check(id, lab)``: one ``ExpectationResult`` per expectation; true when all passed."""

    exercise: str
    title: str
    outcomes: list[ExpectationResult]
    simulated: bool = False
    notes: list[str] = field(default_factory=list)  # the learner's selectors that match nothing

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    @property
    def score(self) -> tuple[int, int]:
        return sum(o.passed for o in self.outcomes), len(self.outcomes)

    @property
    def progress(self) -> str:
        done, total = self.score
        return f"{done}/{total}"

    def __bool__(self) -> bool:
        return self.passed

    def _verdict(self) -> str:
        if self.passed:
            return "all expectations met, well done!"
        return f"{self.progress} expectations met"

    def __repr__(self) -> str:
        where = " (simulated lab)" if self.simulated else ""
        lines = [f"{self.exercise} · {self.title}: {self._verdict()}{where}"]
        for o in self.outcomes:
            lines.append(f"  {'✅' if o.passed else '❌'} {o.text}")
            if not o.passed:
                lines.extend(f"       {line}" for line in o.detail.splitlines())
        lines.extend(f"  note: {n}" for n in self.notes)
        if not self.passed:
            lines.append(f"  (stuck? hint({self.exercise!r}) reveals one hint at a time)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        done, total = self.score
        colour = "#1a7f37" if self.passed else "#9a6700"
        rows = []
        fold = sum(not o.passed for o in self.outcomes) > 4  # many failures: details one click away
        for o in self.outcomes:
            detail = "" if o.passed else (
                f"<div style='color:#57606a;margin-left:1.6em;white-space:pre-wrap'>{html.escape(o.detail)}</div>")
            if detail and fold:
                detail = f"<details style='margin-left:1.6em'><summary><small>what happened</small></summary>{detail}</details>"
            mark = "✅" if o.passed else "❌"
            rows.append(f"<li style='list-style:none'>{mark} {html.escape(o.text)}{detail}</li>")
        notes = "".join(f"<li style='list-style:none'>⚠️ {html.escape(n)}</li>" for n in self.notes)
        width = int(100 * done / total) if total else 0
        sim = " <small>(simulated lab: results come from the oracle)</small>" if self.simulated else ""
        footer = "" if self.passed else (
            f"<div><small>Stuck? <code>hint({html.escape(repr(self.exercise))})</code> reveals one hint at a "
            "time.</small></div>")
        state = "labkit-check-passed" if self.passed else "labkit-check-failed"
        return (f"<div class='labkit-check {state}'><b style='color:{colour}'>{html.escape(self.exercise)} · "
                f"{html.escape(self.title)}: {html.escape(self._verdict())}</b>{sim}"
                f"<div style='background:#eaeef2;width:16em;height:0.6em;margin:4px 0'>"
                f"<div style='background:{colour};width:{width}%;height:100%'></div></div>"
                f"<ul style='padding-left:0.4em'>{''.join(rows)}{notes}</ul>{footer}</div>")


@dataclass(frozen=True)
class Hint:
    """The hints of an exercise revealed so far (``shown`` of them)."""

    exercise: str
    hints: tuple[str, ...]
    shown: int

    @property
    def last(self) -> bool:
        return self.shown >= len(self.hints)

    def __str__(self) -> str:
        return self.hints[self.shown - 1]

    def __repr__(self) -> str:
        lines = [f"Hint {i}/{len(self.hints)}: {text}" for i, text in enumerate(self.hints[:self.shown], 1)]
        lines.append(f"(that was the last hint: solution({self.exercise!r}) shows a reference solution)"
                     if self.last else f"(run hint({self.exercise!r}) again for the next hint)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        items = "".join(f"<li><b>Hint {i}/{len(self.hints)}</b>: {html.escape(t)}</li>"
                        for i, t in enumerate(self.hints[:self.shown], 1))
        more = (f"That was the last hint: <code>solution({html.escape(repr(self.exercise))})</code> shows a "
                "reference solution." if self.last else
                f"Run <code>hint({html.escape(repr(self.exercise))})</code> again for the next hint.")
        return f"<div class='labkit-hint'><ul>{items}</ul><small>{more}</small></div>"


class Solution(str):
    """A reference solution: YAML text (pass it to ``lab.apply``); displays as the YAML itself."""

    exercise: str = ""

    def __new__(cls, text: str, exercise: str) -> "Solution":
        obj = super().__new__(cls, text)
        obj.exercise = exercise
        return obj

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"# reference solution of {self.exercise} (lab.apply(...) it to try)\n{self}")

    def _repr_html_(self) -> str:
        return (f"<div><small>Reference solution of <b>{html.escape(self.exercise)}</b> "
                f"(<code>lab.apply(solution({html.escape(repr(self.exercise))}))</code> applies it)</small>"
                f"<pre>{html.escape(str(self))}</pre></div>")


@dataclass(frozen=True)
class Exercise:
    """An exercise: its world (YAML to apply first), expectations, hints and reference solution."""

    id: str
    title: str
    notebook: str
    world: str
    expectations: tuple[Any, ...]  # labkit.exercises.expect kinds
    hints: tuple[str, ...]
    solution: str  # YAML to apply; for answer exercises, how to find the answers
    lab_name: str = ""
    nodes: int = 1  # the nodes its notebook's lab has
    provided: str = ""  # YAML of the policies the notebook gave before the exercise (must stay)
    keep_world: bool = False  # the task is policies only: the world's pods and Services must stay as they are
    visitors: tuple[Visitor, ...] = ()  # fresh pods the check creates and removes
    visitor_namespace_labels: tuple[tuple[str, str], ...] = (("team", "visitors"),)

    @property
    def answers(self) -> tuple[Any, ...]:
        """The expectations that are questions (``Answer``): the learner passes ``answers=``."""
        return tuple(e for e in self.expectations if hasattr(e, "reference"))


_check_locks: "weakref.WeakKeyDictionary[Any, threading.Lock]" = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _lock_of(lab: Any) -> threading.Lock:
    with _locks_guard:
        try:
            return _check_locks.setdefault(lab, threading.Lock())
        except TypeError:  # an object that cannot be weakly referenced: one lock for it now
            return threading.Lock()


def judge(exercise: Exercise, lab: Any, answers: Mapping[str, Any] | None = None) -> CheckResult:
    """Judge the learner's lab against every expectation of ``exercise``.

    The check first notes the scenario's policies that were removed or changed, then creates
    its fresh pods (``exercise.visitors``), judges each expectation, and removes its pods again.
    One check at a time per lab (a second waits: both would use the same fresh pods), and its
    own short-lived changes do not call the lab's change listeners (a panel does not redraw)."""
    with _lock_of(lab):
        quiet = getattr(lab, "quiet_changes", None)
        with (quiet() if quiet is not None else contextlib.nullcontext()):
            return _judge(exercise, lab, answers)


def _judge(exercise: Exercise, lab: Any, answers: Mapping[str, Any] | None) -> CheckResult:
    provided = provided_policies(exercise.provided)
    notes = selector_notes(lab, set(provided))
    outcomes = []
    intact = scenario_intact(lab, provided)
    world = world_intact(lab, exercise.world) if exercise.keep_world else None
    with visiting(lab, exercise.visitors, dict(exercise.visitor_namespace_labels)) as (refs, trouble):
        if trouble is not None:
            outcomes.append(trouble)
        ctx = Context(lab, refs, dict(answers or {}))
        outcomes += judge_all(exercise.expectations, ctx)
    outcomes += [o for o in (intact, world) if o is not None]
    return CheckResult(exercise.id, exercise.title, outcomes, bool(getattr(lab, "simulated", False)), notes)


def _unknown(exercise_id: object, known: dict[str, Exercise]) -> NotFound:
    close = [k for k in known if isinstance(exercise_id, str) and exercise_id and
             (exercise_id in k or k.split("-", 1)[0] == exercise_id.split("-", 1)[0])]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return NotFound(f"no exercise {exercise_id!r}{hint} (exercises: {', '.join(known)})")
