"""``capture``: tcpdump in a network namespace, streamed back as whole pcap records.

Owns the node side of ``lab.capture``. The first stdin line is a JSON object ``{"netns":
"/proc/<pid>/ns/net" | null, "iface": "eth0" | "any", "filter", "seconds", "count", "max_bytes"}``.
A filter is compiled first (``tcpdump -d``, same namespace and interface); then ``tcpdump -i
IFACE -U --immediate-mode -n -w - -c COUNT -- FILTER`` runs in the namespace (``nsenter`` on
the file opened and checked here, as ``exec-in`` does) in its own process group. Stdout:

* ``{"error": "...", "field": "filter"}`` (or without ``field``) when it could not start; exit 2;
* ``{"ready": true, "started": <epoch seconds>, "interfaces": {index: name}}`` once tcpdump listens;
* ``{"pcap": "<base64>"}`` with whole records only (the first also carries the file header);
* ``{"done": true, "reason": "time|count|bytes|stopped|ended", "packets": n, "bytes": b, "note": ...}``.

It ends after ``seconds``, ``count`` packets, before the file would pass ``max_bytes``, on a
line ``stop`` or at EOF on stdin ("stopped"), or when tcpdump ends by itself ("ended", with
tcpdump's words in ``note``). tcpdump's process group is killed on every way out.
"""

import base64
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

from .errors import NodeError
from .netns import open_netns

MAX_SECONDS, MAX_COUNT, MIN_BYTES, MAX_BYTES, MAX_FILTER = 600, 100000, 1024, 64 << 20, 1000
IFACES = ("eth0", "any")
READY_TIMEOUT, DRAIN_TIMEOUT = 10.0, 2.0  # seconds
CHUNK = 48 * 1024      # raw bytes per {"pcap": ...} line at most
FLUSH_EVERY = 0.2      # seconds: records are sent on at least this often
FILE_HEADER, RECORD_HEADER = 24, 16
LITTLE_ENDIAN = (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")  # pcap magic, micro- and nanoseconds


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _number(spec, key, kind, low, high):
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        raise NodeError("%s: must be a number in [%s, %s], got %r" % (key, low, high, value), field=key)
    return value


def read_spec(line):
    """The request of the first stdin line, checked; a NodeError names the field."""
    try:
        spec = json.loads(line or "{}")
    except ValueError as exc:
        raise NodeError("invalid JSON on stdin: %s" % exc) from exc
    if not isinstance(spec, dict):
        raise NodeError("the first stdin line must be a JSON object")
    netns = spec.get("netns")
    if netns is not None and (not isinstance(netns, str) or not netns):
        raise NodeError("netns: must be a non-empty string or null", field="netns")
    if spec.get("iface") not in IFACES:
        raise NodeError("iface: must be one of %s" % ", ".join(IFACES), field="iface")
    bpf = spec.get("filter")
    if bpf is not None and (not isinstance(bpf, str) or len(bpf) > MAX_FILTER
                            or any(c in bpf for c in "\0\r\n")):
        raise NodeError("filter: must be one line of at most %d characters" % MAX_FILTER, field="filter")
    seconds = _number(spec, "seconds", (int, float), 0.001, MAX_SECONDS)
    return {"netns": netns, "iface": spec["iface"], "filter": bpf.strip() if bpf and bpf.strip() else None,
            "seconds": float(seconds), "count": _number(spec, "count", int, 1, MAX_COUNT),
            "max_bytes": _number(spec, "max_bytes", int, MIN_BYTES, MAX_BYTES)}


class Records:
    """Cuts tcpdump's pcap stream into the file header and whole records."""

    def __init__(self):
        self.buf, self.header, self.order = b"", None, "<"

    def feed(self, data):
        """The complete pieces now available: the file header first, then one record each."""
        buf, at, out = self.buf + data, 0, []
        if self.header is None and len(buf) >= FILE_HEADER:
            self.header, at = buf[:FILE_HEADER], FILE_HEADER
            self.order = "<" if self.header[:4] in LITTLE_ENDIAN else ">"
            out.append(self.header)
        while self.header is not None and len(buf) - at >= RECORD_HEADER:
            end = at + RECORD_HEADER + struct.unpack_from(self.order + "I", buf, at + 8)[0]
            if len(buf) < end:
                break
            out.append(buf[at:end])
            at = end
        self.buf = buf[at:]
        return out


class Stdin:
    """Lines of fd 0 read without buffering beyond what was asked (so ``select`` sees the rest)."""

    def __init__(self, fd=0):
        self.fd, self.buf, self.eof = fd, b"", False

    def first_line(self):
        while b"\n" not in self.buf and not self.eof:
            self.pump()
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace")

    def pump(self):
        """Read what is there; True when a ``stop`` line or EOF came."""
        data = os.read(self.fd, 4096)
        self.eof, self.buf = not data, self.buf + data
        return self.eof or any(line.strip() == b"stop" for line in self.buf.split(b"\n")[:-1])


def _tcpdump_words(text):
    """tcpdump's own message, without its notes on link types and counters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in lines if "data link type" not in line and "packets " not in line]
    return "; ".join(kept or lines)[-600:] or "tcpdump ended without a word"


def _nsenter(fd):
    return ["nsenter", "--net=/proc/self/fd/%d" % fd, "--"] if fd is not None else []


def _compile(fd, iface, bpf):
    """Does tcpdump accept the filter on this interface? Raises NodeError(field="filter")."""
    try:
        proc = subprocess.run(_nsenter(fd) + ["tcpdump", "-i", iface, "-d", "--", bpf], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10,
                              pass_fds=(fd,) if fd is not None else (), start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise NodeError("tcpdump -d took more than 10 s to compile the filter") from exc
    except OSError as exc:
        raise NodeError("cannot run tcpdump: %s" % (exc.strerror or exc)) from exc
    if proc.returncode != 0:
        raise NodeError(_tcpdump_words(proc.stderr.decode("utf-8", "replace")), field="filter")


def _kill(proc):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group this agent started, never another
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _interfaces(netns):
    """Interface index -> name in the agent's own namespace (a node's): ``-i any`` frames carry the index."""
    try:
        return {} if netns else {str(index): name for index, name in socket.if_nameindex()}
    except OSError:
        return {}


def _start(spec):
    fd = None
    if spec["netns"]:
        try:
            fd = open_netns(spec["netns"])
        except OSError as exc:
            raise NodeError("netns: %s" % exc.strerror, field="netns") from exc
    argv = _nsenter(fd) + ["tcpdump", "-i", spec["iface"], "-U", "--immediate-mode", "-n", "-w", "-",
                           "-c", str(spec["count"])] + (["--", spec["filter"]] if spec["filter"] else [])
    try:
        if spec["filter"]:
            _compile(fd, spec["iface"], spec["filter"])
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, pass_fds=(fd,) if fd is not None else ())
    except OSError as exc:
        raise NodeError("cannot run tcpdump: %s" % (exc.strerror or exc)) from exc
    finally:
        if fd is not None:
            os.close(fd)


class Session:
    """One running tcpdump and what it has written so far."""

    def __init__(self, proc, spec, stdin):
        self.proc, self.spec, self.stdin, self.records, self.stderr = proc, spec, stdin, Records(), b""
        self.out, self.err, self.out_open, self.err_open = proc.stdout.fileno(), proc.stderr.fileno(), True, True
        self.pending, self.pending_size, self.last_flush = [], 0, time.monotonic()
        self.packets, self.size, self.reason, self.full = 0, 0, None, False

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while b"listening on" not in self.stderr:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.err_open:  # too slow, or tcpdump ended: its words say why
                late = "tcpdump did not start listening within %g s: " % READY_TIMEOUT if self.err_open else ""
                raise NodeError(late + _tcpdump_words(self.stderr.decode("utf-8", "replace")))
            self.step(min(remaining, 0.5))

    def step(self, timeout):
        """Wait up to ``timeout`` for output of tcpdump or a line on stdin, and take it."""
        fds = [fd for fd, is_open in ((self.out, self.out_open), (self.err, self.err_open)) if is_open]
        if not self.stdin.eof and self.reason is None:
            fds.append(self.stdin.fd)
        if not fds:  # never while tcpdump's pipes are open (every caller checks that)
            return
        ready = select.select(fds, [], [], max(0.0, timeout))[0]
        if self.err in ready:
            data = os.read(self.err, 4096)
            self.err_open = bool(data)
            self.stderr = (self.stderr + data)[-8192:]
        if self.out in ready:
            data = os.read(self.out, 65536)
            self.out_open = bool(data)
            self.take(self.records.feed(data))
        if self.stdin.fd in ready and self.stdin.pump() and self.reason is None:
            self.reason = "stopped"

    def take(self, pieces):
        """Keep whole records while the bounds allow; the first piece is the file header."""
        for piece in pieces:
            if self.full:
                return
            if self.size:  # a record, not the header
                if self.size + len(piece) > self.spec["max_bytes"]:
                    self.full, self.reason = True, self.reason or "bytes"
                    return
                self.packets += 1
            self.pending.append(piece)
            self.pending_size += len(piece)
            self.size += len(piece)
            if self.packets >= self.spec["count"]:
                self.full, self.reason = True, self.reason or "count"

    def flush(self, force=False):
        now = time.monotonic()
        if self.pending and (force or self.pending_size >= CHUNK or now - self.last_flush >= FLUSH_EVERY):
            data = b"".join(self.pending)
            for start in range(0, len(data), CHUNK):
                _emit({"pcap": base64.b64encode(data[start:start + CHUNK]).decode("ascii")})
            self.pending, self.pending_size, self.last_flush = [], 0, now

    def run(self):
        deadline = time.monotonic() + self.spec["seconds"]
        while self.reason is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.reason = "time"
                break
            if not self.out_open:  # tcpdump is done: its -c count, or it ended by itself
                self.reason = "count" if self.packets >= self.spec["count"] else "ended"
                break
            self.step(min(remaining, FLUSH_EVERY))
            self.flush()
        self.drain()
        self.flush(force=True)

    def drain(self):
        """Let tcpdump write what it has captured until now, then take it (within the bounds)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                self.proc.send_signal(signal.SIGINT)  # tcpdump flushes its output and ends
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while (self.out_open or self.err_open) and time.monotonic() < deadline:
            self.step(deadline - time.monotonic())

    def done(self):
        note = _tcpdump_words(self.stderr.decode("utf-8", "replace")) if self.reason == "ended" else ""
        return {"done": True, "reason": self.reason, "packets": self.packets, "bytes": self.size, "note": note}


def main(fd=0):
    stdin = Stdin(fd)
    proc = None
    try:
        spec = read_spec(stdin.first_line())
        proc = _start(spec)
        session = Session(proc, spec, stdin)
        session.wait_ready()
        _emit({"ready": True, "started": time.time(), "interfaces": _interfaces(spec["netns"])})
        session.flush(force=True)  # the file header, already written
        session.run()
        _emit(session.done())
        return 0
    except NodeError as exc:
        _emit(exc.to_json())
        return 2
    except Exception as exc:  # never a traceback instead of JSON
        _emit({"error": "internal error: %s: %s" % (type(exc).__name__, exc)})
        return 2
    finally:
        if proc is not None:
            _kill(proc)
