"""Colours of the pictures: one per namespace, the same in every notebook and every lab,
the colours of verdicts (allowed, denied by a policy, refused, differs from the oracle) and
one colour per Service (``service_colour``).

Owns ``namespace_colour``: well-known names (``default``, ``kube-system`` and the course's
namespaces) have fixed colours; any other name gets a palette colour from a stable hash of
the name (crc32, not Python's per-process ``hash``), so ``shop`` is orange in 03 and in 06.
No namespace colour is a verdict colour: green and red mean allowed and denied only.
"""
from __future__ import annotations

import zlib

# verdicts
ALLOWED = "#1a7f37"      # the connection worked
DENIED = "#cf222e"       # no answer: dropped (a NetworkPolicy, or the lab's fence)
REFUSED = "#cf222e"      # refused at once: nothing listens, or a Service without endpoints (dotted)
DIFFERS = "#bf8700"      # observation != oracle (an amber halo)
MIXED = "#57606a"        # a namespace-to-namespace arrow with allowed and denied pairs
INGRESS_RING, EGRESS_RING = "#24292f", "#8250df"
SERVICE = "#0969da"
# one per Service (its diamond, label and dashed lines to its endpoints): no verdict or namespace colour
SERVICES = (SERVICE, "#8250df", "#1b7c83", "#bf3989", "#0550ae", "#7d4e57")
INFRA = "#6e7781"        # nodes, bridges, veths, the internet host

# Namespace colours: Tableau-like hues without its red and green.
PALETTE = ("#4e79a7", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#499894",
           "#d37295", "#a0cbe8", "#b6992d", "#86619e")
FIXED = {
    "default": "#4e79a7", "kube-system": "#8c8c8c",
    # the course's namespaces, chosen so that no two of one notebook share a colour
    "demo": "#f28e2b", "net": "#76b7b2", "shop": "#f28e2b", "other": "#b07aa1", "dev": "#b07aa1",
    "monitoring": "#499894", "ops": "#86619e", "guest": "#d37295", "x": "#f28e2b", "y": "#b07aa1",
    "z": "#499894",
}


def service_colour(index: int) -> str:
    """The colour of the ``index``-th Service of a picture (in name order), cycling through ``SERVICES``."""
    return SERVICES[index % len(SERVICES)]


def namespace_colour(namespace: str) -> str:
    """The colour of ``namespace`` in every picture: fixed for well-known names, else hashed."""
    if namespace in FIXED:
        return FIXED[namespace]
    return PALETTE[zlib.crc32(namespace.encode()) % len(PALETTE)]
