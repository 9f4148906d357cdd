"""The tests' own view of the Docker engine, through the plain ``docker`` CLI (not labkit, not docker-py).

A small subset of docker-py's object API over ``docker`` subprocesses and ``docker inspect``
JSON, so the tests observe the engine independently of the library under test. Every value
comes from the engine; a missing container or image raises ``NotFound``, any other
failure of the CLI raises ``APIError`` with its message.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections import namedtuple
from typing import Any

TIMEOUT = 300.0
ExecResult = namedtuple("ExecResult", "exit_code output")  # as docker-py's exec_run returns


class APIError(Exception):
    """The docker CLI failed (its stderr is the message)."""


class NotFound(APIError):
    """No such container or image."""


class ImageNotFound(NotFound):
    pass


class ContainerError(APIError):
    """``containers.run`` (not detached): the command exited non-zero."""

    def __init__(self, exit_status: int, stderr: bytes, command: list[str]):
        self.exit_status, self.stderr, self.command = exit_status, stderr, command
        super().__init__(f"{command} exited {exit_status}: {stderr.decode(errors='replace')[-2000:]}")


def _missing(message: str) -> bool:
    lowered = message.lower()
    return "no such container" in lowered or "no such object" in lowered or "no such image" in lowered


def docker(*args: str, timeout: float = TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``docker ARGS`` (stdin closed); raises NotFound/APIError when ``check`` and it fails."""
    binary = shutil.which("docker")
    if binary is None:
        raise APIError("the docker CLI is not installed")
    proc = subprocess.run([binary, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    err = proc.stderr.decode(errors="replace").strip()
    # `docker rm -f` of a missing container prints the error but exits 0: still an error here
    if check and (proc.returncode != 0 or (args[:1] == ("rm",) and _missing(err))):
        raise (NotFound if _missing(err) else APIError)(f"docker {' '.join(args[:3])}...: {err or proc.returncode}")
    return proc


def _inspect(kind: str, *refs: str) -> list[dict[str, Any]]:
    """``docker <kind> inspect`` of refs; those gone meanwhile are left out (NotFound if none is found)."""
    proc = docker(kind, "inspect", *refs, check=False)
    found = json.loads(proc.stdout or b"[]")
    if proc.returncode != 0 and not found:
        err = proc.stderr.decode(errors="replace").strip()
        raise ((ImageNotFound if kind == "image" else NotFound) if _missing(err) else APIError)(err)
    return found


class Image:
    def __init__(self, attrs: dict[str, Any]):
        self.attrs = attrs
        self.id = attrs["Id"]
        self.tags = list(attrs.get("RepoTags") or [])
        self.labels = dict((attrs.get("Config") or {}).get("Labels") or {})

    def __repr__(self) -> str:
        return f"<Image {', '.join(self.tags) or self.id[:19]}>"


class Container:
    def __init__(self, attrs: dict[str, Any]):
        self.attrs = attrs

    id = property(lambda self: self.attrs["Id"])
    name = property(lambda self: self.attrs["Name"].lstrip("/"))
    status = property(lambda self: self.attrs["State"]["Status"])
    labels = property(lambda self: dict(self.attrs["Config"].get("Labels") or {}))
    image = property(lambda self: Image(_inspect("image", self.attrs["Image"])[0]))

    def __repr__(self) -> str:
        return f"<Container {self.name} {self.id[:12]}>"

    def reload(self) -> None:
        self.attrs = _inspect("container", self.id)[0]

    def exec_run(self, cmd: str | list[str]) -> ExecResult:
        """Run ``cmd`` in the container; output is stdout and stderr as they came, like docker-py's."""
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        binary = shutil.which("docker")
        if binary is None:
            raise APIError("the docker CLI is not installed")
        proc = subprocess.run([binary, "exec", self.id, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=TIMEOUT)
        # The CLI's own errors (the command never ran) come first, prefixed; the command's never do.
        if proc.returncode != 0 and proc.stdout.startswith((b"Error response from daemon:", b"Error: No such")):
            message = proc.stdout.decode(errors="replace").strip()
            raise (NotFound if _missing(message) else APIError)(message)
        return ExecResult(proc.returncode, proc.stdout)

    def kill(self) -> None:
        docker("kill", self.id)

    def remove(self, force: bool = False) -> None:
        docker("rm", *(["-f"] if force else []), self.id)


class _Containers:
    def list(self, all: bool = False, filters: dict[str, str | list[str]] | None = None) -> list[Container]:
        args = ["ps", "-q", "--no-trunc"] + (["-a"] if all else [])
        for key, values in (filters or {}).items():
            for value in [values] if isinstance(values, str) else values:
                args += ["--filter", f"{key}={value}"]
        ids = docker(*args).stdout.decode().split()
        return [Container(a) for a in _inspect("container", *ids)] if ids else []  # removed meanwhile: gone

    def get(self, ref: str) -> Container:
        return Container(_inspect("container", ref)[0])

    def run(self, image: str, command: list[str] | str | None = None, *, network_mode: str | None = None,
            remove: bool = False, detach: bool = False, name: str | None = None,
            labels: dict[str, str] | None = None) -> Container | bytes:
        """Detached: the started Container. Else: its stdout (ContainerError when it exits non-zero)."""
        args = ["run"] + (["-d"] if detach else []) + (["--rm"] if remove else [])
        args += ["--network", network_mode] if network_mode else []
        args += ["--name", name] if name else []
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        argv = shlex.split(command) if isinstance(command, str) else list(command or [])
        proc = docker(*args, image, *argv, check=detach)
        if detach:
            return self.get(proc.stdout.decode().strip())
        if proc.returncode != 0:
            raise ContainerError(proc.returncode, proc.stderr, [image, *argv])
        return proc.stdout


class _Images:
    def get(self, ref: str) -> Image:
        return Image(_inspect("image", ref)[0])

    def remove(self, ref: str, noprune: bool = False) -> None:
        docker("image", "rm", *(["--no-prune"] if noprune else []), ref)


Network = namedtuple("Network", "id name")


class _Networks:
    def list(self) -> list[Network]:
        rows = docker("network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}").stdout.decode().splitlines()
        return [Network(*row.split(" ", 1)) for row in rows if row.strip()]


class Client:
    """The engine the docker CLI talks to (``DOCKER_HOST``, its context, or the default socket)."""

    containers = _Containers()
    images = _Images()
    networks = _Networks()

    def ping(self) -> bool:
        docker("version", "--format", "{{.Server.Version}}", timeout=30)
        return True

    def close(self) -> None:
        """Nothing to let go of: every call is its own process."""
