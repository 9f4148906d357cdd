"""Entering network namespaces with setns(2), one fresh thread per job.

Network namespace membership is per thread on Linux, and Python 3.11 has no ``os.setns``,
so ``setns`` calls libc through ctypes. A thread that entered a namespace is never reused:
``run_in_netns`` and ``run_parallel`` start a new thread for every job, the job enters its
namespace first and creates its sockets afterwards, and the thread ends with the job. The
calling thread (and so the rest of the process) never changes namespace.

Nodes run with ``--pid host`` so that they can reach their pods' ``/proc/<pid>/ns/net``;
that also puts every host process's namespace within reach. ``refuse_host_netns`` is
the safety net every command that takes a ``netns`` path goes through: it refuses PID 1's
namespace and that of any process sharing the node's (= the host's) PID namespace.
"""

import ctypes
import ctypes.util
import os
import re
import threading

from .errors import NodeError

CLONE_NEWNET = 0x40000000

_libc = None
_libc_lock = threading.Lock()


def _get_libc():
    global _libc
    with _libc_lock:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return _libc


def setns(fd, nstype=CLONE_NEWNET):
    """setns(2) for the calling thread; raises OSError on failure."""
    if _get_libc().setns(int(fd), int(nstype)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


HOST_NETNS = "/proc/1/ns/net"
_PROC_PATH = re.compile(r"^/proc/([1-9][0-9]*)/ns/net$")


class HostNamespaceError(PermissionError):
    """A request named a namespace that is not a pod's: labkit never acts there."""


def _same_ns(stat_result, other_path):
    try:
        other = os.stat(other_path)
    except OSError:  # unreadable: cannot be the same one as far as this check can tell
        return False
    return (stat_result.st_dev, stat_result.st_ino) == (other.st_dev, other.st_ino)


def _pod_path(path):
    """The match of ``/proc/<pid>/ns/net``; any other form is refused (labkit only ever
    names a pod by its pause process, and no other spelling may slip past the checks)."""
    match = _PROC_PATH.match(path)
    if match is None:
        raise HostNamespaceError(
            1, "refusing to act in %s: a pod's network namespace is named /proc/<pid>/ns/net" % path)
    return match


def refuse_host_netns(path, fd=None, host=None):
    """Raise ``HostNamespaceError`` when ``path`` may be the host's network namespace.

    The path must be exactly ``/proc/<pid>/ns/net`` (no other spelling can slip past the
    checks). Then two checks, because nodes run with ``--pid host`` and see every process:
    the namespace must not be PID 1's (compared by device and inode, what ``readlink``
    shows as ``net:[inode]``, so another path to the same namespace is caught too), and
    the process must be in a PID namespace other than this agent's. Every pod's pause
    container has a PID namespace of its own; a process that shares the node's is a
    process of the host (where PID 1 may not even be readable). With ``fd`` (already opened from ``path``) the identity check is on
    what was opened. A path that cannot be read is left to the operation to report."""
    if not path:
        return
    match = _pod_path(path)
    try:
        target = os.stat(path if fd is None else fd)
    except OSError:
        return
    if _same_ns(target, host or HOST_NETNS):
        raise HostNamespaceError(
            1, "refusing to act in %s: it is the host's network namespace (that of PID 1); "
               "labkit only works inside its own pods' namespaces" % path)
    try:
        pid_ns = os.stat("/proc/%s/ns/pid" % match.group(1))
    except OSError:  # the process is gone: opening its namespace will fail by itself
        return
    if _same_ns(pid_ns, "/proc/self/ns/pid"):
        raise HostNamespaceError(
            1, "refusing to act in %s: process %s shares the node's PID namespace, so it "
               "is not a pod (nodes see the host's processes); labkit only works inside "
               "its own pods' namespaces" % (path, match.group(1)))


def checked_netns(path):
    """``refuse_host_netns`` for request handlers: the refusal as a ``NodeError`` on
    ``netns``. Returns ``path``."""
    try:
        refuse_host_netns(path)
    except OSError as exc:
        raise NodeError("netns: %s" % exc.strerror) from exc
    return path


def open_netns(path):
    """Open a pod's namespace file and check what was opened (a PID reused since the path
    was named cannot lead elsewhere); returns the fd, which the caller closes."""
    _pod_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, "cannot open network namespace %s: %s"
                      % (path, os.strerror(exc.errno or 0))) from exc
    try:
        refuse_host_netns(path, fd)
    except OSError:
        os.close(fd)
        raise
    return fd


def enter_netns(path):
    """Move the calling thread into the network namespace at ``path`` (no-op if falsy).

    Only call this in a thread that ends after its job (see ``run_in_netns``)."""
    if not path:
        return
    fd = open_netns(path)
    try:
        setns(fd, CLONE_NEWNET)
    except OSError as exc:
        raise OSError(exc.errno, "cannot enter network namespace %s: %s"
                      % (path, os.strerror(exc.errno or 0))) from exc
    finally:
        os.close(fd)


def run_in_netns(path, fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a new thread inside namespace ``path``.

    Returns fn's result or re-raises its exception in the caller."""
    box = {}

    def body():
        try:
            enter_netns(path)
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=body, name="labkit-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def run_parallel(jobs, max_workers=64):
    """Run ``jobs`` (callables taking no argument) in parallel, each in its own new
    thread, at most ``max_workers`` at once. Returns their results in order; a job that
    raises yields the exception object in its slot. Jobs enter namespaces themselves."""
    results = [None] * len(jobs)
    gate = threading.BoundedSemaphore(max(1, int(max_workers)))
    threads = []

    def body(index, job):
        try:
            results[index] = job()
        except BaseException as exc:
            results[index] = exc
        finally:
            gate.release()

    for index, job in enumerate(jobs):
        gate.acquire()
        thread = threading.Thread(target=body, args=(index, job),
                                  name="labkit-job-%d" % index, daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return results
