"""``connect``: hold one TCP connection open from inside a pod's network namespace.

Owns the client side of a long-lived connection (used to show that conntrack keeps an
established flow alive after a policy starts denying new ones). The first stdin line is a
JSON object ``{"netns", "dst", "port", "timeout"}``; each further stdin line sends one
message over the same connection; every outcome is one JSON line on stdout. Ends at EOF.
"""

import json
import socket
import sys
import time

from .errors import describe_oserror
from .netns import enter_netns


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _exchange(sock, message, timeout):
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        sock.sendall(message)
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return {"ok": False, "error": "connection closed by the other end"}
            data += chunk
    except socket.timeout:
        return {"ok": False, "error": "timed out (no answer on the established connection)"}
    except OSError as exc:
        return {"ok": False, "error": describe_oserror(exc)}
    return {"ok": True, "answer": data.decode(errors="replace").strip(),
            "latency_ms": round((time.monotonic() - start) * 1000, 2)}


def main(stdin=sys.stdin):
    try:
        spec = json.loads(stdin.readline() or "{}")
        timeout = float(spec.get("timeout", 1.0))
        try:
            enter_netns(spec.get("netns"))  # this process exists only for this connection
        except OSError as exc:  # the namespace is gone, or is the host's (refused)
            _emit({"ok": False, "error": exc.strerror or str(exc)})
            return 2
        sock = socket.create_connection((spec["dst"], int(spec["port"])), timeout=timeout)
    except (KeyError, ValueError) as exc:
        _emit({"ok": False, "error": "bad request: %s" % exc})
        return 2
    except OSError as exc:
        _emit({"ok": False, "error": describe_oserror(exc)})
        return 1
    _emit(_exchange(sock, b"hold\n", timeout))
    for _ in stdin:
        _emit(_exchange(sock, b"ping\n", timeout))
    sock.close()
    return 0
