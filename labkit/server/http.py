"""The lab server's transports: HTTP/1.1 with JSON bodies, on a unix socket or on TCP.

Owns turning a connection into a call of ``LabServer.handle``: the body (bounded, a JSON
object), the caller (an identity from ``labkit.server.identity``: peer credentials on a unix
socket, a JupyterHub token on either) and the answer. The unix socket is made readable and
writable by everyone (``0666``): being able to connect gives a learner only labkit's own
calls on their own labs, never the engine. TCP (inside a cluster) is served only with a hub
identity: there are no peer credentials there.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

from labkit.errors import LabkitError, ModelError
from labkit.runtime.wire import error_to_dict, status_of
from labkit.server.app import LabServer
from labkit.server.identity import PeerIdentity

MAX_BODY = 8 * 1024 * 1024  # a request body larger than this is refused before it is read
MAX_CONNECTIONS = 64  # served at once (each a thread); more are closed at once
log = logging.getLogger(__name__)


Identity = Callable[[socket.socket, Mapping[str, str]], str]


class _Handler(BaseHTTPRequestHandler):
    server: "UnixHTTPServer | TCPHTTPServer"
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may stay silent (a slow or stuck client frees its thread)

    def _serve(self, method: str) -> None:
        try:
            owner = self.server.identify(self.connection, self.headers)  # before a byte of the body is read
        except LabkitError as exc:
            self._answer(status_of(exc), error_to_dict(exc), close=True)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._answer(413 if length > MAX_BODY else 400, error_to_dict(ModelError(
                f"Content-Length must be a number from 0 to {MAX_BODY}", path="Content-Length")), close=True)
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._answer(400, error_to_dict(ModelError("the body must be a JSON object", path="body")))
            return
        try:
            status, answer = self.server.app.handle(owner, method, self.path, body)
        except Exception as exc:  # noqa: BLE001 - a bug must answer (and be logged), not drop the connection
            log.exception("%s %s of %s failed", method, self.path, owner)
            status, answer = 500, error_to_dict(LabkitError(f"the lab server failed: {type(exc).__name__}: {exc}"))
        self._answer(status, answer)

    def _answer(self, status: int, answer: dict, close: bool = False) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if close:  # the request's body (if any) was not read: the connection cannot carry another
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        return None  # requests are not logged to stderr (the server's owner may add a logger)

    def address_string(self) -> str:
        return "unix" if isinstance(self.client_address, (str, bytes)) else super().address_string()


class _Bounded:
    """At most ``MAX_CONNECTIONS`` connections served at once; one more is closed at once."""

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            log.warning("more than %d connections at once: one refused", MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class UnixHTTPServer(_Bounded, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, app: LabServer, identify: Identity | None = None):
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise LabkitError(f"{path} exists and is not a socket: choose another --socket")
            os.unlink(path)  # a socket left by a server that died
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        super().__init__(path, _Handler)
        os.chmod(path, 0o666)
        self.app, self.identify = app, identify or PeerIdentity()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)


class TCPHTTPServer(_Bounded, ThreadingHTTPServer):
    """The lab server on a TCP address (inside a cluster): callers are known by their hub token only."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: LabServer, identify: Identity):
        if isinstance(identify, PeerIdentity):
            raise LabkitError("on TCP there are no peer credentials: serve TCP with --hub (callers' hub tokens)")
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.app, self.identify = app, identify
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
