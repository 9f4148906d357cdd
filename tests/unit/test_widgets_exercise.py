"""``ExerciseView`` without a browser: the task, Check (failed, then passed after the learner
applies the solution through the view's editor), "checking..." while a check runs in a
thread, hints one at a time, the solution shown but never applied, errors in the error area.

The world is exercise 05-worker-egress's own (its pods and the policies the notebook gives
before it), on the sim backend.
"""
from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("ipywidgets")

import labkit  # noqa: E402
from labkit import exercises  # noqa: E402
from labkit.errors import LabkitError, NotFound  # noqa: E402
from labkit.widgets import ExerciseView, PolicyEditor, ServiceEditor, YamlEditor  # noqa: E402

EX = "05-worker-egress"


@pytest.fixture
def lab():
    with labkit.Lab("w-exercise", backend="sim") as lab:
        lab.apply(exercises.world(EX))
        lab.apply(exercises.provided(EX))  # the policies notebook 05 gives before the exercise
        yield lab


@pytest.fixture
def view(lab):
    view = ExerciseView(EX, lab, editor="policy")
    yield view
    view.close()


def classes(widget) -> set[str]:
    return set(widget._dom_classes)


def test_the_card_shows_the_title_and_every_expectation(view):
    ex = exercises.exercise(EX)
    assert "labkit-exercise" in classes(view)
    assert ex.title.replace("'", "&#x27;") in view.task.value
    for expectation in ex.expectations:
        assert expectation.text.replace("'", "&#x27;") in view.task.value
    assert isinstance(view.editor, PolicyEditor)
    assert "labkit-check-button" in classes(view.check_button)
    assert view.result is None and view.result_box.layout.display == "none"
    assert repr(view) == f"ExerciseView('{EX}': not checked yet, 0/{len(ex.hints)} hints shown)"


def test_an_unknown_exercise_or_editor_is_refused_with_the_choices(lab):
    with pytest.raises(NotFound, match="05-worker-egress"):
        ExerciseView("05-worker-egres", lab)
    with pytest.raises(LabkitError, match="'policy', 'service', 'yaml'"):
        ExerciseView(EX, lab, editor="polcy")
    with pytest.raises(LabkitError, match="must be your labkit.Lab"):
        ExerciseView(EX, "lab")


def test_check_fails_then_passes_after_the_solution_is_applied_in_the_editor(view, lab):
    view.check_button.click()
    assert view.result is not None and not view.result.passed
    assert {"labkit-check-result", "labkit-check-failed"} <= classes(view.result_box)
    assert "labkit-check-passed" not in classes(view.result_box)
    assert view.result.progress in view.result_box.value and "❌" in view.result_box.value
    assert view.check_button.description == "Check again" and not view.check_button.disabled

    before = set(lab.cluster.policies)
    view.editor.editor.text.value = str(exercises.solution(EX))
    view.editor.editor.apply_button.click()
    assert {"shop/worker-egress", "shop/api-from-worker"} <= set(lab.cluster.policies) - before
    assert "labkit-check-stale" in classes(view.result_box)  # the shown result is out of date
    assert "click Check again" in view.result_box.value

    view.check_button.click()
    assert view.result.passed
    assert classes(view.result_box) == {"labkit-check-result", "labkit-check-passed"}
    assert "all expectations met" in view.result_box.value and "❌" not in view.result_box.value
    assert view.checks == 2 and view.errors.messages == []
    assert f"passed ({view.result.progress})" in repr(view) and view.result.progress.split("/")[0] != "0"


def test_with_a_running_loop_the_check_runs_in_a_thread_and_says_checking(view):
    seen = {}

    async def click_and_wait():
        view.check_button.click()  # returns at once: the check runs in a worker thread
        seen["running"] = (view.checking, view.check_button.disabled, classes(view.result_box),
                           view.result_box.value)
        view.check_button.click()  # a second click while checking starts nothing
        await view.wait()

    asyncio.run(click_and_wait())
    checking, disabled, box_classes, text = seen["running"]
    assert checking and disabled and "labkit-check-running" in box_classes and "checking..." in text
    assert not view.checking and not view.check_button.disabled
    assert view.checks == 1 and "labkit-check-failed" in classes(view.result_box)


class _BrokenLab:
    """A lab whose probes fail with an unexpected error (an engine that went away)."""

    name, simulated = "broken", True

    def probe(self, *args, **kwargs):
        raise RuntimeError("the engine went away")

    explain = apply = probe
    cluster = property(probe)


def test_an_error_during_a_threaded_check_goes_to_the_error_area_and_check_stays_usable():
    view = ExerciseView(EX, _BrokenLab())

    async def click_and_wait():
        view.check_button.click()
        await view.wait()

    asyncio.run(click_and_wait())
    assert view.errors.messages and "the engine went away" in view.errors.messages[0]
    assert view.errors.messages[0].startswith("checking the exercise")
    assert view.result is None and view.result_box.layout.display == "none"
    assert not view.check_button.disabled and view.check_button.description == "Check"
    view.close()


def test_hints_come_one_at_a_time_until_the_last(view):
    hints = exercises.exercise(EX).hints
    view.hint_button.click()
    assert view.hints_shown == 1 and "Hint 1/" in view.hint_area.value and "Hint 2/" not in view.hint_area.value
    for _ in range(len(hints) + 2):
        view.hint_button.click()
    assert view.hints_shown == len(hints) and f"Hint {len(hints)}/{len(hints)}" in view.hint_area.value
    assert view.hint_button.disabled and "last hint" in view.hint_area.value


def test_the_solution_is_shown_and_hidden_but_never_applied(view, lab):
    history = list(lab.history)
    view.solution_button.click()
    assert view.solution_area.layout.display is None and "not applied" in view.solution_area.value
    assert "api-from-worker" in view.solution_area.value and view.solution_button.description == "Hide solution"
    assert list(lab.history) == history
    view.solution_button.click()
    assert view.solution_area.layout.display == "none" and view.solution_button.description == "Show solution"


def test_the_service_and_yaml_editors_are_available_and_mark_results_stale(lab):
    service_view = ExerciseView(EX, lab, editor="service")
    assert isinstance(service_view.editor, ServiceEditor)
    service_view.close()
    view = ExerciseView(EX, lab, editor="yaml")
    assert isinstance(view.editor, YamlEditor)
    view.check()
    view.editor.text.value = str(exercises.solution(EX))
    view.editor.apply_button.click()
    assert "labkit-check-stale" in classes(view.result_box)
    assert view.check().passed and "labkit-check-passed" in classes(view.result_box)
    view.close()


def test_a_question_exercise_has_one_field_per_answer_and_checks_what_was_typed():
    with labkit.Lab("ex-view-q", backend="sim", nodes=2) as lab:
        lab.apply(exercises.world("02-no-nat"))
        card = ExerciseView("02-no-nat", lab)
        try:
            assert sorted(card.answer_fields) == ["b1_next_hop", "node_2_sends_a2_range_to", "source_seen_by_a2"]
            first = card.check()
            assert not first.passed and all("no answer yet" in o.detail for o in first.outcomes)
            right = exercises.reference_answers("02-no-nat", lab)
            card.answer_fields["source_seen_by_a2"].value = "198.18.0.2"  # node-2: the NAT guess
            card.answer_fields["b1_next_hop"].value = right["b1_next_hop"]
            card.answer_fields["node_2_sends_a2_range_to"].value = f" {right['node_2_sends_a2_range_to']} "
            second = card.check()
            assert second.progress == "2/3" and "node-2's address" in repr(second)
            card.answer_fields["source_seen_by_a2"].value = right["source_seen_by_a2"]
            assert card.check().passed and "labkit-check-passed" in card.result_box._dom_classes
        finally:
            card.close()
