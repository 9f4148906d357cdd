"""What a simulated pod's containers hold: their files, and readiness probes judged from them.

Owns the sim backend's stand-in for container processes: one set of file paths per
container (a container starts with the files of the lab image that the course looks at;
``touch``/``rm`` change it, ``test -e``/``cat``/``ls`` read it; a replaced pod starts
afresh), and the kubelet's readiness probing on top of it: an ``exec`` probe runs its
command through ``sim_exec`` against those files, a ``tcpSocket`` or ``httpGet`` probe
passes when a container of the pod declares the port (labkit's default app listens on
every declared port and answers HTTP 200 on any path), with the same thresholds and state
machine as the docker backend's prober. So endpoints leave and come back as on docker.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from labkit.model.cluster import Cluster
from labkit.model.objects import Container, Pod, ReadinessProbe

IMAGE_FILES = frozenset({"/etc/resolv.conf", "/etc/hosts", "/etc/hostname"})


class Files:
    """The file paths of every container of a simulated lab: ``(pod ref, container) -> set``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str], set[str]] = {}

    def of(self, pod: str, container: str) -> set[str]:
        """The live set of one container (created with the image's files on first use)."""
        with self._lock:
            return self._files.setdefault((pod, container), set(IMAGE_FILES))

    def forget(self, pods: set[str]) -> None:
        """Pods that were removed or replaced: their containers' files go with them."""
        with self._lock:
            for key in [k for k in self._files if k[0] in pods]:
                del self._files[key]


def replaced(old: Cluster, new: Cluster) -> set[str]:
    """Pods of ``old`` that are gone from ``new`` or became new pods (another spec, node or IP)."""
    return {ref for ref in old.pods if ref not in new.pods or old.pods[ref].spec != new.pods[ref].spec
            or old.pod_ips[ref] != new.pod_ips.get(ref) or old.pod_nodes[ref] != new.pod_nodes.get(ref)}


def _port(pod: Pod, port: int | str | None) -> int | None:
    if isinstance(port, int):
        return port
    return next((p.container_port for p in pod.spec.ports() if p.name == port), None)


@dataclass
class State:
    ready: bool = False
    failures: int = 0
    successes: int = 0
    last: str = ""


class Prober:
    """The kubelet's readiness probes on the sim backend, judged against ``files``."""

    def __init__(self, files: Files, rng: random.Random):
        self.files, self.rng = files, rng
        self.states: dict[str, State] = {}

    def check(self, cluster: Cluster, pod: Pod, container: Container, probe: ReadinessProbe) -> tuple[bool, str]:
        """One probe: (passed, what it said)."""
        if probe.kind == "exec":
            from labkit.runtime import sim_exec  # noqa: PLC0415 (sim_exec imports this module)
            result = sim_exec.run(cluster, pod.ref, list(probe.command), container.name, self.rng, self.files)
            detail = result.output.split("\n", 1)[1].strip() if "\n" in result.output else ""
            ok = result.exit_code == 0
            code = result.exit_code
        else:
            port = _port(pod, probe.port)
            if port is None:
                ok, code, detail = False, 1, f"no container port named {probe.port}"
            else:
                ok = any(p.container_port == port and p.protocol == "TCP" for p in pod.spec.served_ports())
                code = 0 if ok else (1 if probe.kind == "tcpSocket" else 7)
                detail = "" if ok else f"nothing listens on {cluster.pod_ips[pod.ref]}:{port}"
        return ok, f"{probe.kind} probe of {container.name}: " + (
            "passed" if ok else f"failed (exit {code}{': ' + detail[-200:] if detail else ''})")

    def run(self, cluster: Cluster) -> set[str]:
        """Probe every pod that has a readinessProbe once; return the pods that are not ready."""
        self.states = {r: s for r, s in self.states.items() if r in cluster.pods}
        for ref, pod in sorted(cluster.pods.items()):
            probed = [c for c in pod.spec.containers if c.readiness_probe is not None]
            if not probed:
                continue
            outcomes = [self.check(cluster, pod, c, c.readiness_probe) for c in probed]
            state = self.states.setdefault(ref, State(ready=cluster.is_ready(ref)))
            passed = all(ok for ok, _ in outcomes)
            state.last = "; ".join(why for _, why in outcomes) + " (simulated)"
            state.failures, state.successes = (0, state.successes + 1) if passed else (state.failures + 1, 0)
            probe = probed[0].readiness_probe
            if not state.ready and state.successes >= probe.success_threshold:
                state.ready = True
            elif state.ready and state.failures >= probe.failure_threshold:
                state.ready = False
        return {ref for ref, s in self.states.items() if not s.ready}

    def forget(self, pods: set[str]) -> None:
        for ref in pods:
            self.states.pop(ref, None)


# ---------------------------------------------------------------- file commands (sim_exec dispatches here)
# Each takes the exec context (``ctx.files``: the container's set) and the arguments, and
# returns (exit code, output) like coreutils, or None when the form is not simulated.
def _paths(args: list[str]) -> list[str] | None:
    """Absolute paths only (there is no working directory to resolve against)."""
    return args if args and all(a.startswith("/") and "\0" not in a for a in args) else None


def touch(ctx, args: list[str]) -> tuple[int, str] | None:
    paths = _paths(args)
    if paths is None:
        return None
    ctx.files.update(paths)
    return 0, ""


def rm(ctx, args: list[str]) -> tuple[int, str] | None:
    force = bool(args) and args[0] == "-f"
    paths = _paths(args[1:] if force else args)
    if paths is None:
        return None
    missing = [p for p in paths if p not in ctx.files]
    ctx.files.difference_update(paths)
    if missing and not force:
        return 1, "".join(f"rm: cannot remove '{p}': No such file or directory\n" for p in missing)
    return 0, ""


def test(ctx, args: list[str]) -> tuple[int, str] | None:
    if len(args) != 2 or args[0] not in ("-e", "-f") or _paths(args[1:]) is None:
        return None
    return (0 if args[1] in ctx.files else 1), ""


def bracket(ctx, args: list[str]) -> tuple[int, str] | None:
    return test(ctx, args[:-1]) if args[-1:] == ["]"] else None


def ls(ctx, args: list[str]) -> tuple[int, str] | None:
    paths = _paths(args)
    if paths is None or len(paths) != 1:
        return None
    if paths[0] in ctx.files:
        return 0, f"{paths[0]}\n"
    return 2, f"ls: cannot access '{paths[0]}': No such file or directory\n"


def cat(ctx, args: list[str]) -> tuple[int, str] | None:
    """A file made with ``touch`` (empty), or a missing one; the image's own files are the caller's."""
    paths = _paths(args)
    if paths is None or len(paths) != 1:
        return None
    if paths[0] not in ctx.files:
        return 1, f"cat: {paths[0]}: No such file or directory\n"
    return None if paths[0] in IMAGE_FILES else (0, "")


def true(ctx, args: list[str]) -> tuple[int, str]:
    return 0, ""


def false(ctx, args: list[str]) -> tuple[int, str]:
    return 1, ""


COMMANDS = {"touch": touch, "rm": rm, "test": test, "[": bracket, "ls": ls, "true": true, "false": false}
