"""Where the CLI keeps a lab between commands: one JSON file per lab name.

Owns the state directory (``$LABKIT_STATE_DIR``, else ``~/.local/state/labkit``) and the
record of a lab: its backend, node count and the operations applied to it, replayed
to rebuild the model (the same operations always give the same addresses).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from labkit.errors import NotFound
from labkit.model.fields import dns1123_label


def state_dir() -> Path:
    base = os.environ.get("LABKIT_STATE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "labkit"


def _path(name: str) -> Path:
    # A lab name is a DNS label: checked before it becomes part of a path (no "../victim").
    dns1123_label(name, "lab")
    return state_dir() / f"{name}.json"


def save(name: str, backend: str, nodes: int, history: list[dict[str, Any]]) -> Path:
    path = _path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"name": name, "backend": backend, "nodes": nodes, "history": history}),
                   encoding="utf-8")
    tmp.replace(path)
    return path


def load(name: str) -> dict[str, Any]:
    path = _path(name)
    if not path.exists():
        raise NotFound(f"no lab named {name!r} is up: start one with `labkit up -f FILE` "
                       f"(or pass -f FILE to this command)")
    return json.loads(path.read_text(encoding="utf-8"))


def remove(name: str) -> bool:
    path = _path(name)
    if path.exists():
        path.unlink()
        return True
    return False


def names() -> list[str]:
    d = state_dir()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []
