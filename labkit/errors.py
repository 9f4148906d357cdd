"""The exception tree: every error labkit raises is a ``LabkitError``.

This module owns the error vocabulary only; it imports nothing from labkit.
"""
from __future__ import annotations


class LabkitError(Exception):
    """Base class of every error raised by labkit."""


class ModelError(LabkitError):
    """A manifest, a field or a reference is invalid.

    ``where`` names the document (``"NetworkPolicy x/deny-all"``), ``path`` the field
    (``"spec.ingress[0].ports[1].endPort"``) and ``problem`` what is wrong and how to fix it.
    """

    def __init__(self, problem: str, *, where: str = "", path: str = ""):
        self.where, self.path, self.problem = where, path, problem
        super().__init__(self._compose())

    def _compose(self) -> str:
        head = ": ".join(part for part in (self.where, self.path) if part)
        return f"{head}: {self.problem}" if head else self.problem

    def located(self, where: str) -> "ModelError":
        """Return the same error attributed to the document ``where`` (keeps a given one)."""
        if self.where:
            return self
        return type(self)(self.problem, where=where, path=self.path)


class NotFound(ModelError):
    """A referenced object (pod, namespace, Service, policy) does not exist."""


class BackendError(LabkitError):
    """The backend (Docker engine, node agent, kernel) failed to do what was asked."""


class BackendUnavailable(BackendError):
    """The requested backend cannot run on this machine (no engine, no image, ...)."""


class CommandError(BackendError):
    """A command run by a backend exited non-zero; carries its exit code and output."""

    def __init__(self, message: str, *, exit_code: int | None = None, output: str = ""):
        self.exit_code, self.output = exit_code, output
        super().__init__(message)
