"""Reachability matrices: observed next to expected, with their differences.

Owns the ``Matrix`` value of the public API: rows as bitsets, a table ``repr`` in the style
of the upstream e2e truth tables (``.`` allowed, ``X`` denied, ``!`` marks a cell where
observation and the oracle differ), an HTML repr and plain-data export.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import NotFound
from labkit.model.cluster import pod_ref
from labkit.results import ProbeResult, _Reader


@dataclass
class Matrix:
    """``pods x pods`` reachability on one port/protocol. Rows are sources, columns destinations."""

    pods: list[str]
    port: int
    protocol: str
    observed: list[int]
    expected: list[int]
    source: str  # "observed" (real probes), "simulated" (sim backend) or "expected" (the oracle)
    results: dict[tuple[str, str], ProbeResult] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {p: i for i, p in enumerate(self.pods)}

    @property
    def simulated(self) -> bool:
        return self.source != "observed"

    def _ij(self, src: str, dst: str) -> tuple[int, int]:
        try:
            return self._index[pod_ref(src)], self._index[pod_ref(dst)]
        except KeyError as exc:
            raise NotFound(f"pod {exc.args[0]!r} is not in this matrix (pods: {', '.join(self.pods)})") from exc

    def allowed(self, src: str, dst: str) -> bool:
        """Observed: could ``src`` open the port on ``dst``?"""
        i, j = self._ij(src, dst)
        return bool(self.observed[i] >> j & 1)

    def expected_allowed(self, src: str, dst: str) -> bool:
        i, j = self._ij(src, dst)
        return bool(self.expected[i] >> j & 1)

    def differences(self) -> list[tuple[str, str]]:
        """Cells where the observation differs from the oracle, as ``(src, dst)`` pairs."""
        out = []
        for i, (obs, exp) in enumerate(zip(self.observed, self.expected)):
            diff = obs ^ exp
            out.extend((self.pods[i], self.pods[j]) for j in range(len(self.pods)) if diff >> j & 1)
        return out

    @property
    def count_allowed(self) -> int:
        return sum(bin(row).count("1") for row in self.observed)

    def to_dict(self) -> dict:
        """Plain data: ``allowed`` (observed) and ``expected`` as ``{src: {dst: bool}}``, and ``results``
        (the probes behind the cells) as ``[{"from": src, "to": dst, "result": ProbeResult.to_dict()}]``."""
        return {
            "port": self.port, "protocol": self.protocol, "source": self.source, "pods": list(self.pods),
            "allowed": _grid(self.pods, self.observed),
            "differences": [{"from": s, "to": d, "observed": self.allowed(s, d),
                             "expected": self.expected_allowed(s, d)} for s, d in self.differences()],
            "expected": _grid(self.pods, self.expected),
            "results": [{"from": s, "to": d, "result": r.to_dict()} for (s, d), r in self.results.items()],
        }

    @classmethod
    def from_dict(cls, data: Any) -> "Matrix":
        """The inverse of ``to_dict`` (``differences`` is derived, so it is not read)."""
        r = _Reader(data, cls.__name__)
        pods = list(r.strings("pods"))
        return cls(pods, r.get("port", int), r.get("protocol", str), _bitsets(r, "allowed", pods),
                   _bitsets(r, "expected", pods), r.get("source", str), dict(r.objects("results", _cell)))

    def table(self) -> str:
        width = max([len(p) for p in self.pods] + [len("from\\to")])
        cell = max(3, *(len(p) for p in self.pods)) if self.pods else 3
        lines = ["from\\to".ljust(width) + " " + " ".join(p.rjust(cell) for p in self.pods)]
        for i, src in enumerate(self.pods):
            row = []
            for j in range(len(self.pods)):
                mark = "." if self.observed[i] >> j & 1 else "X"
                if (self.observed[i] ^ self.expected[i]) >> j & 1:
                    mark += "!"
                row.append(mark.rjust(cell))
            lines.append(src.ljust(width) + " " + " ".join(row))
        return "\n".join(lines)

    def __repr__(self) -> str:
        kind = self.source
        diffs = self.differences()
        note = (f"{len(diffs)} cell(s) differ from the oracle (marked !)" if diffs
                else "matches the oracle")
        return (f"Matrix {self.port}/{self.protocol}, {kind}, {len(self.pods)} pods "
                f"('.' allowed, 'X' denied; {note}):\n{self.table()}")

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(p)}</th>" for p in self.pods)
        body = []
        for i, src in enumerate(self.pods):
            cells = []
            for j, dst in enumerate(self.pods):
                ok = self.observed[i] >> j & 1
                differs = (self.observed[i] ^ self.expected[i]) >> j & 1
                colour = "#2da44e" if ok else "#cf222e"
                border = "3px solid #bf8700" if differs else "1px solid #ddd"
                title = f"{src} -> {dst}: {'allowed' if ok else 'denied'}" + (
                    f" (oracle: {'allowed' if not ok else 'denied'})" if differs else "")
                cells.append(f"<td title='{html.escape(title)}' style='background:{colour};border:{border};"
                             f"width:1.6em;text-align:center;color:white'>{'✓' if ok else '✗'}</td>")
            body.append(f"<tr><th style='text-align:right'>{html.escape(src)}</th>{''.join(cells)}</tr>")
        kind = self.source
        return (f"<div><b>{self.port}/{self.protocol}</b> ({kind}; rows = from, columns = to; "
                f"{len(self.differences())} difference(s) from the oracle)<table style='border-collapse:collapse'>"
                f"<tr><th>from\\to</th>{head}</tr>{''.join(body)}</table></div>")


def _grid(pods: list[str], rows: list[int]) -> dict[str, dict[str, bool]]:
    return {s: {d: bool(rows[i] >> j & 1) for j, d in enumerate(pods)} for i, s in enumerate(pods)}


def _bitsets(r: _Reader, key: str, pods: list[str]) -> list[int]:
    """The rows of a ``{src: {dst: bool}}`` grid as bitsets, in the order of ``pods``."""
    grid = _Reader(r.get(key, dict), r.where, key)
    out = []
    for src in pods:
        row = _Reader(grid.get(src, dict), r.where, f"{key}[{src!r}]")
        out.append(sum(1 << j for j, dst in enumerate(pods) if row.get(dst, bool)))
    return out


def _cell(data: Any) -> tuple[tuple[str, str], ProbeResult]:
    """One entry of ``results``: ``{"from": src, "to": dst, "result": {...}}``."""
    r = _Reader(data, "Matrix")
    return (r.get("from", str), r.get("to", str)), r.object("result", ProbeResult.from_dict)
