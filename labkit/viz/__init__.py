"""Pictures of a lab: the topology (pods by node and namespace, Services, policy
boundaries, probe results) as matplotlib ``Figure`` objects, never pyplot state.

Owns drawing only. matplotlib and networkx are imported when a picture is first asked
for, not when ``labkit`` or ``labkit.viz`` is imported:

    >>> from labkit.viz import topology_figure, png    # doctest: +SKIP
    >>> png(topology_figure(lab, lab.matrix()))[:4]     # doctest: +SKIP
    b'\\x89PNG'
"""
from __future__ import annotations

from typing import Any

from labkit.viz.colours import namespace_colour
from labkit.viz.layout import Layout, compute_layout

__all__ = ["Layout", "compute_layout", "namespace_colour", "png", "svg", "topology_figure", "topology_graph"]
_LAZY = {"topology_figure", "topology_graph", "png", "svg"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from labkit.viz import topology  # noqa: PLC0415 - matplotlib/networkx only on demand
        return getattr(topology, name)
    raise AttributeError(f"module 'labkit.viz' has no attribute {name!r}")
