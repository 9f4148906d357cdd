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
from labkit.dataplane import names
from labkit.errors import BackendUnavailable, CommandError

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
    return os.environ.get("LABKIT_IMAGE") or names.image(__version__)


def check(client) -> str:
    """The image tag to use; raises BackendUnavailable with the fix when missing or stale."""
    import docker.errors  # noqa: PLC0415
    name = tag()
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        raise BackendUnavailable(f"the lab image {name} is not in the Docker engine: build it with "
                                 f"`{BUILD_HINT}` (or `labkit images build` where a registry is reachable)") from None
    have = (image.labels or {}).get(names.NODE_CODE)
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


def build(offline: bool = True) -> str:
    """Build the lab image; returns the build log. Offline: debootstrap + docker import."""
    env_dir = environments_dir() / "image"
    if offline:
        argv = ["bash", str(env_dir / "build-offline.sh"), tag(), str(package_dir())]
    else:
        argv = ["docker", "build", "-f", str(env_dir / "Dockerfile"), "--build-arg", f"LABKIT_VERSION={__version__}",
                "--build-arg", f"LABKIT_NODE_SHA256={node_code_hash()}", "-t", tag(), str(package_dir())]
    proc = subprocess.run(argv, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise CommandError(f"building {tag()} failed (exit {proc.returncode}):\n{log[-3000:]}",
                           exit_code=proc.returncode, output=log)
    return log
