"""ipywidgets user interfaces for a lab: ``LabPanel`` and the views it is made of.

Owns the interactive layer only; every change to the lab goes through ``Lab`` methods
(``apply``, ``delete``, ``matrix``, ``explain`` ...). Every component is an ipywidgets
container (a ``VBox``/``HBox`` subclass), so it displays itself when it is the last
expression of a cell and can be nested in other layouts. ipywidgets is imported when a
component is first used, never by ``import labkit``:

    >>> from labkit.widgets import LabPanel     # doctest: +SKIP
    >>> panel = LabPanel(lab); panel            # doctest: +SKIP

Errors are never lost: every callback is wrapped, and an exception is shown in the
component's error area (CSS class ``labkit-error``) and recorded in ``lab.events``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ErrorArea", "ExerciseView", "ExplainView", "FlowsView", "LabPanel", "LiveTraffic", "MatrixView",
           "PolicyEditor", "ServiceEditor", "Throttle", "YamlEditor"]
_WHERE = {"ErrorArea": "common", "Throttle": "common", "YamlEditor": "yaml_editor", "MatrixView": "matrix",
          "ExplainView": "explain", "PolicyEditor": "policy", "ServiceEditor": "service",
          "LiveTraffic": "live", "LabPanel": "panel", "ExerciseView": "exercise", "FlowsView": "flows"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib  # noqa: PLC0415 - ipywidgets only on demand

        return getattr(importlib.import_module(f"labkit.widgets.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'labkit.widgets' has no attribute {name!r}")
