"""Backend discovery by name: ``sim``, ``docker`` and ``auto`` (docker when an engine answers).

Owns the choice of backend and the notice that says which one a lab got. It is the one
module outside ``labkit/runtime/docker`` that names the docker backend, and it imports it
lazily, only when asked for (so docker-py is needed only then).
"""
from __future__ import annotations

import os

from labkit.errors import ModelError
from labkit.runtime.base import Backend

BACKENDS = ("auto", "docker", "sim", "remote")
SERVER_ENV = "LABKIT_SERVER"  # a lab server's socket: backend="auto" then uses it


def engine_answers(timeout: float = 2.0) -> tuple[bool, str]:
    """Does a Docker engine answer (as docker-py finds it)? Returns (yes, why)."""
    try:
        from labkit.runtime.docker import engine  # noqa: PLC0415 - docker-py only on demand
    except ImportError as exc:
        return False, f"the docker backend cannot load ({exc})"
    return engine.engine_answers(timeout)


def choose(requested: str) -> tuple[str, str]:
    """Resolve ``auto`` and ``LABKIT_BACKEND`` into a concrete backend name and a notice."""
    if requested not in BACKENDS:
        raise ModelError(f"backend={requested!r}: choose one of {', '.join(BACKENDS)}")
    env = os.environ.get("LABKIT_BACKEND", "").strip()
    if requested == "auto" and env:
        if env not in BACKENDS:
            raise ModelError(f"LABKIT_BACKEND={env!r}: choose one of {', '.join(BACKENDS)}")
        requested = env
    if requested != "auto":
        return requested, f"backend {requested} (as requested)"
    if os.environ.get(SERVER_ENV, "").strip():
        return "remote", f"backend remote: the lab server at {os.environ[SERVER_ENV].strip()} (real packets)"
    ok, why = engine_answers()
    if ok:
        return "docker", f"backend docker: {why}"
    return "sim", f"SIMULATED: {why}, so results come from the oracle, not from real packets"


def create(name: str, **options) -> Backend:
    """A backend object by name (``sim`` or ``docker``); options go to its constructor."""
    if name == "sim":
        from labkit.runtime.sim import SimBackend  # noqa: PLC0415
        return SimBackend(**options)
    if name == "docker":
        from labkit.runtime.docker import DockerBackend  # noqa: PLC0415
        return DockerBackend(**options)
    if name == "remote":
        from labkit.runtime.remote import RemoteBackend  # noqa: PLC0415
        address = options.pop("address", None) or os.environ.get(SERVER_ENV, "").strip()
        if not address:
            raise ModelError(f"backend='remote' needs a lab server: set {SERVER_ENV}=unix:///path/to/labkit.sock")
        return RemoteBackend(address, **options)
    raise ModelError(f"backend={name!r}: choose one of {', '.join(b for b in BACKENDS if b != 'auto')}")
