"""The remote backend: labs on a lab server (``labkit serve``), over its unix socket or HTTP.

Owns the client side of the contract on the wire: each ``Backend``/``LabRuntime`` call is
one HTTP request with a JSON body (``labkit.runtime.wire``); answers come back as the public
result types, errors as the same ``LabkitError`` classes. The server decides who the caller
is (the socket's peer credentials, and/or the JupyterHub token sent with every request, from
``$LABKIT_TOKEN`` or the ``$JUPYTERHUB_API_TOKEN`` a hub server has), so ``owner`` here only
has to match it. Results say
they are real packets: they come from the server's engine. Only the standard library is used.
Captures and flow logs, which run on the server between calls, are ``remote_observe``'s handles.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import urllib.parse
from typing import Any

from labkit.dataplane import nft_trace
from labkit.errors import BackendError, BackendUnavailable, LabkitError
from labkit.model.cluster import Change, Cluster
from labkit.results import ExecResult, ProbeResult
from labkit.runtime import capturing, wire
from labkit.runtime.base import (Backend, Capabilities, LabInfo, LabRuntime, ProbeRequest, Readiness, model_op,
                                 replay)
from labkit.runtime.flowing import sources_of
from labkit.runtime.remote_observe import RemoteCapture, RemoteFlows


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the standard library speaks it only over TCP)."""

    def __init__(self, path: str, timeout: float, host: str = "localhost"):
        super().__init__(host, timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Client:
    """One lab server: a unix socket (``unix:///run/labkit/server.sock`` or a plain path) or an
    HTTP address (``http://labkit-server:8765``, with an optional path prefix)."""

    def __init__(self, address: str, timeout: float = 300.0, token: str | None = None):
        address = address.strip()
        self.url = urllib.parse.urlsplit(address) if address.startswith(("http://", "https://")) else None
        self.path = address if self.url else address.removeprefix("unix://")
        self.timeout = timeout
        self.token = token if token is not None else next(
            (os.environ[e].strip() for e in wire.TOKEN_ENVS if os.environ.get(e, "").strip()), None)

    def _connection(self) -> http.client.HTTPConnection:
        if self.url is None:
            return UnixHTTPConnection(self.path, self.timeout)
        cls = http.client.HTTPSConnection if self.url.scheme == "https" else http.client.HTTPConnection
        return cls(self.url.hostname or "localhost", self.url.port, timeout=self.timeout)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        conn = self._connection()
        if self.url is not None:
            path = self.url.path.rstrip("/") + path
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            if self.token:
                headers["Authorization"] = f"token {self.token}"
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except OSError as exc:
            raise BackendUnavailable(f"the lab server at {self.path} does not answer ({exc}): is `labkit serve` "
                                     "running?") from exc
        finally:
            conn.close()
        try:
            answer = json.loads(raw or b"{}")
        except ValueError as exc:
            raise BackendError(f"the lab server answered {response.status} with something that is not JSON") from exc
        if response.status != 200:
            raise wire.error_from_dict(answer)
        return answer


class RemoteLab(LabRuntime):
    simulated = False

    def __init__(self, client: Client, name: str, owner: str, cluster: Cluster):
        super().__init__(name, owner, cluster)
        self.client = client
        self._closed = False
        self.captures = capturing.Running()  # running packet captures: stopped (and their files written) at close

    def _call(self, method: str, action: str, body: dict | None = None) -> dict:
        return self.client.call(method, wire.lab_path(self.name, action), body)

    def change(self, op: dict[str, Any], check=None) -> list[Change]:
        new, _ = model_op(self.cluster, op)  # checked here first: bad input never travels
        if check is not None:
            check(new)
        answer = self._call("POST", "change", {"op": op})
        self.cluster = new.with_readiness(self.cluster.not_ready & set(new.pods))
        self.history.append(op)
        return _changes(answer)

    def _enforce(self, old: Cluster, new: Cluster) -> None:  # the server enforces; change() is overridden
        raise BackendError("a remote lab changes only through the lab server")

    def refresh_readiness(self) -> Readiness:
        answer = self._call("POST", "readiness")
        self.cluster = self.cluster.with_readiness(answer["not_ready"])
        return Readiness(frozenset(answer["not_ready"]), tuple(answer["events"]))

    def readiness_detail(self, pod: str) -> str:
        return self._call("POST", "readiness-detail", {"pod": pod})["text"]

    def probe(self, requests: list[ProbeRequest], timeout: float) -> list[ProbeResult]:
        body = {"timeout": timeout, "requests": [vars(r) for r in requests]}
        return [ProbeResult.from_dict(r) for r in self._call("POST", "probe", body)["results"]]

    def walk(self, requests: list[ProbeRequest], timeout: float) -> tuple[list[ProbeResult], list]:
        answer = self._call("POST", "walk", {"timeout": timeout, "requests": [vars(r) for r in requests]})
        try:
            events = [nft_trace.TraceEvent.from_dict(e) for e in answer.get("events", [])]
        except ValueError as exc:
            raise BackendError(f"the lab server sent a walk labkit cannot read: {exc}") from exc
        return [ProbeResult.from_dict(r) for r in answer["results"]], events

    def exec(self, pod: str, argv: list[str], container: str | None = None) -> ExecResult:
        return ExecResult.from_dict(self._call("POST", "exec", {"pod": pod, "argv": argv, "container": container}))

    def logs(self, pod: str, container: str | None = None) -> str:
        return self._call("POST", "logs", {"pod": pod, "container": container})["text"]

    def rules(self) -> str:
        return self._call("GET", "rules")["text"]

    def deciding_rules(self, src: str, dst: str, port: int, protocol: str) -> list[str]:
        return self._call("POST", "deciding-rules", {"src": src, "dst": dst, "port": port, "protocol": protocol})["lines"]

    def connect(self, src: str, dst: str, port: int, timeout: float):
        raise BackendUnavailable("lab.connect() (a held connection) is not available through a lab server yet: "
                                 "use lab.probe(), or a lab on the docker backend")

    def reset_connections(self) -> int:
        return self._call("POST", "reset-connections")["nodes"]

    def capture(self, target: str, spec: dict[str, Any]) -> RemoteCapture:
        """tcpdump on the lab server's engine; returns once it listens (``remote_observe``)."""
        return self.captures.add(RemoteCapture(self._call, target, spec))  # type: ignore[return-value]

    def flows(self, on_event) -> RemoteFlows:
        """The lab server's flow log of this lab, polled (``remote_observe``)."""
        return sources_of(self).add(RemoteFlows(self._call, on_event))  # type: ignore[return-value]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.captures.stop_all()  # their pcap comes back and their files are written first
            sources_of(self).stop_all()
            try:
                self._call("DELETE", "")
            except LabkitError as exc:  # gone already (the server restarted and removed it): nothing is left
                if "no lab named" not in str(exc):
                    raise


def _changes(answer: dict) -> list[Change]:
    out = []
    for line in answer.get("changes", []):
        what, action = line.rsplit(" ", 1)
        kind, ref = what.split("/", 1)
        out.append(Change(kind, ref, action))
    return out


class RemoteBackend(Backend):
    """A lab server's engine, through ``labkit serve``'s unix socket or HTTP address."""

    name = "remote"
    simulated = False

    def __init__(self, address: str, timeout: float = 300.0):
        self.client = Client(address, timeout)

    def __repr__(self) -> str:
        return f"<RemoteBackend {self.client.path}>"

    def whoami(self) -> dict[str, Any]:
        """Who the lab server says this caller is, with the limits it applies to them."""
        return self.client.call("GET", f"{wire.API}/whoami")

    def capabilities(self) -> Capabilities:
        caps = Capabilities.from_dict(self.client.call("GET", f"{wire.API}/capabilities"))
        return Capabilities("remote", caps.real_packets, caps.sctp, caps.max_nodes, caps.protocols,
                            f"lab server {self.client.path} ({caps.backend} on {caps.where})")

    def list_labs(self, owner: str | None = None) -> list[LabInfo]:
        # the server's engine runs them; through this backend they are remote labs of the caller
        return [dataclasses.replace(LabInfo.from_dict(i), backend=self.name)
                for i in self.client.call("GET", f"{wire.API}/labs")["labs"]]

    def remove_lab(self, name: str, owner: str) -> int:
        try:
            self.client.call("DELETE", wire.lab_path(name))
        except LabkitError as exc:
            if "no lab named" in str(exc):
                return 0
            raise
        return 1

    def remove_labs(self, owner: str) -> int:
        return self.client.call("DELETE", f"{wire.API}/labs")["removed"]

    def remove_every_lab(self) -> int:
        raise wire.Refused("only whoever runs the lab server removes every lab (`labkit admin` on its machine)")

    def start(self, name: str, nodes: int, owner: str, *, seed: int = 0) -> RemoteLab:
        answer = self.client.call("POST", f"{wire.API}/labs", {"name": name, "nodes": nodes})
        return RemoteLab(self.client, name, answer["owner"], replay(nodes, []))

    def attach(self, name: str, nodes: int, history: list[dict[str, Any]], owner: str) -> RemoteLab:
        answer = self.client.call("POST", wire.lab_path(name, "attach"), {"nodes": nodes, "history": history})
        found = answer.get("nodes")  # the lab's own node count (a lab server of an older labkit omits it)
        if isinstance(found, int) and not isinstance(found, bool) and found >= 1:
            nodes = found
        lab = RemoteLab(self.client, name, owner, replay(nodes, answer["history"]))
        lab.history = list(answer["history"])
        return lab
