"""Result values returned to learners: probes and commands run in pods.

Owns the plain result dataclasses of the public API (and their reprs); imports nothing
from labkit, so every layer can return them.
"""
from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeResult:
    """One connection attempt. ``answered_by`` is the pod that replied, None when nothing did."""

    ok: bool
    latency_ms: float | None
    answered_by: str | None
    error: str | None
    simulated: bool
    src: str = ""
    dst: str = ""
    port: int = 0
    protocol: str = "TCP"
    may_answer: tuple[str, ...] | None = None  # the oracle's prediction (None: not compared)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def matches_oracle(self) -> bool | None:
        """Did the observation agree with the oracle (who may answer, or that nobody does)?"""
        if self.may_answer is None:
            return None
        return self.answered_by in self.may_answer if self.ok else not self.may_answer

    def __repr__(self) -> str:
        how = "simulated" if self.simulated else (
            f"{self.latency_ms:.2f} ms" if self.latency_ms is not None else "observed")
        what = f"answered by {self.answered_by}" if self.ok else f"failed: {self.error}"
        note = ""
        if self.matches_oracle is False:
            expected = ", ".join(self.may_answer) if self.may_answer else "no answer"
            note = f"; the oracle expected {expected}: a lesson or a bug"
        return f"<ProbeResult {self.src} -> {self.dst} {self.port}/{self.protocol}: {what} ({how}{note})>"

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else "#cf222e"
        return f"<span style='color:{colour}'>{html.escape(repr(self))}</span>"


@dataclass(frozen=True)
class ExecResult:
    """A command run in a pod: its exit code and combined output."""

    exit_code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __str__(self) -> str:
        return self.output

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.output)}</pre><small>exit code {self.exit_code}</small>"
