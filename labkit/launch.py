"""Start the course: copy the notebooks to a working folder and open JupyterLab on it.

Owns where the notebooks come from (inside the installed package, or ``notebooks/`` of a
clone) and the rule that a learner's edited notebooks are never overwritten.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from labkit.errors import LabkitError

DEFAULT_DIR = Path.home() / "labkit-notebooks"


def notebooks_source() -> Path:
    packaged = resources.files("labkit") / "notebooks"
    if packaged.is_dir():
        return Path(str(packaged))
    clone = Path(__file__).resolve().parent.parent / "notebooks"
    if clone.is_dir():
        return clone
    raise LabkitError("the labkit notebooks are missing from this installation: reinstall k8s-labkit")


def copy_notebooks(dest: Path, force: bool = False) -> tuple[list[Path], list[Path]]:
    """Copy every notebook to ``dest``; returns (copied, kept). Existing files are kept unless ``force``."""
    dest.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for src in sorted(notebooks_source().glob("*.ipynb")):
        target = dest / src.name
        if target.exists() and not force:
            kept.append(target)
            continue
        shutil.copyfile(src, target)
        copied.append(target)
    return copied, kept


def settings_dir(dest: Path) -> Path:
    """JupyterLab user settings with classroom defaults (no news or update pop-ups)."""
    root = dest / ".labkit" / "user-settings"
    plugin = root / "@jupyterlab" / "apputils-extension"
    plugin.mkdir(parents=True, exist_ok=True)
    settings = plugin / "notification.jupyterlab-settings"
    if not settings.exists():  # the learner may change it later; keep their choice
        settings.write_text('{"fetchNews": "false", "checkForUpdates": false}\n', encoding="utf-8")
    return root


def root_args(extra: list[str]) -> list[str]:
    """JupyterLab refuses to start as root, and a lab VM or container often is root: then
    ``--allow-root`` is added (the server still listens on 127.0.0.1 only, behind a token,
    unless told otherwise). Returns the arguments to add."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return []
    if any(a.startswith("--allow-root") or "allow_root" in a for a in extra):
        return []
    return ["--allow-root"]


def jupyter_lab(dest: Path, extra: list[str]) -> None:
    if importlib.util.find_spec("jupyterlab") is None:
        raise LabkitError("JupyterLab is not installed: pip install 'k8s-labkit[lab]' (or use ./dev lab)")
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings_dir(dest)))
    # `-m jupyterlab`, not `-m jupyter lab`: the latter runs whichever `jupyter-lab` comes
    # first on PATH, which may belong to another Python whose kernels cannot import labkit.
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={dest}", *extra]
    os.execve(sys.executable, argv, env)  # become JupyterLab: Ctrl-C and signals reach it directly
