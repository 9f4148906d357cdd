"""Throw-away Unix users for the classroom tests, and running code as one of them.

``throwaway_users`` creates users (optionally with a home only they can read, a password and
extra groups) and removes them, their homes and their processes' files again; ``as_user``
runs a function in a child of this process that has dropped to a user (fork, then
setgid/setuid), with a given environment: the child already has labkit and what its remote
backend needs imported (this module imports them), so it needs no access to this checkout or
its Python. Both need root.
"""
from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import labkit.runtime.remote  # noqa: F401 - imported before any fork: a learner may not read this Python's files
import labkit.server.app  # noqa: F401 - (under root's home, say), so they must be loaded already
from labkit.errors import LabkitError


def remove_user(name: str, home: bool = True, timeout: float = 60.0) -> bool:
    """Remove ``name`` (and its home); retried while its last processes end (userdel refuses a user
    who still runs one). True when the user is gone."""
    deadline = time.monotonic() + timeout
    while True:
        subprocess.run(["userdel", *(["--remove"] if home else []), name], capture_output=True)
        try:
            pwd.getpwnam(name)
        except KeyError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1)


def uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


@contextmanager
def throwaway_users(names: list[str], *, home: bool = False, groups: tuple[str, ...] = ()
                    ) -> Iterator[dict[str, str]]:
    """Create ``names`` (with a 0700 home and a random password if ``home``); yields name -> password."""
    passwords: dict[str, str] = {}
    try:
        for name in names:
            args = ["useradd", "--shell", "/bin/sh" if home else "/usr/sbin/nologin"]
            args += ["--create-home"] if home else ["--no-create-home"]
            if groups:
                args += ["--groups", ",".join(groups)]
            subprocess.run([*args, name], check=True, capture_output=True)
            passwords[name] = secrets.token_urlsafe(12)
            subprocess.run(["chpasswd"], input=f"{name}:{passwords[name]}\n", text=True, check=True)
            if home:
                os.chmod(pwd.getpwnam(name).pw_dir, 0o700)
        yield passwords
    finally:
        left = [name for name in names if not remove_user(name, home)]
        assert not left, f"throw-away users could not be removed: {left}"


def as_user(user: str, job: Callable[[], object], env: dict[str, str]) -> dict:
    """Run ``job`` in a child process that is ``user`` (no other groups) with ``env`` added to its
    environment; returns {"value": what it returned} (JSON), or {"error": LabkitError type,
    "message": ...}, or {"oserror": errno, "message": ...}."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the learner
        code = 0
        try:
            os.close(read)
            entry = pwd.getpwnam(user)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.environ.update({"HOME": "/tmp", **env})
            try:
                answer = {"value": job()}
            except LabkitError as exc:
                answer = {"error": type(exc).__name__, "message": str(exc)}
            except OSError as exc:
                answer = {"oserror": exc.errno, "message": str(exc)}
            os.write(write, json.dumps(answer, default=str).encode())
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"the child as {user} failed"
    return json.loads(b"".join(chunks) or b"{}")
