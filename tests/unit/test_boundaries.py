"""The backend boundary is a contract, checked in the source: who may import the docker
backend or docker-py, and that tests and benchmarks use only public attributes of labs and
backends (the way a remote backend's users will have to).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER_RUNTIME = ROOT / "labkit" / "runtime" / "docker"
# The one place outside the docker runtime that names it (lazily, by request).
REGISTRY = ROOT / "labkit" / "runtime" / "registry.py"


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _forbidden(module: str) -> bool:
    return module == "docker" or module.startswith("docker.") or module.startswith("labkit.runtime.docker")


@pytest.mark.parametrize("path", _python_files("labkit", "tests", "benchmarks"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_docker_runtime_imports_docker_py_or_itself(path):
    if DOCKER_RUNTIME in path.parents or path == REGISTRY:
        return
    bad = [f"line {line}: import {name}" for line, name in _imports(path) if _forbidden(name)]
    assert not bad, f"{path.relative_to(ROOT)} reaches around the backend contract: {bad}"


def _private_names() -> set[str]:
    """Private attributes that Lab and the backends set on themselves (``self._x = ...``)."""
    names = set()
    for path in [ROOT / "labkit" / "lab.py", *_python_files("labkit/runtime")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                names.add(node.attr)
    return names


def test_the_private_names_are_found():
    names = _private_names()
    assert {"_runtime", "_lock", "_closed", "_rules", "_dns"} <= names, sorted(names)


@pytest.mark.parametrize("path", _python_files("tests", "benchmarks"), ids=lambda p: str(p.relative_to(ROOT)))
def test_tests_and_benchmarks_use_only_public_attributes(path):
    private = _private_names()
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in private and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            bad.append(f"line {node.lineno}: .{node.attr}")
    assert not bad, f"{path.relative_to(ROOT)} touches private attributes of a lab or backend: {bad}"
