"""Entering network namespaces with setns(2), one fresh thread per job.

Network namespace membership is per thread on Linux, and Python 3.11 has no ``os.setns``,
so ``setns`` calls libc through ctypes. A thread that entered a namespace is never reused:
``run_in_netns`` and ``run_parallel`` start a new thread for every job, the job enters its
namespace first and creates its sockets afterwards, and the thread ends with the job. The
calling thread (and so the rest of the process) never changes namespace.
"""

import ctypes
import ctypes.util
import os
import threading

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


def enter_netns(path):
    """Move the calling thread into the network namespace at ``path`` (no-op if falsy).

    Only call this in a thread that ends after its job (see ``run_in_netns``)."""
    if not path:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, "cannot open network namespace %s: %s"
                      % (path, os.strerror(exc.errno or 0))) from None
    try:
        setns(fd, CLONE_NEWNET)
    except OSError as exc:
        raise OSError(exc.errno, "cannot enter network namespace %s: %s"
                      % (path, os.strerror(exc.errno or 0))) from None
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
