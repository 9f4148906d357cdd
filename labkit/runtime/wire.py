"""The backend contract on the wire: the JSON both ends of a lab server speak.

Owns the paths and plain-data shapes of every contract call (operations in, public result
types out, via their ``to_dict``/``from_dict``) and of errors: a ``LabkitError`` crosses as
``{"error": {"type", "message", "where", "path"}}`` and is raised again on the other side as
the same class, so a learner sees the same precise message locally and through a server.
Imports nothing that talks to an engine.
"""
from __future__ import annotations

from typing import Any

import labkit.errors as errors

API = "/v1"
ERROR_TYPES = {cls.__name__: cls for cls in (errors.LabkitError, errors.ModelError, errors.NotFound,
                                             errors.BackendError, errors.BackendUnavailable, errors.CommandError)}
STATUS = {"NotFound": 404, "ModelError": 400, "BackendUnavailable": 503, "CommandError": 502,
          "BackendError": 500, "LabkitError": 500, "Refused": 403, "Unauthorized": 401}


class Refused(errors.LabkitError):
    """The lab server will not do this for this caller (a limit, an image off its allow-list, ...)."""


class Unauthorized(Refused):
    """The lab server does not know who is calling (no token, a token the hub does not know, ...)."""


ERROR_TYPES["Refused"] = Refused
ERROR_TYPES["Unauthorized"] = Unauthorized
TOKEN_ENVS = ("LABKIT_TOKEN", "JUPYTERHUB_API_TOKEN")  # where a client finds the token it sends


def error_to_dict(exc: errors.LabkitError) -> dict[str, Any]:
    name = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in ERROR_TYPES), "LabkitError")
    out: dict[str, Any] = {"type": name, "message": str(exc)}
    if isinstance(exc, errors.ModelError):
        out |= {"where": exc.where, "path": exc.path, "problem": exc.problem}
    return {"error": out}


def status_of(exc: errors.LabkitError) -> int:
    return STATUS[error_to_dict(exc)["error"]["type"]]


def error_from_dict(data: dict[str, Any]) -> errors.LabkitError:
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return errors.BackendError(f"the lab server answered something that is not labkit's: {str(data)[:200]}")
    cls = ERROR_TYPES.get(err.get("type"), errors.BackendError)
    if issubclass(cls, errors.ModelError):
        return cls(err.get("problem") or err.get("message", ""), where=err.get("where", ""), path=err.get("path", ""))
    return cls(err.get("message", "the lab server failed"))


def lab_path(name: str, action: str = "") -> str:
    return f"{API}/labs/{name}" + (f"/{action}" if action else "")
