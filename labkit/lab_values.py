"""The plain values ``Lab`` returns for changes and endpoints, with kubectl-like reprs.

Owns ``Changes`` (what an apply/delete/label did) and ``Endpoints`` (a Service's endpoints,
ready or not); they import nothing of labkit, so any layer may build them.
"""
from __future__ import annotations

import html


class Changes(list):
    """What an apply/delete/label did, one ``Change`` per object (repr like kubectl's output)."""

    def __repr__(self) -> str:
        return "\n".join(str(c) for c in self) if self else "(no changes)"

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(repr(self)) + "</pre>"


class Endpoints(list):
    """A Service's endpoints (``labkit.semantics.services.Endpoint``), with a kubectl-like repr."""

    def __init__(self, service: str, items: list):
        super().__init__(items)
        self.service = service

    @property
    def ready(self) -> list:
        return [e for e in self if e.ready]

    def __repr__(self) -> str:
        ready = ",".join(f"{e.ip}:{e.port}" for e in self if e.ready) or "<none>"
        lines = [f"Endpoints {self.service}: {ready}"]
        lines += [f"  not ready: {e.pod} {e.ip}:{e.port}" for e in self if not e.ready]
        return "\n".join(lines)
