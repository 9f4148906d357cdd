"""labkit: learn how Kubernetes networking really works, hands-on, in Jupyter.

The public names live here; the logic lives in the subpackages.
"""
from labkit.errors import (BackendError, BackendUnavailable, CommandError, LabkitError, ModelError,
                           NotFound)
from labkit.lab import Changes, Lab, LabkitNotice
from labkit.probe.matrix import Matrix
from labkit.results import ExecResult, ProbeResult
from labkit.semantics.oracle import Explanation

__version__ = "0.1.0"

__all__ = [
    "BackendError", "BackendUnavailable", "Changes", "CommandError", "ExecResult", "Explanation",
    "Lab", "LabkitError", "LabkitNotice", "Matrix", "ModelError", "NotFound", "ProbeResult",
    "__version__",
]
