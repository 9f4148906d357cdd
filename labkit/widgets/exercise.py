"""``ExerciseView``: an exercise done with the mouse — its task, Check, Hint, Show solution.

Owns the exercise card of a notebook: the title and what must hold, an optional editor
(the policy, Service or plain YAML editor) to change the lab without code, one text field
per answer of a question exercise (``answer_fields``), a Check button
that runs ``labkit.exercises.check(id, lab, strict=False)`` and shows the result (CSS
classes ``labkit-check-passed`` / ``labkit-check-failed`` on the result box), hints one at
a time, and the reference solution as text (never applied by the view). A check probes the
lab and may take seconds on docker: with a running asyncio loop (a Jupyter kernel) it runs
in a worker thread, the box says "checking..." meanwhile and the kernel stays free; without
one (scripts, unit tests) it runs at once. Errors go to the view's ``ErrorArea``.

    >>> from labkit.widgets import ExerciseView                          # doctest: +SKIP
    >>> ExerciseView("05-worker-egress", lab, editor="policy")           # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import html
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ipywidgets as W

from labkit import exercises
from labkit.errors import LabkitError
from labkit.widgets.common import ErrorArea, css_widget, guard, pre, running_loop, set_classes

EDITORS = ("policy", "service", "yaml")
STYLE = """<style>
.labkit-check-result { padding: 4px 8px; border-radius: 4px; margin: 4px 0; }
.labkit-check-result.labkit-check-passed { background: #dafbe1; border: 1px solid #4ac26b; }
.labkit-check-result.labkit-check-failed { background: #fff8c5; border: 1px solid #d4a72c; }
.labkit-check-result.labkit-check-running { background: #f6f8fa; border: 1px dashed #8c959f; }
.labkit-check-result.labkit-check-stale { opacity: 0.6; }
.labkit-solution pre, .labkit-exercise-hints { white-space: pre-wrap; }
</style>"""


def _task_html(ex: Any) -> str:
    """The exercise's title and what must hold, from its expectations' sentences."""
    items = [getattr(e, "text", "") for e in getattr(ex, "expectations", ())]
    task = getattr(ex, "task", "")
    body = f"<div>{html.escape(task)}</div>" if task else ""
    if any(items):
        body += ("<div>When you click <b>Check</b>, your lab must pass all of these:</div><ul>"
                 + "".join(f"<li>{html.escape(t)}</li>" for t in items if t) + "</ul>")
    return f"<div><b>Exercise · {html.escape(ex.title)}</b> <small>({html.escape(ex.id)})</small></div>{body}"


class ExerciseView(W.VBox):
    """An exercise card: ``task`` (HTML), ``editor`` (or None), ``check_button``
    (``labkit-check-button``), ``hint_button`` (``labkit-hint-button``), ``solution_button``
    (``labkit-solution-button``), ``result_box`` (``labkit-check-result`` plus
    ``labkit-check-passed`` | ``-failed`` | ``-running``, and ``-stale`` once the editor changed
    the lab after a check), ``hint_area`` (``labkit-exercise-hints``), ``solution_area``
    (``labkit-solution``), ``errors`` (``ErrorArea``).

    Args:
        exercise_id: an id of ``labkit.exercises.available()``.
        lab: the learner's ``labkit.Lab``.
        editor: ``"policy"`` (a ``PolicyEditor``), ``"service"`` (a ``ServiceEditor``),
            ``"yaml"`` (a bare ``YamlEditor``), any widget to show, or None.

    ``result`` is the last ``CheckResult`` (None before the first check), ``hints_shown``
    how many hints are revealed, ``checking`` whether a check is running; ``wait()`` is a
    coroutine that ends when the running check has been shown.
    """

    _task: asyncio.Task | None = None  # class defaults: close() works even if __init__ failed
    _executor: ThreadPoolExecutor | None = None

    def __init__(self, exercise_id: str, lab: Any, *, editor: Any = None, errors: ErrorArea | None = None):
        self.exercise = exercises.exercise(exercise_id)  # NotFound lists the known ids
        if not all(hasattr(lab, name) for name in ("probe", "apply")):
            raise LabkitError(f"ExerciseView({exercise_id!r}, lab): the second argument must be your labkit.Lab, "
                              f"not {type(lab).__name__}")
        self.lab = lab
        own_errors = errors is None
        self.errors = errors if errors is not None else ErrorArea(lab)
        self.result: Any = None
        self.hints_shown = 0
        self.checks = 0
        self.task = W.HTML(_task_html(self.exercise))
        set_classes(self.task, "labkit-exercise-task")
        self.editor = self._editor(editor)
        # a question exercise (02-no-nat, 03-dns-names): one text field per answer
        self.answer_fields = {a.key: W.Text(description=a.key, placeholder=a.text,
                                            layout=W.Layout(width="38em"), style={"description_width": "16em"})
                              for a in self.exercise.answers}
        for key, field in self.answer_fields.items():
            set_classes(field, "labkit-answer", f"labkit-answer-{key}")
        self.check_button = W.Button(description="Check", icon="check", button_style="success",
                                     tooltip=f'check("{exercise_id}", lab): probe the lab, judge each expectation')
        set_classes(self.check_button, "labkit-check-button")
        self.hint_button = W.Button(description="Hint", icon="lightbulb-o", tooltip="reveal one more hint")
        set_classes(self.hint_button, "labkit-hint-button")
        self.solution_button = W.Button(description="Show solution", icon="eye",
                                        tooltip="show the reference solution (it is not applied)")
        set_classes(self.solution_button, "labkit-solution-button")
        self.result_box = W.HTML()
        set_classes(self.result_box, "labkit-check-result")
        self.result_box.layout.display = "none"
        self.hint_area = W.HTML()
        set_classes(self.hint_area, "labkit-exercise-hints")
        self.solution_area = W.HTML(layout=W.Layout(display="none"))
        set_classes(self.solution_area, "labkit-solution")
        self.check_button.on_click(guard(lambda _b: self.start_check(), self.errors, "checking the exercise"))
        self.hint_button.on_click(guard(lambda _b: self.next_hint(), self.errors, "showing a hint"))
        self.solution_button.on_click(guard(lambda _b: self.toggle_solution(), self.errors, "showing the solution"))
        buttons = W.HBox([self.check_button, self.hint_button, self.solution_button])
        children = [css_widget(), W.HTML(STYLE, layout=W.Layout(display="none")), self.task]
        if self.editor is not None:
            children.append(self.editor)
        children += list(self.answer_fields.values())
        children += [buttons, self.result_box, self.hint_area, self.solution_area]
        super().__init__(children + ([self.errors] if own_errors else []))
        set_classes(self, "labkit-exercise")

    # ------------------------------------------------------------ parts
    def _editor(self, editor: Any) -> Any:
        if editor is None or isinstance(editor, W.Widget):
            chosen = editor
        elif editor == "policy":
            from labkit.widgets.policy import PolicyEditor  # noqa: PLC0415
            chosen = PolicyEditor(self.lab, errors=self.errors)
        elif editor == "service":
            from labkit.widgets.service import ServiceEditor  # noqa: PLC0415
            chosen = ServiceEditor(self.lab, errors=self.errors)
        elif editor == "yaml":
            from labkit.widgets.yaml_editor import YamlEditor  # noqa: PLC0415
            chosen = YamlEditor(self.lab, errors=self.errors, on_apply=lambda _c: self._lab_changed())
        else:
            raise LabkitError(f"ExerciseView(..., editor={editor!r}): choose one of {', '.join(map(repr, EDITORS))}, "
                              "a widget, or None")
        if chosen is not None and hasattr(chosen, "on_change"):  # PolicyEditor / ServiceEditor
            before = chosen.on_change

            def changed() -> None:
                self._lab_changed()
                if before is not None:
                    before()

            chosen.on_change = changed
        return chosen

    # ------------------------------------------------------------ check
    @property
    def checking(self) -> bool:
        return self._task is not None and not self._task.done()

    def check(self) -> Any:
        """Check now, synchronously (blocking); shows and returns the ``CheckResult``."""
        self._show_running()
        try:
            result, seconds = self._run_check()
        except BaseException:
            self._show_idle()
            raise
        self._show(result, seconds)
        return result

    def start_check(self) -> None:
        """What the Check button does: in a worker thread when a loop runs (returns at once), else now."""
        if self.checking:
            return
        loop = running_loop()
        if loop is None:
            self.check()
            return
        self._show_running()
        self._task = loop.create_task(self._check_in_thread(), name=f"labkit-check-{self.exercise.id}")

    async def wait(self) -> None:
        """Until the running check (if any) has been shown."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _check_in_thread(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labkit-check")
        try:
            result, seconds = await asyncio.get_running_loop().run_in_executor(self._executor, self._run_check)
        except asyncio.CancelledError:
            self._show_idle()
            raise
        except Exception as exc:  # shown, never lost
            self._show_idle()
            self.errors.report(exc, "checking the exercise")
            return
        self._show(result, seconds)

    @property
    def answers(self) -> dict[str, str]:
        """What the learner typed into the answer fields (empty ones left out)."""
        return {k: f.value.strip() for k, f in self.answer_fields.items() if f.value.strip()}

    def _run_check(self) -> tuple[Any, float]:
        started = time.monotonic()
        answers = self.answers if self.answer_fields else None
        result = exercises.check(self.exercise.id, self.lab, strict=False, answers=answers)
        return result, time.monotonic() - started

    def _show_running(self) -> None:
        self.check_button.disabled = True
        self.check_button.description = "checking..."
        self.result_box.layout.display = None
        self.result_box.value = ("<div><b>checking...</b> <small>probing your lab from the exercise's test pods; "
                                 "this can take a few seconds</small></div>")
        set_classes(self.result_box, "labkit-check-result", "labkit-check-running")

    def _show_idle(self) -> None:
        self.check_button.disabled = False
        self.check_button.description = "Check"
        if self.result is None:
            self.result_box.value = ""
            self.result_box.layout.display = "none"
            set_classes(self.result_box, "labkit-check-result")
        else:
            self._show(self.result, None)

    def _show(self, result: Any, seconds: float | None) -> None:
        self.result = result
        if seconds is not None:
            self.checks += 1
        self.check_button.disabled = False
        self.check_button.description = "Check again"
        took = f", in {seconds:.1f} s" if seconds is not None else ""
        when = f"check {self.checks} at {time.strftime('%H:%M:%S')}{took}"
        self.result_box.value = f"{result._repr_html_()}<div><small>{when}</small></div>"
        self.result_box.layout.display = None
        set_classes(self.result_box, "labkit-check-result",
                    "labkit-check-passed" if result.passed else "labkit-check-failed")

    def _lab_changed(self) -> None:
        """The editor changed the lab: the shown result is out of date until the next check."""
        if self.result is None or self.checking:
            return
        set_classes(self.result_box, *self.result_box._dom_classes, "labkit-check-stale")
        if "labkit-check-stale-note" not in self.result_box.value:
            self.result_box.value = ("<div class='labkit-check-stale-note'><small><b>The lab changed since this check: "
                                     "click Check again.</b></small></div>" + self.result_box.value)

    # ------------------------------------------------------------ hints and solution
    def next_hint(self) -> Any:
        """Reveal one more hint (all revealed ones stay shown); returns the ``Hint``."""
        total = len(self.exercise.hints)
        self.hints_shown = min(total, self.hints_shown + 1)
        hint = exercises.hint(self.exercise.id, self.hints_shown)
        items = "".join(f"<li><b>Hint {i}/{total}</b>: {html.escape(text)}</li>"
                        for i, text in enumerate(hint.hints[:hint.shown], 1))
        more = ("That was the last hint: <b>Show solution</b> shows a reference solution." if hint.last
                else "Click <b>Hint</b> again for the next one.")
        self.hint_area.value = f"<div class='labkit-hint'><ul>{items}</ul><small>{more}</small></div>"
        if hint.last:
            self.hint_button.disabled = True
            self.hint_button.description = "No more hints"
        return hint

    def toggle_solution(self) -> bool:
        """Show the reference solution (not applied), or hide it again; returns True when shown."""
        showing = self.solution_area.layout.display == "none"
        if showing:
            where = ("copy it into the editor above and click Apply" if self.editor is not None
                     else f"lab.apply(solution({self.exercise.id!r})) applies it")
            text = exercises.solution(self.exercise.id)
            self.solution_area.value = (f"<div><small>A reference solution of <b>{html.escape(self.exercise.id)}</b>: "
                                        f"<b>not applied</b>; to try it, {html.escape(where)}.</small>"
                                        f"{pre(str(text))}</div>")
        self.solution_area.layout.display = None if showing else "none"
        self.solution_button.description = "Hide solution" if showing else "Show solution"
        return showing

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if getattr(self, "editor", None) is not None:
            self.editor.close()
        super().close()

    def __repr__(self) -> str:
        state = ("checking..." if self.checking else "not checked yet" if self.result is None
                 else f"{'passed' if self.result.passed else 'not passed yet'} ({self.result.progress})")
        return f"ExerciseView({self.exercise.id!r}: {state}, {self.hints_shown}/{len(self.exercise.hints)} hints shown)"
