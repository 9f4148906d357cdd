"""The lab image: its tag, whether the engine's copy matches this labkit, and how to build it.

Owns the link between the installed labkit and the image: the image carries the hash of
the in-image agent (``labkit/node``), so a stale image is detected at start with the exact
command that fixes it. Building runs the recipes in ``environments/image``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

from labkit import __version__
from labkit.errors import BackendUnavailable, CommandError
from labkit.runtime.docker import engine
from labkit.runtime.docker import labels as lk

BUILD_HINT = "labkit images build --offline"


def package_dir() -> Path:
    return Path(__file__).resolve().parents[2]


def node_code_hash() -> str:
    """sha256 over ``<sha256>  <relpath>`` lines of every file in labkit/node (sorted)."""
    root = package_dir() / "node"
    lines = []
    for path in sorted((p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                        and p.suffix != ".pyc"), key=lambda p: p.relative_to(root).as_posix().encode()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(root).as_posix()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def tag() -> str:
    return os.environ.get("LABKIT_IMAGE") or lk.image(__version__)


def check(client) -> str:
    """The image tag to use; raises BackendUnavailable with the fix when missing or stale."""
    name = tag()
    found = engine.image_labels(client, name)
    if found is None:
        raise BackendUnavailable(f"the lab image {name} is not in the Docker engine: build it with "
                                 f"`{BUILD_HINT}` (or `labkit images build` where a registry is reachable)")
    have = found.get(lk.NODE_CODE)
    if have != node_code_hash():
        raise BackendUnavailable(f"the lab image {name} was built from a different labkit (its node agent "
                                 f"differs from this installation's): rebuild it with `{BUILD_HINT}`")
    return name


def environments_dir() -> Path:
    packaged = resources.files("labkit") / "environments"
    if packaged.is_dir():
        return Path(str(packaged))
    clone = package_dir().parent / "environments"
    if clone.is_dir():
        return clone
    raise BackendUnavailable("environments/ (the image recipes) is missing from this installation")


def can_build_offline() -> bool:
    """The offline build needs Linux and root (debootstrap)."""
    return sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0


def build(offline: bool = True, client=None, name: str | None = None, base: str | None = None) -> str:
    """Build the lab image as ``name`` (default: ``tag()``); returns the build log.

    Offline: debootstrap + docker import (``build-offline.sh``, Linux and root). Otherwise
    ``environments/image/Dockerfile`` through the engine's API (no docker CLI needed, as in
    a notebook server that only has a socket), ``FROM base`` (default debian:bookworm-slim)."""
    env_dir = environments_dir() / "image"
    name = name or tag()
    if not offline:
        return _build_from_dockerfile(client, env_dir / "Dockerfile", name, base)
    argv = ["bash", str(env_dir / "build-offline.sh"), name, str(package_dir())]
    proc = subprocess.run(argv, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise CommandError(f"building {name} failed (exit {proc.returncode}):\n{log[-3000:]}",
                           exit_code=proc.returncode, output=log)
    return log


def _build_from_dockerfile(client, dockerfile: Path, name: str, base: str | None) -> str:
    if client is None:
        client = engine.connect()
    args = {"LABKIT_VERSION": __version__, "LABKIT_NODE_SHA256": node_code_hash()}
    if base:
        args["BASE_IMAGE"] = base
    # An engine started with --bridge=none (as environments/start-dockerd.sh and the classroom
    # files do) has no default network: the RUN steps then use the engine's own network to
    # reach the apt mirror. Engines with a bridge keep their default.
    network = None if engine.has_bridge_network(client) else "host"
    return engine.build_image(client, str(package_dir()), str(dockerfile), name, args, network)
