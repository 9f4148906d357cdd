"""``exec-in``: run a command inside a network namespace and capture its output.

Request: ``{"netns"?: path, "argv": [...], "timeout"?: 10, "stdin"?: text}``. Opens and
checks ``netns`` (a pod's ``/proc/<pid>/ns/net``), then runs ``nsenter --net=<that open
file> -- argv...`` (or argv directly without ``netns``) in its own process
group; reply ``{"exit_code": n, "output": stdout+stderr, "timed_out": bool}``. On timeout
the process group is killed and ``exit_code`` is 124 (like timeout(1)); a command that
cannot be started gives 127 with the reason in ``output``; death by signal N
gives 128+N. Output is capped at 1 MiB.
"""

import contextlib
import os
import signal
import subprocess

from .errors import NodeError
from .netns import open_netns

MAX_OUTPUT = 1 << 20
MAX_TIMEOUT = 3600


def handle(request):
    argv = request.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise NodeError("argv: must be a non-empty list of strings")
    timeout = request.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not 0 < timeout <= MAX_TIMEOUT:
        raise NodeError("timeout: must be a number of seconds in (0, %d]" % MAX_TIMEOUT)
    netns = request.get("netns")
    if netns is not None and (not isinstance(netns, str) or not netns):
        raise NodeError("netns: must be a non-empty string")
    stdin = request.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise NodeError("stdin: must be a string")
    fd = None
    if netns:  # nsenter enters the very file checked here (/proc/self/fd/N), not the path again
        try:
            fd = open_netns(netns)
        except OSError as exc:
            raise NodeError("netns: %s" % exc.strerror) from exc
    full = (["nsenter", "--net=/proc/self/fd/%d" % fd, "--"] if fd is not None else []) + argv
    try:
        proc = subprocess.Popen(full, stdin=subprocess.PIPE if stdin is not None
                                else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=(fd,) if fd is not None else ())
    except OSError as exc:
        return {"exit_code": 127, "timed_out": False,
                "output": "cannot run %s: %s\n" % (full[0], exc.strerror or exc)}
    finally:
        if fd is not None:
            os.close(fd)
    timed_out = False
    try:
        out, _ = proc.communicate(stdin.encode() if stdin is not None else None,
                                  timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):  # the group may have ended by itself
            os.killpg(proc.pid, signal.SIGKILL)  # the group this call started
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a descendant left the group, pipe still open
            proc.kill()
            out = b""
    text = out[:MAX_OUTPUT].decode("utf-8", "replace")
    if timed_out:
        text += "\n[timed out after %gs]\n" % timeout
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return {"exit_code": 124 if timed_out else code, "output": text,
            "timed_out": timed_out}
