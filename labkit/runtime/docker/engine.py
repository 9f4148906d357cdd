"""The thin layer over docker-py: connect, run, exec (with JSON on stdin), images, remove by label.

Owns every call to the Docker API (nothing else in labkit imports docker-py), the one
decoder of Docker's multiplexed exec stream, and the mapping of engine failures onto
labkit's errors, with the cause kept. It knows nothing about pods or nodes;
``nodes``/``pods`` compose these calls.
"""
from __future__ import annotations

import json
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from labkit.runtime.docker import labels as lk
from labkit.errors import BackendError, BackendUnavailable, CommandError

NODE_AGENT = ["python3", "-m", "labkit.node"]
MAX_OUTPUT = 1 << 20  # what an exec or a log read returns at most (the rest is cut, and said so)
AGENT_MAX_OUTPUT = 64 << 20  # the node agent's own JSON (a 200-pod matrix is a few MiB), not a learner's output


def connect(timeout: float = 30.0, base_url: str | None = None):
    """A docker-py client for ``base_url``, else the engine docker-py finds (DOCKER_HOST or the socket)."""
    try:
        import docker  # noqa: PLC0415 - only the docker backend needs docker-py
    except ImportError as exc:
        raise BackendUnavailable("the docker backend needs the 'docker' package: "
                                 "pip install 'k8s-labkit[docker]'") from exc
    try:
        client = docker.DockerClient(base_url=base_url, timeout=int(timeout)) if base_url else \
            docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "unavailable"
        raise BackendUnavailable(f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]}); on Linux "
                                 "as root, environments/start-dockerd.sh starts one") from exc
    return client


def engine_answers(timeout: float = 2.0) -> tuple[bool, str]:
    """Does a Docker engine answer (as docker-py finds it)? Returns (yes, why)."""
    try:
        client = connect(timeout)
    except BackendUnavailable as exc:
        return False, str(exc).split("; on Linux")[0]
    client.close()
    return True, "a Docker engine answers"


def is_local(client) -> bool:
    """Does the engine run on this machine (a unix socket), so that its kernel is ours?"""
    return where(client).startswith("unix://")


def where(client) -> str:
    """The engine's address, for messages (``unix:///var/run/docker.sock``)."""
    return str(getattr(client.api, "base_url", "") or "the default engine").replace("http+docker://localhost",
                                                                                   "unix:///var/run/docker.sock")


def docker_errors():
    import docker.errors  # noqa: PLC0415
    return docker.errors


def _create_error(name: str, exc) -> BackendError:
    if getattr(exc, "status_code", None) == 409:  # the engine's names are unique: the claim failed
        return BackendError(f"the container name {name} is taken: a lab of this name and owner is running or "
                            "being started by another process at this moment")
    return BackendError(f"could not create container {name}: {exc.explanation or exc}")


def run(client, name: str, image: str, labels: dict[str, str], **options: Any):
    """Create and start a detached container; a name clash or engine error raises BackendError."""
    errors = docker_errors()
    try:
        container = client.containers.create(image, name=name, labels=labels, detach=True, **options)
    except errors.ImageNotFound as exc:
        raise BackendUnavailable(f"image {image!r} is not in the engine: build it with `labkit images build`") from exc
    except errors.APIError as exc:
        raise _create_error(name, exc) from exc
    try:
        container.start()
    except BaseException as exc:  # never leave a created-but-not-started container behind
        container.remove(force=True)
        if isinstance(exc, errors.APIError):
            raise BackendError(f"could not start container {name}: {exc.explanation or exc}") from exc
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
        try:
            cid = api.create_container(image, command, name=name, hostname=hostname, labels=labels,
                                       host_config=host_config)["Id"]
        except errors.ImageNotFound:
            raise
        except errors.APIError as exc:
            raise _create_error(name, exc) from exc
        container = client.containers.get(cid)
        container.start()
        return container
    except errors.ImageNotFound as exc:
        raise BackendUnavailable(f"image {image!r} is not in the engine: build it with `labkit images build`") from exc
    except errors.APIError as exc:
        raise BackendError(f"could not start container {name}: {exc.explanation or exc}") from exc


class FrameDecoder:
    """Docker's multiplexed exec stream (8-byte header: stream, 0, 0, 0, big-endian size; payload).

    Feed it bytes as they come; it keeps partial frames and collects stdout and stderr."""

    def __init__(self) -> None:
        self._buf = b""
        self.stdout, self.stderr = bytearray(), bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        while len(self._buf) >= 8:
            size = struct.unpack(">I", self._buf[4:8])[0]
            if len(self._buf) < 8 + size:
                return
            (self.stdout if self._buf[0] == 1 else self.stderr).extend(self._buf[8:8 + size])
            self._buf = self._buf[8 + size:]

    def take_line(self) -> str | None:
        """The next complete line of stdout (without its newline), or None if none is complete."""
        end = self.stdout.find(b"\n")
        if end < 0:
            return None
        line = bytes(self.stdout[:end]).decode(errors="replace")
        del self.stdout[:end + 1]
        return line


def _recv(sock: socket.socket, deadline: float, what: str) -> bytes:
    sock.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        return sock.recv(65536)
    except socket.timeout as exc:
        raise BackendError(f"{what} did not finish in time") from exc


class ExecStream:
    """A command running in a container with stdin open: write lines, read stdout lines."""

    def __init__(self, client, container_id: str, argv: list[str], what: str):
        api, errors = client.api, docker_errors()
        self.what = what
        try:
            exec_id = api.exec_create(container_id, argv, stdin=True, stdout=True, stderr=True)["Id"]
            response = api.exec_start(exec_id, socket=True)
        except errors.APIError as exc:
            raise BackendError(f"could not start {what}: {exc.explanation or exc}") from exc
        self._sock = getattr(response, "_sock", response)
        self._frames = FrameDecoder()

    def send_line(self, line: str) -> None:
        self._sock.sendall(line.encode() + b"\n")

    def stderr(self) -> str:
        """What the command wrote to stderr so far (said when it ends without its answer)."""
        return bytes(self._frames.stderr).decode(errors="replace")

    def read_line(self, timeout: float) -> str | None:
        """The next stdout line; None when the command ended first."""
        deadline = time.monotonic() + timeout
        while (line := self._frames.take_line()) is None:
            chunk = _recv(self._sock, deadline, self.what)
            if not chunk:
                return None
            self._frames.feed(chunk)
        return line

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:  # the other side already closed: nothing left to shut
            pass
        finally:
            self._sock.close()


def exec_raw(client, container_id: str, argv: list[str], stdin: bytes | None = None,
             timeout: float = 60.0, what: str = "", limit: int = MAX_OUTPUT) -> tuple[int, bytes, bytes]:
    """Run ``argv`` in a container, feeding ``stdin``; returns (exit code, stdout, stderr), at most
    ``limit`` bytes of output (the rest is cut, and said so).

    ``what`` names the container for people (``node-2 of lab 'demo'``) in errors."""
    api = client.api
    errors = docker_errors()
    what = what or f"container {container_id[:12]}"
    try:
        exec_id = api.exec_create(container_id, argv, stdin=stdin is not None, stdout=True, stderr=True)["Id"]
        response = api.exec_start(exec_id, socket=True)
    except errors.NotFound as exc:
        raise BackendError(f"{what} is gone (removed outside labkit?): close the lab and start it again") from exc
    except errors.APIError as exc:
        if "is not running" in str(exc.explanation or exc):
            raise BackendError(f"{what} is not running (stopped or killed outside labkit): close the lab "
                               "and start it again") from exc
        raise BackendError(f"running {argv[0]} in {what} failed: {exc.explanation or exc}") from exc
    raw = getattr(response, "_sock", response)
    frames, deadline = FrameDecoder(), time.monotonic() + timeout
    try:
        if stdin is not None:
            raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)
        while chunk := _recv(raw, deadline, f"{argv[0]} in {what}"):
            frames.feed(chunk)
            if len(frames.stdout) + len(frames.stderr) > limit:  # the rest is not read: the
                break                                             # command gets EPIPE and ends
    finally:
        raw.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    out, err = bytes(frames.stdout[:limit]), bytes(frames.stderr[:limit])
    if len(frames.stdout) + len(frames.stderr) > limit:
        err += f"\n[labkit: the output was cut at {limit // 2**20} MiB]\n".encode()
    return (code if code is not None else -1), out, err


def agent(client, container_id: str, command: str, payload: dict[str, Any] | None = None,
          timeout: float = 60.0, what: str = "") -> dict[str, Any]:
    """Call the in-image node agent: JSON in, JSON out; its errors become CommandError."""
    data = json.dumps(payload or {}).encode()
    code, out, err = exec_raw(client, container_id, NODE_AGENT + [command], data, timeout, what,
                              limit=AGENT_MAX_OUTPUT)
    try:
        answer = json.loads(out.decode() or "{}")
    except json.JSONDecodeError:
        answer = {"error": (out + err).decode(errors="replace")[-2000:]}
    if code != 0:
        raise CommandError(f"labkit.node {command} failed: {answer.get('error') or err.decode(errors='replace')}",
                           exit_code=code, output=(out + err).decode(errors="replace"))
    return answer


def state(container) -> dict[str, Any]:
    """The container's current state (Status, Running, Pid, ...), read afresh."""
    try:
        container.reload()
    except docker_errors().NotFound as exc:
        raise BackendError(f"container {container.name} is gone (removed outside labkit?)") from exc
    return container.attrs["State"]


def pid(container) -> int:
    current = state(container)
    value = current["Pid"]
    if not value or value <= 1:  # 1 would name the host's init: never act on it
        raise BackendError(f"container {container.name} is not running (status {current.get('Status')})")
    return value


def rename(container, name: str) -> None:
    container.reload()
    container.rename(name)


def current_name(container) -> str:
    container.reload()
    return container.name.lstrip("/")


def logs(container) -> str:
    """The container's last log lines, at most ``MAX_OUTPUT`` bytes."""
    return container.logs(tail=10000)[-MAX_OUTPUT:].decode(errors="replace")


def created(container) -> float:
    """When the container was created, in seconds since the epoch."""
    from datetime import datetime  # noqa: PLC0415
    stamp = container.attrs.get("Created", "")
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}"[:8])
    except ValueError:
        return 0.0


def image_labels(client, name: str) -> dict[str, str] | None:
    """The labels of image ``name`` in the engine; None when it is not there."""
    try:
        return dict(client.images.get(name).labels or {})
    except docker_errors().ImageNotFound:
        return None


def has_image(client, name: str) -> bool:
    return image_labels(client, name) is not None


def has_bridge_network(client) -> bool:
    return any(n.name == "bridge" for n in client.networks.list(names=["bridge"]))


def build_image(client, path: str, dockerfile: str, tag: str, buildargs: dict[str, str],
                network_mode: str | None) -> str:
    """``docker build`` through the API; returns the build log, raises CommandError with it."""
    errors = docker_errors()
    try:
        _, chunks = client.images.build(path=path, dockerfile=dockerfile, tag=tag, buildargs=buildargs,
                                        network_mode=network_mode, rm=True, forcerm=True)
    except errors.BuildError as exc:
        log = "".join(str(c.get("stream") or c.get("error") or "") for c in exc.build_log)
        raise CommandError(f"building {tag} from {dockerfile} failed: {exc.msg}\n{log[-3000:]}",
                           exit_code=1, output=log) from exc
    except errors.APIError as exc:
        raise CommandError(f"building {tag} from {dockerfile} failed: {exc.explanation or exc}",
                           exit_code=1, output=str(exc)) from exc
    return "".join(str(c.get("stream") or "") for c in chunks)


def run_once(client, image: str, argv: list[str], timeout: float = 60.0, **options: Any) -> tuple[int, str]:
    """Run a throw-away container (network none unless told) to completion; (exit code, output)."""
    options.setdefault("network_mode", "none")
    container = run(client, f"labkit-probe-{lk.SESSION_ID}-{time.monotonic_ns() % 10**9}", image,
                    {lk.LAB: "", lk.ROLE: "check", lk.SESSION: lk.SESSION_ID}, command=argv, **options)
    try:
        code = container.wait(timeout=timeout).get("StatusCode", -1)
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def labelled(client, lab: str | None = None, owner: str | None = None, session: str | None = None,
             server: str | None = None) -> list:
    """Containers labkit created: of one lab and/or owner and/or session and/or lab server, or all of them."""
    errors = docker_errors()
    found = []
    for row in client.api.containers(all=True, filters={"label": lk.selector(lab, owner, session, server)}):
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
