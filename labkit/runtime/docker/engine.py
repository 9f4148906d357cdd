"""The thin layer over docker-py: connect, run, exec (with JSON on stdin), remove by label.

Owns every call to the Docker API and the mapping of its failures onto labkit's errors.
It knows nothing about pods or nodes; ``nodes``/``pods`` compose these calls.
"""
from __future__ import annotations

import json
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from labkit.dataplane import names
from labkit.errors import BackendError, BackendUnavailable, CommandError

NODE_AGENT = ["python3", "-m", "labkit.node"]


def connect(timeout: float = 30.0):
    """A docker-py client for the engine docker-py finds (DOCKER_HOST or the default socket)."""
    try:
        import docker  # noqa: PLC0415 - only the docker backend needs docker-py
    except ImportError:
        raise BackendUnavailable("the docker backend needs the 'docker' package: "
                                 "pip install 'k8s-labkit[docker]'") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "unavailable"
        raise BackendUnavailable(f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]}); on Linux "
                                 "as root, environments/start-dockerd.sh starts one") from None
    return client


def docker_errors():
    import docker.errors  # noqa: PLC0415
    return docker.errors


def run(client, name: str, image: str, labels: dict[str, str], **options: Any):
    """Create and start a detached container; a name clash or engine error raises BackendError."""
    errors = docker_errors()
    try:
        container = client.containers.create(image, name=name, labels=labels, detach=True, **options)
    except errors.ImageNotFound:
        raise BackendUnavailable(f"image {image!r} is not in the engine: build it with `labkit images build`") from None
    except errors.APIError as exc:
        raise BackendError(f"could not create container {name}: {exc.explanation or exc}") from None
    try:
        container.start()
    except BaseException as exc:  # never leave a created-but-not-started container behind
        container.remove(force=True)
        if isinstance(exc, errors.APIError):
            raise BackendError(f"could not start container {name}: {exc.explanation or exc}") from None
        raise
    return container


def run_unconfined_paths(client, name: str, image: str, labels: dict[str, str], *, command: list[str],
                         hostname: str, **host_options: Any):
    """Like ``run`` but with /proc/sys writable (the CLI's ``--security-opt systempaths=unconfined``,
    which docker-py cannot pass): empty MaskedPaths and ReadonlyPaths in the host config."""
    errors = docker_errors()
    api = client.api
    try:
        host_config = api.create_host_config(**host_options)
        host_config["MaskedPaths"], host_config["ReadonlyPaths"] = [], []
        cid = api.create_container(image, command, name=name, hostname=hostname, labels=labels,
                                   host_config=host_config)["Id"]
        container = client.containers.get(cid)
        container.start()
        return container
    except errors.ImageNotFound:
        raise BackendUnavailable(f"image {image!r} is not in the engine: build it with `labkit images build`") from None
    except errors.APIError as exc:
        raise BackendError(f"could not start container {name}: {exc.explanation or exc}") from None


def _read_frames(sock: socket.socket, deadline: float) -> tuple[bytes, bytes]:
    """Read Docker's multiplexed stdout/stderr stream until EOF."""
    buf = b""
    while True:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise BackendError("the command in the container did not finish in time") from None
        if not chunk:
            break
        buf += chunk
    out, err, i = [], [], 0
    while i + 8 <= len(buf):
        stream, size = buf[i], struct.unpack(">I", buf[i + 4:i + 8])[0]
        (out if stream == 1 else err).append(buf[i + 8:i + 8 + size])
        i += 8 + size
    return b"".join(out), b"".join(err)


def exec_raw(client, container_id: str, argv: list[str], stdin: bytes | None = None,
             timeout: float = 60.0) -> tuple[int, bytes, bytes]:
    """Run ``argv`` in a container, feeding ``stdin``; returns (exit code, stdout, stderr)."""
    api = client.api
    errors = docker_errors()
    try:
        exec_id = api.exec_create(container_id, argv, stdin=stdin is not None, stdout=True, stderr=True)["Id"]
        response = api.exec_start(exec_id, socket=True)
    except errors.APIError as exc:
        raise BackendError(f"docker exec in {container_id[:12]} failed: {exc.explanation or exc}") from None
    raw = getattr(response, "_sock", response)
    try:
        if stdin is not None:
            raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)
        out, err = _read_frames(raw, time.monotonic() + timeout)
    finally:
        raw.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return (code if code is not None else -1), out, err


def agent(client, container_id: str, command: str, payload: dict[str, Any] | None = None,
          timeout: float = 60.0) -> dict[str, Any]:
    """Call the in-image node agent: JSON in, JSON out; its errors become CommandError."""
    data = json.dumps(payload or {}).encode()
    code, out, err = exec_raw(client, container_id, NODE_AGENT + [command], data, timeout)
    try:
        answer = json.loads(out.decode() or "{}")
    except json.JSONDecodeError:
        answer = {"error": (out + err).decode(errors="replace")[-2000:]}
    if code != 0:
        raise CommandError(f"labkit.node {command} failed: {answer.get('error') or err.decode(errors='replace')}",
                           exit_code=code, output=(out + err).decode(errors="replace"))
    return answer


def pid(container) -> int:
    container.reload()
    value = container.attrs["State"]["Pid"]
    if not value or value <= 1:  # 1 would name the host's init: never act on it
        raise BackendError(f"container {container.name} is not running "
                           f"(status {container.attrs['State'].get('Status')})")
    return value


def labelled(client, lab: str | None = None) -> list:
    """Containers labkit created (for one lab, or every lab when ``lab`` is None)."""
    label = names.LAB if lab is None else f"{names.LAB}={lab}"
    errors = docker_errors()
    found = []
    for row in client.api.containers(all=True, filters={"label": label}):
        try:
            found.append(client.containers.get(row["Id"]))
        except errors.NotFound:  # removed between listing and reading: it is gone, as wanted
            continue
    return found


def remove(client, containers: list, workers: int = 8) -> int:
    """Force-remove containers in parallel; returns how many went."""
    errors = docker_errors()

    def one(c) -> int:
        try:
            c.remove(force=True)
            return 1
        except errors.NotFound:
            return 0

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return sum(pool.map(one, containers))
    except RuntimeError:  # at interpreter exit no new threads may start: remove one by one
        return sum(one(c) for c in containers)
