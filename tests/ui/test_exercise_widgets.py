"""Exercises completed through the widgets alone, in a real JupyterLab and Chromium.

For each notebook with an ``ExerciseView`` cell (05's "Lock down the worker's egress" and
03's "debug a Service"), a private JupyterLab opens a copy of the notebook and runs every
cell above the one after the exercise card (the cells below apply the reference solution
under CI's ``LABKIT_APPLY_SOLUTIONS=1`` and close the lab: the server runs with it off, so
the learner's path is what is tested). Then, with no typing in code cells: Check shows the
starting lab failing; the learner types the solution (read here with
``labkit.exercises.solution(id)``) into the card's YAML editor and clicks Apply; the shown
result is marked out of date; Check turns the result box green
(``labkit-check-passed``), at once or, when a fixed readinessProbe needs its second, at one
of a few more clicks, as a learner would click again. Hint and Show solution answer too. Screenshots go to
``tests/ui/artifacts/`` (gitignored). Teardown (the ``LabServer`` of ``conftest.py``)
closes every lab in the kernel and stops JupyterLab by its PID.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from labkit import exercises

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"  # gitignored
NOTEBOOKS = HERE.parents[1] / "notebooks"
pytestmark = pytest.mark.ui
CHECK_TIMEOUT = 240_000  # ms: a check on docker creates probe pods, and the cells above build the lab
READINESS_RETRIES = 4  # checks after the fix: a fixed readinessProbe passes about a second later

CASES = [("05-network-policies-2.ipynb", "05-worker-egress"), ("03-services.ipynb", "03-debug-service")]


def card_cell(notebook: Path, exercise_id: str) -> tuple[int, int]:
    """(index of the cell that shows the ExerciseView of ``exercise_id``, number of cells)."""
    cells = json.loads(notebook.read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and f'ExerciseView("{exercise_id}"' in "".join(cell["source"]):
            return i, len(cells)
    raise AssertionError(f"{notebook.name} has no cell with ExerciseView({exercise_id!r}, lab, ...)")


@pytest.fixture(scope="module", params=CASES, ids=[c[1] for c in CASES])
def exercise_server(request, tmp_path_factory):
    """A JupyterLab on a copy of the notebook of one exercise, without solutions or strict checks."""
    from tests.ui.conftest import LabServer, require_browser  # noqa: PLC0415

    name, exercise_id = request.param
    if exercise_id not in exercises.available():
        pytest.skip(f"exercise {exercise_id} is not in labkit.exercises.available() yet")
    require_browser()
    root = tmp_path_factory.mktemp(exercise_id)
    shutil.copy(NOTEBOOKS / name, root / name)
    card_cell(root / name, exercise_id)  # fail early, before starting a server, if the card is missing
    server = LabServer(root, root / name, env={"LABKIT_APPLY_SOLUTIONS": "0", "LABKIT_STRICT_CHECKS": "0"})
    server.start()
    try:
        yield server, exercise_id
    finally:
        leftovers = server.stop()
        assert not leftovers, leftovers


def run_through_the_card(page, notebook: Path, exercise_id: str) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    index, count = card_cell(notebook, exercise_id)
    command = "Run All Cells"
    if index < count - 1:  # select the cell after the card, run everything above it
        page.locator(".jp-Notebook .jp-Cell").nth(index + 1).locator(".jp-InputPrompt").first.click()
        command = "Run All Above Selected Cell"
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=command, exact=True).click()
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt")
    failed = page.locator(".jp-Notebook .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                          has_text="Traceback")
    expect(prompt.or_(failed).first).to_have_text(re.compile(r"\[\d+\]|Traceback"), timeout=CHECK_TIMEOUT)
    assert not failed.count(), f"a cell above the exercise card failed:\n{failed.all_inner_texts()}"
    expect(prompt).to_have_text(re.compile(r"\[\d+\]"))  # the card's cell ran


def test_an_exercise_is_solved_through_its_widgets_alone(page, exercise_server):
    from playwright.sync_api import expect  # noqa: PLC0415

    server, exercise_id = exercise_server
    page.goto(server.url(server.notebook.name))
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator", timeout=90_000)
    server.wait_for_kernel(page)
    run_through_the_card(page, server.notebook, exercise_id)

    card = page.locator(".labkit-exercise", has_text=exercise_id).first
    expect(card).to_be_visible(timeout=60_000)
    expect(card.locator(".labkit-exercise-task")).to_contain_text(exercises.exercise(exercise_id).title)
    result = card.locator(".labkit-check-result")

    # where the learner starts: the check runs (the box says so) and fails
    card.locator(".labkit-check-button").click()
    expect(result).to_have_class(re.compile(r"\blabkit-check-(running|failed)\b"), timeout=30_000)
    expect(result).to_contain_text("check 1 at", timeout=CHECK_TIMEOUT)
    expect(result).to_have_class(re.compile(r"\blabkit-check-failed\b"))
    expect(result).to_contain_text("❌")
    expect(card.locator(".labkit-check-button")).to_be_enabled()

    # one hint, and the solution shown as text (not applied)
    card.locator(".labkit-hint-button").click()
    expect(card.locator(".labkit-exercise-hints")).to_contain_text("Hint 1/")
    card.locator(".labkit-solution-button").click()
    expect(card.locator(".labkit-solution")).to_contain_text("not applied")

    # the learner's action: type the solution into the card's YAML editor and click Apply
    textarea = card.locator(".labkit-yaml textarea")
    expect(textarea).to_be_visible()
    textarea.fill(str(exercises.solution(exercise_id)))
    card.locator(".labkit-apply").click()
    expect(card.locator(".labkit-validation")).to_contain_text("applied", timeout=60_000)
    expect(card.locator(".labkit-validation")).not_to_contain_text("not applied")
    expect(result).to_have_class(re.compile(r"\blabkit-check-stale\b"), timeout=30_000)

    # Check again: green. Like a learner, check once more if a readiness probe needed a moment
    for n in range(2, 2 + READINESS_RETRIES):
        card.locator(".labkit-check-button").click()
        expect(result).to_contain_text(f"check {n} at", timeout=CHECK_TIMEOUT)
        if "labkit-check-passed" in (result.get_attribute("class") or "").split():
            break
        page.wait_for_timeout(2_000)
    expect(result).to_have_class(re.compile(r"\blabkit-check-passed\b"))
    expect(result).to_contain_text("all expectations met")
    expect(result).not_to_contain_text("❌")
    expect(card.locator(".labkit-error")).to_have_text("")
    colour = result.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(218, 251, 225)", f"the passed result box should be green, not {colour}"
    card.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / f"exercise-{exercise_id}-passed.png"))
