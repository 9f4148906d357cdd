"""Result values returned to learners: probes and commands run in pods.

Owns the plain result dataclasses of the public API (their reprs, and their plain-data
forms for crossing a process boundary as JSON), and ``_Reader``, the typed reading of such
forms that every ``from_dict`` of labkit uses; imports only labkit.errors, so every layer
can return them.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Callable

from labkit.errors import ModelError


@dataclass(frozen=True)
class ProbeResult:
    """One connection attempt. ``answered_by`` is the pod that replied, None when nothing did;
    ``client_ip`` is the source address the server saw (the client's own IP, unless a node
    translated it: masquerading for NodePort and hairpin traffic), None when nothing answered."""

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
    client_ip: str | None = None  # the source address the server saw

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
        if self.ok and self.client_ip:
            what += f", which saw the client as {self.client_ip}"
        note = ""
        if self.matches_oracle is False:
            expected = ", ".join(self.may_answer) if self.may_answer else "no answer"
            note = f"; the oracle expected {expected}: a lesson or a bug"
        return f"<ProbeResult {self.src} -> {self.dst} {self.port}/{self.protocol}: {what} ({how}{note})>"

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else "#cf222e"
        return f"<span style='color:{colour}'>{html.escape(repr(self))}</span>"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "latency_ms": self.latency_ms, "answered_by": self.answered_by, "error": self.error,
                "simulated": self.simulated, "src": self.src, "dst": self.dst, "port": self.port,
                "protocol": self.protocol,
                "may_answer": None if self.may_answer is None else list(self.may_answer),
                "client_ip": self.client_ip}

    @classmethod
    def from_dict(cls, data: Any) -> "ProbeResult":
        r = _Reader(data, cls.__name__)
        return cls(r.get("ok", bool), r.get("latency_ms", float, null=True), r.get("answered_by", str, null=True),
                   r.get("error", str, null=True), r.get("simulated", bool), r.get("src", str), r.get("dst", str),
                   r.get("port", int), r.get("protocol", str), r.strings("may_answer", null=True),
                   r.optional("client_ip", str))  # optional: a lab server of an older labkit omits it


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

    def to_dict(self) -> dict:
        return {"exit_code": self.exit_code, "output": self.output}

    @classmethod
    def from_dict(cls, data: Any) -> "ExecResult":
        r = _Reader(data, cls.__name__)
        return cls(r.get("exit_code", int), r.get("output", str))


_JSON_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
               (list, "a list"), (dict, "an object"))


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_KINDS if isinstance(value, kind)), type(value).__name__)


class _Reader:
    """One JSON object read by a ``from_dict``: every key is required and typed.

    Errors are ``ModelError``s naming the type (``where``), the path of a nested object
    (``path``, e.g. ``outcomes[0].decisions[1]``) and the key: never a bare KeyError."""

    def __init__(self, data: Any, where: str, path: str = ""):
        self.where, self.path = where, path
        if not isinstance(data, dict):
            raise self._error(f"expected an object, got {_json_kind(data)}")
        self.data: dict = data

    def _error(self, problem: str) -> ModelError:
        return ModelError(problem, where=self.where, path=self.path)

    def get(self, key: str, kind: type, *, null: bool = False) -> Any:
        """The value of ``key``, of JSON type ``kind`` (bool, int, float, str, list, dict), or None if ``null``.

        An integer is accepted where a number is expected, and read as a float."""
        if key not in self.data:
            raise self._error(f"missing key {key!r}")
        value = self.data[key]
        if value is None and null:
            return None
        accepted = (int, float) if kind is float else kind
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted):
            name = dict(_JSON_KINDS)[kind]
            raise self._error(f"key {key!r} must be {name}{' or null' if null else ''}, got {_json_kind(value)}")
        if kind is float and isinstance(value, int):
            try:
                return float(value)
            except OverflowError as exc:
                raise self._error(f"key {key!r} is too large for a float") from exc
        return value

    def optional(self, key: str, kind: type) -> Any:
        """Like ``get(key, kind, null=True)``, but a missing key reads as None (a key added later)."""
        return self.get(key, kind, null=True) if key in self.data else None

    def strings(self, key: str, *, null: bool = False) -> tuple[str, ...] | None:
        """A list of strings, as a tuple."""
        value = self.get(key, list, null=null)
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            raise self._error(f"key {key!r} must be a list of strings")
        return tuple(value)

    def objects(self, key: str, build: Callable[[Any], Any]) -> list:
        """A list of nested objects, each made by ``build`` (a ``from_dict``)."""
        return [self.within(f"{key}[{i}]", build, item) for i, item in enumerate(self.get(key, list))]

    def object(self, key: str, build: Callable[[Any], Any]) -> Any:
        """One nested object, made by ``build`` (a ``from_dict``)."""
        return self.within(key, build, self.get(key, dict))

    def within(self, step: str, build: Callable[[Any], Any], data: Any) -> Any:
        """``build(data)``, its errors located at ``step`` below this object."""
        here = f"{self.path}.{step}" if self.path else step
        try:
            return build(data)
        except ModelError as exc:
            raise ModelError(exc.problem, where=self.where,
                             path=f"{here}.{exc.path}" if exc.path else here) from exc
