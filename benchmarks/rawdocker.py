"""A minimal Docker Engine API client for the benchmarks' raw baselines: standard library only.

The benchmarks compare labkit with the raw tools ("plain ``docker run``", "plain ``nft -f``").
Those baselines must not go through labkit (nor through docker-py, which labkit itself uses), so
this module talks to the engine directly: ``http.client`` over the engine's unix socket
(``DOCKER_HOST=unix://PATH``, else ``/var/run/docker.sock``), one keep-alive connection per
thread. A call costs what the Engine API costs and no more, so a baseline made with it is at
least as cheap as one made with docker-py (``run`` is create + start: docker-py's ``run`` also
inspects the new container in between).

What it does: ``run`` (create + start), ``exec`` (with stdin; the multiplexed stream, 8-byte
header ``[stream, 0, 0, 0, size big-endian]``, is decoded here), ``inspect``, ``containers``
(list by label), ``remove`` (force), ``stats``, ``version``; and ``node_container``, which finds
a lab's node container through labkit's documented labels (below).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlencode

from labkit.runtime.remote import UnixHTTPConnection  # HTTP over a unix socket, stdlib only

# labkit's documented label contract: every container of a lab carries these (docker backend).
LAB = "io.labkit.lab"        # the lab's name
OWNER = "io.labkit.owner"    # whose lab it is (lab.owner)
ROLE = "io.labkit.role"      # node | pause | app | internet
NODE = "io.labkit.node"      # node-1, node-2, ...
POD = "io.labkit.pod"        # ns/name (pause and app containers)

DEFAULT_SOCKET = "/var/run/docker.sock"


class EngineError(RuntimeError):
    """The engine answered with an error status (``status``), or could not be reached."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def socket_path() -> str:
    """The engine's unix socket: ``DOCKER_HOST=unix://PATH``, else the default socket."""
    host = os.environ.get("DOCKER_HOST", "").strip()
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://"):]
    raise EngineError(f"DOCKER_HOST={host!r}: the raw benchmark client speaks to unix:// sockets only")


def _frames(data: bytes) -> tuple[bytes, bytes]:
    """Split Docker's multiplexed stream into (stdout, stderr)."""
    out, err, i = bytearray(), bytearray(), 0
    while i + 8 <= len(data):
        stream, size = data[i], struct.unpack(">I", data[i + 4:i + 8])[0]
        (err if stream == 2 else out).extend(data[i + 8:i + 8 + size])
        i += 8 + size
    return bytes(out), bytes(err)


class Engine:
    """One Docker engine, reached over its unix socket."""

    def __init__(self, path: str | None = None, timeout: float = 120.0):
        self.path = path or socket_path()
        self.timeout = timeout
        self._local = threading.local()

    # ------------------------------------------------------------ HTTP
    def _connection(self) -> tuple[UnixHTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        conn = self._local.conn = UnixHTTPConnection(self.path, self.timeout)
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """One API call; returns the decoded JSON answer (None when empty); errors raise EngineError."""
        url = path + ("?" + urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        while True:
            conn, reused = self._connection()
            try:
                conn.request(method, url, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop()
                if not reused:  # a fresh connection failed: the engine is not there
                    raise
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise EngineError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.will_close:
            self._drop()
        if response.status >= 400:
            try:
                message = json.loads(raw).get("message", "")
            except ValueError:
                message = raw.decode(errors="replace")
            raise EngineError(f"{method} {path}: {response.status} {message}", response.status)
        if not raw:
            return None
        return json.loads(raw) if response.getheader("Content-Type", "").startswith("application/json") else raw

    def close(self) -> None:
        self._drop()

    # ------------------------------------------------------------ engine
    def version(self) -> dict[str, Any]:
        return self.request("GET", "/version")

    # ------------------------------------------------------------ containers
    def run(self, image: str, cmd: list[str], *, name: str | None = None, labels: dict[str, str] | None = None,
            network_mode: str = "none") -> str:
        """Create and start a detached container (``docker run -d``); returns its id."""
        body = {"Image": image, "Cmd": list(cmd), "Labels": dict(labels or {}),
                "HostConfig": {"NetworkMode": network_mode}}
        cid = self.request("POST", "/containers/create", body, {"name": name} if name else None)["Id"]
        try:
            self.request("POST", f"/containers/{cid}/start")
        except BaseException:
            self.remove(cid)
            raise
        return cid

    def inspect(self, cid: str) -> dict[str, Any]:
        return self.request("GET", f"/containers/{quote(cid)}/json")

    def containers(self, labels: dict[str, str | None], all: bool = True) -> list[dict[str, Any]]:
        """Containers carrying every label given (a value of None: the key, with any value)."""
        wanted = [key if value is None else f"{key}={value}" for key, value in labels.items()]
        return self.request("GET", "/containers/json",
                            query={"all": "1" if all else "0", "filters": json.dumps({"label": wanted})})

    def remove(self, cid: str) -> bool:
        """``docker rm -f``; False when it was already gone."""
        try:
            self.request("DELETE", f"/containers/{quote(cid)}", query={"force": "1"})
            return True
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise

    def remove_all(self, ids: list[str], workers: int = 8) -> int:
        """Force-remove containers in parallel; returns how many went."""
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return sum(pool.map(self.remove, ids))

    def stats(self, cid: str) -> dict[str, Any]:
        """One sample of the engine's resource statistics (``docker stats --no-stream``)."""
        return self.request("GET", f"/containers/{quote(cid)}/stats", query={"stream": "false"})

    def exec(self, cid: str, argv: list[str], stdin: bytes | None = None,
             timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        """``docker exec [-i]``: run ``argv`` in a running container, feeding ``stdin``;
        returns (exit code, stdout, stderr)."""
        exec_id = self.request("POST", f"/containers/{quote(cid)}/exec", {
            "AttachStdin": stdin is not None, "AttachStdout": True, "AttachStderr": True, "Tty": False,
            "Cmd": list(argv)})["Id"]
        body = json.dumps({"Detach": False, "Tty": False}).encode()
        head = (f"POST /exec/{exec_id}/start HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n").encode()
        deadline = time.monotonic() + timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # the stream takes its connection over
        try:
            sock.settimeout(timeout)
            sock.connect(self.path)
            sock.sendall(head + body)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise EngineError(f"exec {argv[0]}: the engine closed the connection")
                data += chunk
            status_line, _, data = data.partition(b"\r\n\r\n")
            status = int(status_line.split(None, 2)[1])
            if status not in (101, 200):
                raise EngineError(f"exec {argv[0]}: {status} {data.decode(errors='replace')[:300]}", status)
            if stdin is not None:
                sock.sendall(stdin)
                sock.shutdown(socket.SHUT_WR)
            chunks = [data]
            while True:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = sock.recv(65536)
                except socket.timeout as exc:
                    raise EngineError(f"exec {argv[0]} did not finish in {timeout} s") from exc
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            sock.close()
        out, err = _frames(b"".join(chunks))
        while True:  # the stream ends as the process does; its exit code follows at once
            info = self.request("GET", f"/exec/{exec_id}/json")
            if not info.get("Running") or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        code = info.get("ExitCode")
        return (code if code is not None else -1), out, err

    # ------------------------------------------------------------ labkit's labels
    def lab_containers(self, lab: str, owner: str, **labels: str) -> list[dict[str, Any]]:
        """The containers of ``owner``'s lab ``lab`` (narrowed by more labels: role=..., node=...)."""
        keys = {"role": ROLE, "node": NODE, "pod": POD}
        return self.containers({LAB: lab, OWNER: owner, **{keys[k]: v for k, v in labels.items()}})

    def node_container(self, lab: str, owner: str, node: str = "node-1") -> str:
        """The id of node ``node``'s container in ``owner``'s lab ``lab``."""
        found = self.lab_containers(lab, owner, role="node", node=node)
        if len(found) != 1:
            raise EngineError(f"expected one container labelled {LAB}={lab}, {OWNER}={owner}, {ROLE}=node, "
                              f"{NODE}={node}; found {len(found)}")
        return found[0]["Id"]
