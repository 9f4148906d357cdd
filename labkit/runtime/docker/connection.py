"""A long-lived TCP connection from a pod, held by the node agent's ``connect`` command.

Owns the streaming ``docker exec`` (stdin kept open) and the line protocol with the agent,
so a learner can send messages over one established flow and watch conntrack keep it
alive after a NetworkPolicy starts denying new connections.
"""
from __future__ import annotations

import json
import socket
import struct
import time

from labkit.errors import BackendError
from labkit.results import ProbeResult
from labkit.runtime.docker.engine import NODE_AGENT, docker_errors


class DockerConnection:
    def __init__(self, client, node_id: str, netns: str, src: str, dst: str, port: int, timeout: float):
        self.src, self.dst, self.port, self.timeout = src, dst, port, timeout
        api = client.api
        try:
            exec_id = api.exec_create(node_id, NODE_AGENT + ["connect"], stdin=True, stdout=True, stderr=True)["Id"]
            response = api.exec_start(exec_id, socket=True)
        except docker_errors().APIError as exc:
            raise BackendError(f"could not open a connection from {src}: {exc.explanation or exc}") from None
        self._sock = getattr(response, "_sock", response)
        self._raw, self._out, self.closed = b"", "", False
        spec = {"netns": netns, "dst": dst, "port": port, "timeout": timeout}
        self.opened = self._result(self._roundtrip(json.dumps(spec) + "\n"))

    def _roundtrip(self, line: str) -> dict:
        self._sock.sendall(line.encode())
        deadline = time.monotonic() + self.timeout + 10
        while "\n" not in self._out:
            self._sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise BackendError("the connection helper in the node did not answer") from None
            if not chunk:
                return {"ok": False, "error": "connection helper ended"}
            self._raw += chunk
            while len(self._raw) >= 8:
                size = struct.unpack(">I", self._raw[4:8])[0]
                if len(self._raw) < 8 + size:
                    break
                if self._raw[0] == 1:
                    self._out += self._raw[8:8 + size].decode(errors="replace")
                self._raw = self._raw[8 + size:]
        line, self._out = self._out.split("\n", 1)
        return json.loads(line)

    def _result(self, answer: dict) -> ProbeResult:
        ok = bool(answer.get("ok"))
        return ProbeResult(ok, answer.get("latency_ms"), answer.get("answer") if ok else None,
                           None if ok else answer.get("error"), False, self.src, self.dst, self.port, "TCP")

    def send(self) -> ProbeResult:
        if self.closed:
            raise BackendError("this connection is closed")
        return self._result(self._roundtrip("ping\n"))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._sock.shutdown(socket.SHUT_WR)
            finally:
                self._sock.close()
