"""``labkit doctor``: what this machine offers labkit, each fact with how to fix it.

Owns the checks only (Python, optional packages, Docker engine, lab image, capabilities and
the caller's labs, asked through the backend contract, privileges); it changes nothing.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import dataclass

from labkit.runtime import registry
from labkit.runtime.base import default_owner


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _package(name: str, extra: str) -> Check:
    found = importlib.util.find_spec(name) is not None
    return Check(f"python package {name}", found,
                 "installed" if found else f"missing: pip install 'k8s-labkit[{extra}]'")


def _docker(engine: bool) -> list[Check]:
    """The lab image and what the engine's kernel offers, asked through the backend's contract."""
    if not engine:
        return [Check("lab image", False, "needs a Docker engine first")]
    from labkit.errors import BackendError, BackendUnavailable  # noqa: PLC0415
    backend = registry.create("docker")
    try:
        try:
            out = [Check("lab image", True, f"{backend.image()} matches this labkit")]
        except BackendUnavailable as exc:
            return [Check("lab image", False, str(exc))]
        try:
            caps = backend.capabilities()
        except BackendError as exc:
            return out + [Check("capabilities", False, str(exc))]
        out.append(Check("capabilities", True, f"real packets on {caps.where}; up to {caps.max_nodes} nodes; probes "
                         f"{'/'.join(caps.protocols)}" + ("" if caps.sctp else " (this kernel has no SCTP sockets)")))
        table = backend.neighbour_table()
        out.append(Check("neighbour table", table is None or table.pods_allowed > 0,
                         "the engine runs on another machine: its neighbour (ARP) table cannot be read from here"
                         if table is None else
                         f"limit {table.limit} (net.ipv4.neigh.default.gc_thresh3, one table for the whole machine: "
                         f"host, nodes and pods of every lab), {table.entries} in use: room for about "
                         f"{table.pods_allowed} more lab pods (each needs about two entries); labkit never changes it"))
        mine = backend.list_labs(default_owner())
        out.append(Check("your labs", True, f"{len(mine)} running as {default_owner()}" +
                         (f": {', '.join(i.name for i in mine)}" if mine else "")))
        return out
    finally:
        backend.close()


def _server() -> list[Check]:
    """The lab server named by LABKIT_SERVER, if any: whether it answers, and as whom."""
    address = os.environ.get(registry.SERVER_ENV, "").strip()
    if not address:
        return []
    from labkit.errors import LabkitError  # noqa: PLC0415
    try:
        backend = registry.create("remote")
        me = backend.whoami()
        caps = backend.capabilities()
    except LabkitError as exc:
        return [Check("lab server", False, f"{address}: {exc}")]
    from labkit.server.app import size  # noqa: PLC0415
    limits = me["limits"]
    how = "your hub token" if backend.client.token else "your Unix user"
    return [Check("lab server", True, f"{address} answers; you are {me['owner']} ({how}) with {me['labs']} lab(s) "
                  f"(at most {limits['labs_per_owner']}, {limits['pods_per_lab']} pods each; per pod "
                  f"{size(limits.get('memory_per_pod'))} and {limits.get('pids_per_pod') or 'any number of'} "
                  f"processes{_cpus(limits.get('cpus_per_pod'))}; {size(limits.get('memory_per_learner'))} for all your "
                  "pods); "
                  f"{'real packets' if caps.real_packets else 'simulated'} on {caps.where}")]


def _cpus(cores: float | None) -> str:
    return f" and {cores:g} of a core" if cores else ""


def checks() -> list[Check]:
    out = [Check("python", sys.version_info >= (3, 10), f"{platform.python_version()} ({sys.executable})"),
           Check("sim backend", True, "always available: results come from the oracle, marked simulated")]
    out += [_package("docker", "docker"), _package("ipywidgets", "widgets"),
            _package("matplotlib", "viz"), _package("jupyterlab", "lab")]
    out += _server()
    engine, why = registry.engine_answers()
    out.append(Check("docker engine", engine, why if engine else
                     f"{why}; on Linux as root, environments/start-dockerd.sh starts one"))
    out += _docker(engine)
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    out.append(Check("privileges", True, "root (can start dockerd)" if is_root else
                     "not root: labkit needs only access to a Docker engine, never root itself"))
    choice, notice = registry.choose("auto")
    out.append(Check("backend='auto' gives", True, notice))
    return out
