"""``labkit doctor``: what this machine offers labkit, each fact with how to fix it.

Owns the checks only (Python, optional packages, Docker engine, privileges); it changes
nothing on the machine.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import dataclass

from labkit.runtime import registry


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _package(name: str, extra: str) -> Check:
    found = importlib.util.find_spec(name) is not None
    return Check(f"python package {name}", found,
                 "installed" if found else f"missing: pip install 'k8s-labkit[{extra}]'")


def _image(engine: bool) -> Check:
    if not engine:
        return Check("lab image", False, "needs a Docker engine first")
    from labkit.errors import BackendUnavailable  # noqa: PLC0415
    from labkit.runtime.docker import engine as docker_engine, image  # noqa: PLC0415
    try:
        return Check("lab image", True, f"{image.check(docker_engine.connect())} matches this labkit")
    except BackendUnavailable as exc:
        return Check("lab image", False, str(exc))


def checks() -> list[Check]:
    out = [Check("python", sys.version_info >= (3, 10), f"{platform.python_version()} ({sys.executable})"),
           Check("sim backend", True, "always available: results come from the oracle, marked simulated")]
    out += [_package("docker", "docker"), _package("ipywidgets", "widgets"),
            _package("matplotlib", "viz"), _package("jupyterlab", "lab")]
    engine, why = registry.engine_answers()
    out.append(Check("docker engine", engine, why if engine else
                     f"{why}; on Linux as root, environments/start-dockerd.sh starts one"))
    out.append(_image(engine))
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    out.append(Check("privileges", True, "root (can start dockerd)" if is_root else
                     "not root: labkit needs only access to a Docker engine, never root itself"))
    choice, notice = registry.choose("auto")
    out.append(Check("backend='auto' gives", True, notice))
    return out
