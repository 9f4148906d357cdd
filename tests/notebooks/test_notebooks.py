"""Notebook CI: every course notebook runs top to bottom under nbval, on sim and on docker.

Each notebook runs in a fresh ``python -m pytest --nbval-lax`` subprocess with
``LABKIT_BACKEND`` set, strict exercise checks on (``LABKIT_STRICT_CHECKS=1``) and the
reference solutions applied (``LABKIT_APPLY_SOLUTIONS=1``), so a cell that raises, an
``assert`` in a notebook or a failing ``check()`` fails the test, with the output's tail in
the message. The simulated run always runs; the docker run is marked ``docker`` (the gate
and the leaked-container check live in ``tests/conftest.py``). The learner's path (no
solutions, no strict checks) is run on sim too. Static tests keep the committed notebooks
clean: no outputs or execution counts, no helper code, one closed lab each.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import tempfile
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SANITIZER = Path(__file__).with_name("nbval_sanitize.cfg")
CELL_TIMEOUT = 180
RUN_TIMEOUT = 1200
TAIL = 8000
IDS = [p.stem for p in NOTEBOOKS]


def run_nbval(notebook: Path, backend: str, *, solutions: bool = True, strict: bool = True) -> tuple[int, str]:
    env = dict(os.environ, LABKIT_BACKEND=backend, LABKIT_STRICT_CHECKS="1" if strict else "0",
               LABKIT_CAPTURE_DIR=tempfile.mkdtemp(prefix="labkit-captures-"),  # pcaps never land in the repo
               LABKIT_APPLY_SOLUTIONS="1" if solutions else "0",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "--nbval-lax",
            "--nbval-current-env", f"--nbval-cell-timeout={CELL_TIMEOUT}", "--nbval-sanitize-with", str(SANITIZER),
            "-o", "addopts=", str(notebook.relative_to(ROOT))]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return proc.returncode, proc.stdout + proc.stderr


def _assert_passed(notebook: Path, backend: str, code: int, output: str) -> None:
    assert code == 0, (f"{notebook.name} failed under nbval on backend {backend} (exit {code}); "
                       f"output tail:\n{output[-TAIL:]}")
    assert re.search(r"\b\d+ passed\b", output), f"nbval ran no cell of {notebook.name}:\n{output[-TAIL:]}"


def test_there_is_a_curriculum():
    names = [p.name for p in NOTEBOOKS]
    for expected in ("00-welcome.ipynb", "01-the-pod.ipynb", "02-pod-to-pod.ipynb", "03-services.ipynb",
                     "04-network-policies-1.ipynb", "05-network-policies-2.ipynb", "06-challenge.ipynb"):
        assert expected in names


# ---------------------------------------------------------------- running them
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_runs_on_sim(notebook):
    code, output = run_nbval(notebook, "sim")
    _assert_passed(notebook, "sim", code, output)


def lab_names(notebook: Path) -> list[str]:
    return [m for c in _code_cells(notebook) for m in re.findall(r'labkit\.Lab\("([a-z0-9-]+)"', c.source)]


def containers_of(lab: str) -> list[str]:
    """Names of the containers of ``lab`` of the caller's owner (the notebook's), seen with the docker CLI."""
    from labkit.runtime.base import default_owner  # noqa: PLC0415
    from tests.dockercli import Client  # noqa: PLC0415 - only for the docker-marked test
    from tests.integration.helpers import LAB_LABEL, OWNER_LABEL  # noqa: PLC0415
    return [c.name for c in Client().containers.list(
        all=True, filters={"label": [f"{LAB_LABEL}={lab}", f"{OWNER_LABEL}={default_owner()}"]})]


@pytest.mark.docker
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_runs_on_docker(notebook):
    labs = lab_names(notebook)
    running = {lab: containers_of(lab) for lab in labs if containers_of(lab)}
    assert not running, f"labs of {notebook.name} already run (remove them with `labkit down --lab NAME`): {running}"
    code, output = run_nbval(notebook, "docker")
    leaked = {lab: containers_of(lab) for lab in labs if containers_of(lab)}
    _assert_passed(notebook, "docker", code, output)
    assert not leaked, f"{notebook.name} left containers behind: {leaked}"


@pytest.mark.parametrize("notebook", [p for p in NOTEBOOKS if "solutions_requested()" in p.read_text()],
                         ids=lambda p: p.stem)
def test_learner_path_runs_on_sim_without_solutions(notebook):
    """What a learner runs: no solution applied, checks report instead of raising."""
    code, output = run_nbval(notebook, "sim", solutions=False, strict=False)
    _assert_passed(notebook, "sim (learner path)", code, output)


# ---------------------------------------------------------------- keeping them clean
def _code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_clean(notebook):
    raw = json.loads(notebook.read_text(encoding="utf-8"))
    nb = nbformat.reads(notebook.read_text(encoding="utf-8"), as_version=4)
    nbformat.validate(nb)
    assert raw["nbformat"] == 4 and raw["nbformat_minor"] >= 5, "cell ids need nbformat 4.5"
    assert raw["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in raw["metadata"], "saved widget state: strip the notebook"
    ids = [c.get("id") for c in raw["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), "every cell needs a unique id"
    for i, cell in enumerate(raw["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {i} ({cell['id']}) has outputs: strip them"
            assert cell["execution_count"] is None, f"cell {i} ({cell['id']}) has an execution count"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_code_is_only_calls_into_labkit(notebook):
    for cell in _code_cells(notebook):
        src = cell.source
        for forbidden in ("def ", "class ", "pip install", "%pip", "!pip", "lambda "):
            assert forbidden not in src, f"{notebook.name} cell {cell.id}: no {forbidden.strip()!r} in notebooks"
        assert not re.search(r"^\s*[!%]", src, re.M), f"{notebook.name} cell {cell.id}: no shell or magics"
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    assert name.split(".")[0] in {"labkit", "collections", "time", "IPython"}, (
                        f"{notebook.name} cell {cell.id} imports {name}")
            for attr in ("_backend", "cluster"):
                if isinstance(node, ast.Attribute) and node.attr == attr:
                    pytest.fail(f"{notebook.name} cell {cell.id}: lab.{attr} is not public API")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_each_notebook_opens_one_auto_lab_and_closes_it(notebook):
    cells = _code_cells(notebook)
    labs = [m for c in cells for m in re.findall(r'labkit\.Lab\("([a-z0-9-]+)"[^)]*\)', c.source)]
    assert len(labs) == 1, f"{notebook.name} should start exactly one lab, found {labs}"
    assert all('backend="auto"' in c.source for c in cells if "labkit.Lab(" in c.source)
    assert "lab.close()" in cells[-1].source, f"{notebook.name}: close the lab in the last cell"


def test_lab_names_are_distinct():
    names = [m for p in NOTEBOOKS for c in _code_cells(p)
             for m in re.findall(r'labkit\.Lab\("([a-z0-9-]+)"', c.source)]
    assert len(names) == len(set(names)), names


def test_panel_cells_of_the_first_policy_notebook():
    """The browser test drives these cells: after the world, the panel, with no deny-all before it."""
    cells = _code_cells(ROOT / "notebooks" / "04-network-policies-1.ipynb")
    sources = [c.source.strip() for c in cells]
    start = next(i for i, s in enumerate(sources) if 'labkit.Lab("np1", backend="auto")' in s)
    panel = sources.index("panel")
    assert sources[panel - 2] == "from labkit.widgets import LabPanel"
    assert sources[panel - 1] == "panel = LabPanel(lab)"
    before = "\n".join(sources[start:panel])
    assert "lab.apply(" in before and "NetworkPolicy" not in before
    assert all("lab.close()" not in s for s in sources[:-1]), "the panel's lab stays open until the last cell"


def test_labkit_notebooks_copies_the_course(tmp_path):
    from labkit.launch import copy_notebooks
    copied, kept = copy_notebooks(tmp_path / "course")
    assert sorted(p.name for p in copied) == [p.name for p in NOTEBOOKS] and kept == []
    (tmp_path / "course" / "01-the-pod.ipynb").write_text("my edits", encoding="utf-8")
    copied, kept = copy_notebooks(tmp_path / "course")
    assert copied == [] and "01-the-pod.ipynb" in [p.name for p in kept]
    assert (tmp_path / "course" / "01-the-pod.ipynb").read_text(encoding="utf-8") == "my edits"


def test_sanitizer_parses_into_pairs():
    pairs = re.findall("^regex: (.*)$\n^replace: (.*)$", SANITIZER.read_text(encoding="utf-8"), flags=re.M)
    assert len(pairs) >= 8
    for regex, _ in pairs:
        re.compile(regex)
