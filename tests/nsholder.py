"""Throw-away network namespaces for the node-agent tests.

A namespace is held by a process that is PID 1 of new network *and* PID namespaces, as a
pod's pause process is: the agent refuses the namespace of any process that shares its
own PID namespace (on a node, that is a process of the host). Only processes started
here are stopped, by PID; ``--kill-child`` takes the held process down with ``unshare``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator


def can_unshare_net() -> bool:
    """True when this process may create network and PID namespaces (root + CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "--net", "--pid", "--fork", "true"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _held_pid(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """PID of the process unshare forked, once it runs in a network namespace of its own."""
    children = "/proc/%d/task/%d/children" % (proc.pid, proc.pid)
    own = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # not forked yet, or just exec'ing
            with open(children) as f:
                kids = f.read().split()
            if kids and os.readlink("/proc/%s/ns/net" % kids[0]) != own:
                return int(kids[0])
        if proc.poll() is not None:
            raise AssertionError("unshare exited with %s before its child started" % proc.returncode)
        time.sleep(0.02)
    raise AssertionError("unshare did not start its child in new namespaces within %gs" % timeout)


@contextlib.contextmanager
def pod_namespace(argv: list[str] | None = None, **popen_kwargs) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run ``argv`` (default ``sleep 300``) as PID 1 of new net + PID namespaces; yields the
    ``unshare`` process and the held process's ``/proc/<pid>/ns/net``."""
    proc = subprocess.Popen(["unshare", "--net", "--pid", "--fork", "--kill-child",
                             *(argv or ["sleep", "300"])], **popen_kwargs)
    try:
        yield proc, "/proc/%d/ns/net" % _held_pid(proc)
    finally:
        proc.kill()  # our own child, by PID; --kill-child stops the held process with it
        proc.wait()
