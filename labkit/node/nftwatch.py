"""``nft-watch``: switch nftables tracing on for some packets, stream the kernel's trace, switch it off.

Owns the node side of packet walks and of the flow log. The first stdin line is a JSON object
``{"arm": nft text, "disarm": nft text, "seconds": max}``. The agent starts ``nft monitor trace``,
waits until that process has joined the kernel's trace group (its netlink socket in
``/proc/net/netlink``, protocol 12, group NFNLGRP_NFTRACE), applies ``arm`` (tables whose rules
``meta nftrace set 1`` on the chosen packets only), says ``{"armed": true, "pids": [agent, monitor]}``
and then sends each trace line as ``{"t": unix time, "line": text}``. A line ``stop`` on stdin, the end of stdin or
``seconds`` ends it: ``disarm`` is applied and the monitor stopped on every way out, then
``{"done": true, "reason": ...}``. A line ``{"probe": request}`` (a ``probe`` command's request) runs
those probes here while the trace runs and answers ``{"probe": answer}``: a packet walk costs one
``docker exec``, not two. Errors are ``{"error": ...}`` lines. Nothing else is traced,
and no trace table outlives the call, even when the caller dies (stdin ends).
"""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

from . import probe
from .errors import NodeError
from .nft import run_nft

MAX_SECONDS = 3600
NETLINK_NETFILTER = 12
NFNLGRP_NFTRACE_BIT = 1 << (9 - 1)
JOIN_TIMEOUT = 5.0

_out_lock = threading.Lock()


def _emit(obj):
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def _joined(pid):
    """Has process ``pid`` a netfilter netlink socket in the trace group (in this netns)?"""
    try:
        with open("/proc/net/netlink") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        cols = row.split()
        if len(cols) >= 4 and cols[1] == str(NETLINK_NETFILTER) and cols[2] == str(pid):
            if int(cols[3], 16) & NFNLGRP_NFTRACE_BIT:
                return True
    return False


def _stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this call started
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=2)


def _pump(proc, seen):
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line:
            seen[0] += 1
            _emit({"t": time.time(), "line": line})


def _request():
    line = sys.stdin.readline()
    try:
        request = json.loads(line)
    except ValueError:
        return None, "the first stdin line must be a JSON object"
    if not isinstance(request, dict):
        return None, "the first stdin line must be a JSON object"
    for key in ("arm", "disarm"):
        if not isinstance(request.get(key), str) or not request[key].strip():
            return None, "%s: must be nft text" % key
    seconds = request.get("seconds", 30)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_SECONDS:
        return None, "seconds: must be a number in (0, %d]" % MAX_SECONDS
    return request, None


def _command(line):
    """One stdin line: True to stop, else a probe request is run and answered."""
    text = line.decode("utf-8", "replace").strip()
    if text == "stop":
        return True
    if text:
        try:
            request = json.loads(text)
            _emit({"probe": probe.handle(request["probe"])})
        except (ValueError, KeyError, TypeError, NodeError) as exc:
            _emit({"error": "probe: %s" % exc})
    return False


def _wait_for_end(deadline):
    """Serve stdin lines until ``stop``, the end of stdin, or the deadline; returns why it ended."""
    fd, pending = sys.stdin.fileno(), b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "time"
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            data = os.read(fd, 65536)
            if not data:
                return "stdin closed"
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if _command(line):
                    return "stopped"


def main():
    request, error = _request()
    if error:
        _emit({"error": error})
        return 2
    proc = subprocess.Popen(["nft", "monitor", "trace"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    armed, reason, seen = False, "error", [0]
    try:
        started = time.monotonic()
        while not _joined(proc.pid):
            if proc.poll() is not None or time.monotonic() - started > JOIN_TIMEOUT:
                _emit({"error": "nft monitor trace did not start (exit %s)" % proc.poll()})
                return 2
            time.sleep(0.002)
        pump = threading.Thread(target=_pump, args=(proc, seen), daemon=True)
        pump.start()
        code, _, err = run_nft(["-f", "-"], request["arm"])
        if code != 0:
            _emit({"error": "arming the trace failed: %s" % err.strip()})
            return 2
        armed = True
        _emit({"armed": True, "t": time.time(), "pids": [os.getpid(), proc.pid]})  # this agent, its monitor
        reason = _wait_for_end(time.monotonic() + request["seconds"])
    finally:
        code, _, err = run_nft(["-f", "-"], request["disarm"])  # always: disarm is idempotent
        if code != 0:
            _emit({"error": "disarming the trace failed: %s" % err.strip()})
        time.sleep(0.03)  # the last events of the kernel's queue reach the monitor
        _stop(proc)
    if armed:
        pump.join(timeout=2)
        _emit({"done": True, "reason": reason, "lines": seen[0]})
    return 0
