"""A long-lived TCP connection from a pod, held by the node agent's ``connect`` command.

Owns the line protocol with the agent over one streaming ``docker exec`` (``engine.ExecStream``),
so a learner can send messages over one established flow and watch conntrack keep it
alive after a NetworkPolicy starts denying new connections.
"""
from __future__ import annotations

import json

from labkit.errors import BackendError
from labkit.results import ProbeResult
from labkit.runtime.docker import engine


class DockerConnection:
    def __init__(self, client, node_id: str, netns: str, src: str, dst: str, port: int, timeout: float):
        self.src, self.dst, self.port, self.timeout = src, dst, port, timeout
        self._stream = engine.ExecStream(client, node_id, engine.NODE_AGENT + ["connect"],
                                         f"the connection helper for {src}")
        self.closed = False
        spec = {"netns": netns, "dst": dst, "port": port, "timeout": timeout}
        try:
            self.opened = self._result(self._roundtrip(json.dumps(spec)))
        except BaseException:  # never leave the helper (and its socket) behind
            self.close()
            raise

    def _roundtrip(self, line: str) -> dict:
        self._stream.send_line(line)
        answer = self._stream.read_line(self.timeout + 10)
        if answer is None:
            return {"ok": False, "error": "connection helper ended"}
        return json.loads(answer)

    def _result(self, answer: dict) -> ProbeResult:
        ok = bool(answer.get("ok"))
        return ProbeResult(ok, answer.get("latency_ms"), answer.get("answer") if ok else None,
                           None if ok else answer.get("error"), False, self.src, self.dst, self.port, "TCP")

    def send(self) -> ProbeResult:
        if self.closed:
            raise BackendError("this connection is closed")
        return self._result(self._roundtrip("ping"))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._stream.close()
