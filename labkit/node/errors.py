"""Error type of the node agent and the wording of socket/OS errors.

``NodeError`` is what command handlers raise for bad input or failed operations; the CLI
turns it into exit code 2 and ``{"error": message, **extra}`` on stdout.
``describe_oserror`` maps errno values to the short, precise phrases that probe results
and error messages use ("connection refused", "timed out", "no route to host", ...).
"""

import errno
import os
import socket


class NodeError(Exception):
    """A failure reported to the caller as ``{"error": message, **extra}``."""

    def __init__(self, message, **extra):
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_json(self):
        out = {"error": self.message}
        out.update(self.extra)
        return out


_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "broken pipe",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EADDRNOTAVAIL: "address not available",
    errno.EADDRINUSE: "address already in use",
    errno.ENETDOWN: "network is down",
    errno.EHOSTDOWN: "host is down",
    errno.EPROTONOSUPPORT: "protocol not supported",
    errno.ESOCKTNOSUPPORT: "socket type not supported",
    errno.EAFNOSUPPORT: "address family not supported",
    errno.ENOPROTOOPT: "protocol not available",
    errno.EINVAL: "invalid argument",
    errno.ENOENT: "no such file or directory",
}


def describe_oserror(exc):
    """Short lower-case phrase for an OSError (or socket.timeout)."""
    if isinstance(exc, (socket.timeout, TimeoutError)) and not getattr(exc, "errno", None):
        return "timed out"
    code = getattr(exc, "errno", None)
    if code in _ERRNO_WORDS:
        return _ERRNO_WORDS[code]
    if code:
        return os.strerror(code).lower()
    return str(exc) or type(exc).__name__
