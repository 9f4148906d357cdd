"""``Lab.connect()``: one established TCP connection a learner can keep using.

Owns the public Connection value (send, close, repr) over a backend's connection. On the
sim backend the flow is modelled the way conntrack behaves: a connection allowed when it
was opened stays allowed until ``lab.reset_connections()``, whatever policies say later.
"""
from __future__ import annotations

import html
from typing import Callable

from labkit.errors import LabkitError
from labkit.results import ProbeResult


class Connection:
    """An established connection from ``src`` to ``dst``; ``send()`` uses the same flow again."""

    def __init__(self, handle, on_close: Callable[["Connection"], None] | None = None):
        self._handle = handle
        self._on_close = on_close
        self.opened: ProbeResult = handle.opened
        self.results: list[ProbeResult] = []

    @property
    def established(self) -> bool:
        return self.opened.ok

    def send(self) -> ProbeResult:
        """Send one message over the established flow; ok when the other end answered."""
        if not self.established:
            raise LabkitError(f"the connection was never established: {self.opened.error}")
        result = self._handle.send()
        self.results.append(result)
        return result

    def close(self) -> None:
        self._handle.close()
        if self._on_close:
            self._on_close(self)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._handle.closed else ("established" if self.established else "failed")
        last = f", last message: {'answered' if self.results[-1].ok else self.results[-1].error}" if self.results else ""
        return f"<Connection {self.opened.src} -> {self.opened.dst}:{self.opened.port} {state}{last}>"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(repr(self))}</code>"


class SimConnection:
    """The sim backend's model of one flow: conntrack remembers the verdict at opening."""

    def __init__(self, explain: Callable[[], object], epoch: Callable[[], int], src: str, dst: str, port: int):
        self._explain, self._epoch = explain, epoch
        self.src, self.dst, self.port = src, dst, port
        self._opened_epoch = epoch()
        self.closed = False
        ex = explain()
        answered = ex.may_answer[0] if ex.allowed and ex.may_answer else None
        error = None if ex.allowed else next((o.error for o in ex.outcomes if o.error), "timed out")
        self.opened = ProbeResult(ex.allowed, None, answered, error, True, src, dst, port, "TCP")

    def send(self) -> ProbeResult:
        if self._epoch() != self._opened_epoch:  # conntrack was flushed: the flow faces the rules again
            ex = self._explain()
            if not ex.allowed:
                return ProbeResult(False, None, None, "timed out (no answer on the established connection)", True,
                                   self.src, self.dst, self.port, "TCP")
        return self.opened

    def close(self) -> None:
        self.closed = True
