"""The lab server's transport with hostile clients: who is calling is decided before a byte
of the body is read, lengths outside 0..MAX_BODY are refused at once, and an answer always
comes (as labkit's error JSON), on a real unix socket served by a thread of this process."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from labkit.runtime.sim import SimBackend
from labkit.runtime.wire import Unauthorized
from labkit.server.app import LabServer
from labkit.server.http import MAX_BODY, UnixHTTPServer


def only_ann(sock, headers) -> str:
    if headers.get("Authorization") != "token ann-secret":
        raise Unauthorized("who are you?")
    return "ann"


@pytest.fixture
def address(tmp_path):
    path = str(tmp_path / "s.sock")
    server = UnixHTTPServer(path, LabServer(SimBackend()), identify=only_ann)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


def exchange(path: str, head: str, body: bytes = b"", wait: float = 5.0) -> tuple[int, dict, float]:
    """Send raw bytes; (status, JSON answer, seconds until it came)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(wait)
        s.connect(path)
        started = time.monotonic()
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                [h for h in data.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1]):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1]), time.monotonic() - started


def test_a_caller_without_a_token_is_answered_before_its_body_is_read(address):
    # a body is announced but never sent: the answer must not wait for it
    status, answer, took = exchange(address, "POST /v1/labs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n")
    assert status == 401 and answer["error"]["type"] == "Unauthorized" and took < 2


@pytest.mark.parametrize("length, status", [("-1", 400), ("lots", 400), (str(MAX_BODY + 1), 413)])
def test_lengths_outside_the_bounds_are_refused_at_once(address, length, status):
    got, answer, took = exchange(address, f"POST /v1/labs HTTP/1.1\r\nHost: x\r\nAuthorization: token ann-secret\r\n"
                                          f"Content-Length: {length}\r\n")
    assert got == status and answer["error"]["path"] == "Content-Length" and took < 2


def test_a_good_call_is_answered(address):
    body = json.dumps({"name": "one"}).encode()
    status, answer, _ = exchange(address, "POST /v1/labs HTTP/1.1\r\nHost: x\r\nAuthorization: token ann-secret\r\n"
                                          f"Content-Length: {len(body)}\r\n", body)
    assert status == 200 and answer == {"name": "one", "owner": "ann"}
    status, answer, _ = exchange(address, "POST /v1/labs HTTP/1.1\r\nHost: x\r\nAuthorization: token ann-secret\r\n"
                                          "Content-Length: 5\r\n", b"[1,2]")
    assert status == 400 and answer["error"]["path"] == "body"
