"""Exercises: checks judge behaviour (fail on a fresh lab, pass with the solution), hints
progress, strict mode raises, and each exercise's world is the one its notebook applies."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

import labkit
from labkit import LabkitError, ModelError, NotFound
from labkit import exercises
from labkit.exercises import CheckFailed, CheckResult, check, hint, solution

ROOT = Path(__file__).resolve().parents[2]
IDS = list(exercises.available())
APPLIED = [i for i in IDS if not exercises.exercise(i).answers]  # solutions are YAML to apply
POLICY_IDS = [i for i in APPLIED if "kind: NetworkPolicy" in exercises.solution(i)]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("LABKIT_STRICT_CHECKS", raising=False)
    monkeypatch.delenv("LABKIT_APPLY_SOLUTIONS", raising=False)
    exercises.reset_hints()
    yield
    exercises.reset_hints()


@pytest.fixture
def fresh():
    def make(exercise_id: str) -> labkit.Lab:
        lab = labkit.Lab("ex-unit", backend="sim", nodes=exercises.exercise(exercise_id).nodes)
        lab.apply(exercises.world(exercise_id))
        if exercises.provided(exercise_id):
            lab.apply(exercises.provided(exercise_id))
        return lab
    labs = []
    yield lambda exercise_id: labs.append(make(exercise_id)) or labs[-1]
    for lab in labs:
        lab.close()


def test_every_notebook_from_01_on_has_a_checked_exercise_in_course_order():
    assert IDS == ["01-sidecar", "02-no-nat", "03-debug-service", "03-dns-names", "04-dev-sandbox",
                   "05-worker-egress", "06-three-tier"]
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb") if not p.name.startswith("00-"))
    assert sorted({exercises.exercise(i).notebook for i in IDS}) == notebooks
    assert all(isinstance(title, str) and title for title in exercises.available().values())


# ------------------------------------------------------------------ checking behaviour
@pytest.mark.parametrize("exercise_id", APPLIED)
def test_a_fresh_lab_fails_and_the_solution_passes(fresh, exercise_id):
    lab = fresh(exercise_id)
    before = check(exercise_id, lab)
    assert isinstance(before, CheckResult) and not before.passed and not before
    done, total = before.score
    assert done < total
    if exercise_id in POLICY_IDS:
        assert 0 < done, "a fresh lab meets the 'still works' expectations"
    assert before.progress == f"{done}/{total}"
    changes = lab.apply(solution(exercise_id))
    assert changes
    if exercise_id in POLICY_IDS:
        assert all("networkpolicy/" in str(c) for c in changes)
    after = check(exercise_id, lab)
    assert after.passed and bool(after) and after.score == (total, total)


@pytest.mark.parametrize("exercise_id", POLICY_IDS)
def test_checks_judge_behaviour_not_yaml(fresh, exercise_id):
    """Opening everything up again (a policy that allows all) makes the 'must be blocked' lines fail."""
    lab = fresh(exercise_id)
    lab.apply(solution(exercise_id))
    reaches = [e for e in exercises.exercise(exercise_id).expectations if isinstance(e, exercises.Reach)]
    namespaces = {e.dst.split("/")[0] for e in reaches if "/" in e.dst}
    namespaces |= {e.src.split("/")[0] for e in reaches if "/" in e.src}
    lab.apply([{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "zz-allow-all", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                         "ingress": [{}], "egress": [{}]}} for ns in sorted(namespaces)])
    result = check(exercise_id, lab)
    failed = [o for o in result.outcomes if not o.passed]
    assert failed and all("should be blocked" in o.detail or "would be allowed" in o.detail for o in failed)


def test_a_failing_expectation_says_what_happened_and_why(fresh):
    lab = fresh("06-three-tier")
    result = check("06-three-tier", lab)
    frontend_db = next(o for o in result.outcomes if "skip a tier" in o.text)
    assert not frontend_db.passed
    assert "should be blocked, but shop/db answered" in frontend_db.detail
    assert "why: no NetworkPolicy selects shop/db for ingress" in frontend_db.detail
    lab.apply(solution("06-three-tier"))
    lab.delete("networkpolicy", "allow-dns", namespace="shop")
    by_name = next(o for o in check("06-three-tier", lab).outcomes if "by name (backend:8080)" in o.text)
    assert not by_name.passed and "should work, but it failed" in by_name.detail
    assert "cannot resolve" in by_name.detail


def test_check_on_a_lab_without_the_exercise_pods_explains_instead_of_raising():
    with labkit.Lab("ex-empty", backend="sim") as lab:
        result = check("04-dev-sandbox", lab)
    assert not result.passed and result.score[0] == 0
    assert all("run the cells that create" in o.detail or "the notebook's earlier cells" in o.detail
               or "the notebook's version again" in o.detail or "cell that creates it again" in o.detail
               for o in result.outcomes), result


def test_check_needs_a_lab():
    with pytest.raises(LabkitError, match="must be your labkit.Lab"):
        check("04-dev-sandbox", "np1")


def test_check_on_a_closed_lab_reports_it(fresh):
    lab = fresh("04-dev-sandbox")
    lab.close()
    result = check("04-dev-sandbox", lab)
    assert not result.passed and "closed" in result.outcomes[0].detail


# ------------------------------------------------------------------ strict mode (CI)
def test_strict_mode_raises_an_assertion_error_that_is_a_labkit_error(fresh, monkeypatch):
    lab = fresh("05-worker-egress")
    monkeypatch.setenv("LABKIT_STRICT_CHECKS", "1")
    assert exercises.strict_checks()
    with pytest.raises(CheckFailed) as raised:
        check("05-worker-egress", lab)
    assert isinstance(raised.value, AssertionError) and isinstance(raised.value, LabkitError)
    assert "05-worker-egress" in str(raised.value) and "❌" in str(raised.value)
    progress = raised.value.result.progress
    assert progress.split("/")[0] != progress.split("/")[1]
    assert check("05-worker-egress", lab, strict=False).progress == progress  # an explicit look never raises
    lab.apply(solution("05-worker-egress"))
    assert check("05-worker-egress", lab).passed  # strict and solved: no exception


def test_strict_true_raises_without_the_environment(fresh):
    lab = fresh("04-dev-sandbox")
    with pytest.raises(AssertionError):
        check("04-dev-sandbox", lab, strict=True)
    assert not check("04-dev-sandbox", lab).passed


@pytest.mark.parametrize("value, strict", [("1", True), ("0", False), ("", False), ("yes", False)])
def test_strict_checks_reads_the_environment(monkeypatch, value, strict):
    monkeypatch.setenv("LABKIT_STRICT_CHECKS", value)
    assert exercises.strict_checks() is strict


def test_solutions_requested_reads_the_environment(monkeypatch):
    assert not exercises.solutions_requested()
    monkeypatch.setenv("LABKIT_APPLY_SOLUTIONS", "1")
    assert exercises.solutions_requested()


# ------------------------------------------------------------------ hints and solutions
@pytest.mark.parametrize("exercise_id", IDS)
def test_hints_progress_one_at_a_time_and_stop_at_the_last(exercise_id):
    total = len(exercises.exercise(exercise_id).hints)
    assert total >= 3
    shown = [hint(exercise_id) for _ in range(total + 2)]
    assert [h.shown for h in shown] == list(range(1, total + 1)) + [total, total]
    assert str(shown[0]) == exercises.exercise(exercise_id).hints[0]
    first, last = repr(shown[0]), repr(shown[-1])
    assert first.startswith(f"Hint 1/{total}: ") and "again for the next hint" in first
    assert last.count("Hint ") == total and "solution(" in last
    assert shown[-1].last and not shown[0].last
    assert f"<b>Hint {total}/{total}</b>" in shown[-1]._repr_html_()


def test_hint_by_number_and_reset():
    second = hint("06-three-tier", 2)
    assert second.shown == 2 and str(second) == exercises.exercise("06-three-tier").hints[1]
    assert hint("06-three-tier").shown == 3  # continues after the furthest hint seen
    exercises.reset_hints("06-three-tier")
    assert hint("06-three-tier").shown == 1
    for bad in (0, 99, "1", True):
        with pytest.raises(ModelError, match="hint number"):
            hint("06-three-tier", bad)


def test_solution_is_yaml_text_and_is_not_applied(fresh):
    lab = fresh("06-three-tier")
    before = dict(lab.cluster.policies)
    text = solution("06-three-tier")
    assert isinstance(text, str) and "kind: NetworkPolicy" in text and "name: default-deny" in text
    assert lab.cluster.policies == before
    assert text.exercise == "06-three-tier"
    assert "<pre>" in text._repr_html_() and "kind: NetworkPolicy" in text._repr_html_()


@pytest.mark.parametrize("exercise_id, draft", [("01-sidecar", "pair"), ("04-dev-sandbox", "dev-sandbox"),
                                                ("05-worker-egress", "worker-egress"),
                                                ("06-three-tier", "default-deny")])
def test_solutions_replace_the_notebook_drafts(exercise_id, draft):
    assert f"name: {draft}\n" in solution(exercise_id)


def test_unknown_exercise_names_the_known_ones():
    with pytest.raises(NotFound, match="06-three-tier") as raised:
        hint("06-three-tiers")
    assert "did you mean '06-three-tier'" in str(raised.value)
    for call in (lambda: solution("nope"), lambda: exercises.world(None), lambda: check("nope", None)):
        with pytest.raises(NotFound):
            call()


# ------------------------------------------------------------------ results as values
def test_result_repr_and_html(fresh):
    lab = fresh("04-dev-sandbox")
    result = check("04-dev-sandbox", lab)
    text = repr(result)
    done, total = result.score
    assert text.splitlines()[0] == (f"04-dev-sandbox · Fence in the dev namespace: {done}/{total} expectations met "
                                    "(simulated lab)")
    assert text.count("✅") == done and text.count("❌") == total - done and "hint('04-dev-sandbox')" in text
    page = result._repr_html_()
    assert page.count("✅") == done and page.count("❌") == total - done and f"{done}/{total}" in page
    assert "simulated" in page and "labkit-check-failed" in page
    lab.apply(solution("04-dev-sandbox"))
    solved = check("04-dev-sandbox", lab)
    assert "all expectations met" in repr(solved) and "❌" not in repr(solved) + solved._repr_html_()
    assert "labkit-check-passed" in solved._repr_html_()


# ------------------------------------------------------------------ the notebooks use the same worlds
@pytest.mark.parametrize("exercise_id", IDS)
def test_the_notebook_applies_exactly_the_exercise_world(exercise_id):
    ex = exercises.exercise(exercise_id)
    nb = nbformat.read(ROOT / "notebooks" / ex.notebook, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any(ex.world in src for src in code), f"{ex.notebook} must apply exercises.world({exercise_id!r})"
    assert any(f'labkit.Lab("{ex.lab_name}"' in src for src in code)
    assert any(f'check("{exercise_id}", lab' in src for src in code)
    if ex.answers:
        assert any(f'reference_answers("{exercise_id}", lab)' in src and "solutions_requested()" in src
                   for src in code)
    else:
        assert any(f'lab.apply(solution("{exercise_id}"))' in src and "solutions_requested()" in src for src in code)


@pytest.mark.parametrize("exercise_id", [i for i in IDS if exercises.provided(i)])
def test_the_provided_policies_are_the_ones_the_notebook_applies(exercise_id):
    """The check wants these unchanged: each must be exactly a policy the notebook applied before."""
    from labkit.model.manifests import parse  # noqa: PLC0415
    from labkit.model.objects import NetworkPolicy  # noqa: PLC0415
    ex = exercises.exercise(exercise_id)
    nb = nbformat.read(ROOT / "notebooks" / ex.notebook, as_version=4)
    applied = {}
    for cell in nb.cells:
        for text in _string_literals(cell.source) if cell.cell_type == "code" else ():
            if "kind: NetworkPolicy" in text:
                applied.update({(o.ref, o.pod_selector, o.policy_types, o.ingress, o.egress): o
                                for o in parse(text) if isinstance(o, NetworkPolicy)})
    for policy in parse(exercises.provided(exercise_id)):
        key = (policy.ref, policy.pod_selector, policy.policy_types, policy.ingress, policy.egress)
        assert key in applied, f"{policy.ref} of provided({exercise_id!r}) is not what {ex.notebook} applies"


def _string_literals(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_the_package_documents_itself_and_never_prints():
    package = ROOT / "labkit" / "exercises"
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{path.name} needs a module docstring"
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"{path.name} prints"


def test_two_checks_at_once_wait_for_each_other_and_leave_the_lab_as_it_was(fresh):
    """A Check button and a check() in a cell at the same time: the second waits, both see their own pods."""
    import threading  # noqa: PLC0415
    lab = fresh("06-three-tier")
    lab.apply(solution("06-three-tier"))
    before = (sorted(lab.cluster.pods), sorted(lab.cluster.namespaces))
    results = []
    threads = [threading.Thread(target=lambda: results.append(check("06-three-tier", lab))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(r.passed for r in results), [r.progress for r in results]
    assert (sorted(lab.cluster.pods), sorted(lab.cluster.namespaces)) == before


def test_a_checks_own_pods_do_not_call_the_labs_change_listeners(fresh):
    """A panel on the lab must not redraw for the check's short-lived pods; the learner's changes still reach it."""
    lab = fresh("04-dev-sandbox")
    heard = []
    lab.change_listeners.append(heard.append)
    check("04-dev-sandbox", lab)
    assert heard == []
    lab.apply(solution("04-dev-sandbox"))
    assert len(heard) == 1 and "networkpolicy/dev/dev-sandbox" in str(heard[0])
