"""Backend discovery by name: ``sim``, ``docker`` and ``auto`` (docker when an engine answers).

Owns the choice of backend and the notice that says which one a lab got. Heavy
dependencies (docker-py) are imported lazily, only when the docker backend is asked for.
"""
from __future__ import annotations

import os

from labkit.errors import ModelError
from labkit.runtime.base import Backend

BACKENDS = ("auto", "docker", "sim")


def engine_answers(timeout: float = 2.0) -> tuple[bool, str]:
    """Does a Docker engine answer (as docker-py finds it)? Returns (yes, why)."""
    try:
        import docker  # noqa: PLC0415 - optional dependency, imported on demand
    except ImportError:
        return False, "the Python package 'docker' is not installed (pip install 'k8s-labkit[docker]')"
    try:
        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return True, "a Docker engine answers"
    except Exception as exc:  # docker-py raises many types; any failure means "no engine"
        return False, f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:120]})"


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
    ok, why = engine_answers()
    if ok:
        return "docker", f"backend docker: {why}"
    return "sim", f"SIMULATED: {why}, so results come from the oracle, not from real packets"


def create(name: str, **options) -> Backend:
    if name == "sim":
        from labkit.runtime.sim import SimBackend  # noqa: PLC0415
        return SimBackend(seed=options.get("seed", 0))
    if name == "docker":
        from labkit.runtime.docker import DockerBackend  # noqa: PLC0415
        return DockerBackend(**options)
    raise ModelError(f"backend={name!r}: choose one of {', '.join(BACKENDS)}")
