"""``sysctl``: set and read network sysctls inside one network namespace.

Request: ``{"netns"?: path, "values"?: {"net.ipv4.ip_forward": "1", ...}, "keys"?: [...]}``.
A new thread enters ``netns`` with setns(2) and writes ``/proc/sys/<key>`` there: the
net.* entries of /proc/sys follow the namespace of the thread that opens them (tested on
kernel 6.x; the rest of the process is untouched). Values are written in the given order,
then every written key and every key in ``keys`` is read back:
``{"values": {key: value_read_back}}``. Keys use dots (``net.ipv4.ip_forward``) or slashes
(``net/ipv4/conf/eth0.1/rp_filter``, for names that contain dots).
"""

import os
import re

from .errors import NodeError
from .netns import run_in_netns

_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def key_path(key):
    if not isinstance(key, str) or not _KEY.match(key) or ".." in key.split("/") \
            or key.startswith(("/", ".")):
        raise NodeError("bad sysctl key %r" % (key,))
    rel = key if "/" in key else key.replace(".", "/")
    return os.path.join("/proc/sys", rel)


def _read(key):
    path = key_path(key)
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise NodeError("%s: cannot read %s: %s" % (key, path, os.strerror(exc.errno or 0)))


def _apply(values, keys):
    written = []
    for key, value in values.items():
        path = key_path(key)
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("%s\n" % value)
        except OSError as exc:
            raise NodeError("%s: cannot write %s: %s" % (key, path, os.strerror(exc.errno or 0)),
                            written=written) from exc
        written.append(key)
    out = {}
    for key in list(values) + [k for k in keys if k not in values]:
        out[key] = _read(key)
    return {"values": out}


def handle(request):
    values = request.get("values", {})
    keys = request.get("keys", [])
    if not isinstance(values, dict):
        raise NodeError("values: must be an object of sysctl key -> value")
    if not isinstance(keys, list):
        raise NodeError("keys: must be a list of sysctl keys")
    clean = {}
    for key, value in values.items():
        key_path(key)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise NodeError("values.%s: must be a string or an integer" % key)
        clean[key] = str(value)
    for key in keys:
        key_path(key)
    netns = request.get("netns")
    if netns is not None and (not isinstance(netns, str) or not netns):
        raise NodeError("netns: must be a non-empty string")
    try:
        return run_in_netns(netns, _apply, clean, keys)
    except OSError as exc:  # entering the namespace failed
        raise NodeError(exc.strerror or str(exc)) from exc
