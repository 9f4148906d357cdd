"""The lab server's transport: HTTP/1.1 with JSON bodies on a unix socket.

Owns who the caller is on one machine: the kernel's peer credentials of the connection
(``SO_PEERCRED``), so the owner of every lab is the caller's Unix user name, which nobody
can claim to be by writing it in a request. The socket is made readable and writable by
everyone (``0666``): being able to connect gives a learner only labkit's own calls on their
own labs, never the engine. (Hub tokens over TCP, for a cluster, come on top of this.)
"""
from __future__ import annotations

import json
import os
import pwd
import socket
import socketserver
import stat
import struct
from http.server import BaseHTTPRequestHandler
from typing import Callable

from labkit.errors import LabkitError
from labkit.server.app import LabServer

MAX_BODY = 8 * 1024 * 1024  # a request body larger than this is refused before it is read


def peer_user(sock: socket.socket) -> str:
    """The Unix user name of the process at the other end of a unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


class _Handler(BaseHTTPRequestHandler):
    server: "UnixHTTPServer"
    protocol_version = "HTTP/1.1"

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, {"error": {"type": "ModelError", "message": "request too large", "problem":
                                         f"request too large (at most {MAX_BODY} bytes)", "where": "", "path": ""}})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._answer(400, {"error": {"type": "ModelError", "message": "the body must be a JSON object",
                                         "problem": "the body must be a JSON object", "where": "", "path": ""}})
            return
        status, answer = self.server.app.handle(self.server.identify(self.connection), method, self.path, body)
        self._answer(status, answer)

    def _answer(self, status: int, answer: dict) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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
        return "unix"


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, app: LabServer, identify: Callable[[socket.socket], str] = peer_user):
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise LabkitError(f"{path} exists and is not a socket: choose another --socket")
            os.unlink(path)  # a socket left by a server that died
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        super().__init__(path, _Handler)
        os.chmod(path, 0o666)
        self.app, self.identify = app, identify
