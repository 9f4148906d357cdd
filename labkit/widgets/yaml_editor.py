"""The YAML editor shared by the policy and Service editors: a text area, Validate, Apply.

Owns the "all or nothing" experience: Validate is a dry run against the lab's model
(``forms.dry_run``), Apply calls ``lab.apply``; a ``ModelError`` (which names the field
path) is shown inline and the lab stays exactly as it was. Anything else goes to the
error area.
"""
from __future__ import annotations

import html
from typing import Any, Callable

import ipywidgets as W

from labkit.errors import ModelError
from labkit.widgets import forms
from labkit.widgets.common import ErrorArea, guard, pre, set_classes


class YamlEditor(W.VBox):
    """``text`` (Textarea, classes ``labkit-yaml`` + ``kind_class``), ``validate_button``
    (``labkit-validate``), ``apply_button`` (``labkit-apply``), ``message`` (``labkit-validation``).

    ``on_apply(changes)`` runs after a successful apply.
    """

    def __init__(self, lab: Any, *, errors: ErrorArea, on_apply: Callable[[Any], None] | None = None,
                 kind_class: str = "", placeholder: str = ""):
        self.lab, self.errors, self.on_apply = lab, errors, on_apply
        self.text = W.Textarea(placeholder=placeholder, layout=W.Layout(width="100%", height="15em"))
        set_classes(self.text, "labkit-yaml", kind_class)
        self.validate_button = W.Button(description="Validate", icon="check", tooltip="dry run: changes nothing")
        set_classes(self.validate_button, "labkit-validate")
        self.apply_button = W.Button(description="Apply", icon="play", button_style="primary",
                                     tooltip="lab.apply(this YAML)")
        set_classes(self.apply_button, "labkit-apply")
        self.message = W.HTML()
        set_classes(self.message, "labkit-validation")
        self.validate_button.on_click(guard(lambda _b: self.validate(), errors, "validating YAML"))
        self.apply_button.on_click(guard(lambda _b: self.apply(), errors, "applying YAML"))
        super().__init__([self.text, W.HBox([self.validate_button, self.apply_button]), self.message])

    @property
    def valid(self) -> bool | None:
        """True/False after the last Validate or Apply, None before any."""
        classes = self.message._dom_classes
        return True if "valid" in classes else (False if "invalid" in classes else None)

    def _say(self, ok: bool, text: str) -> None:
        colour = "#1a7f37" if ok else "#cf222e"
        self.message.value = f"<div style='color:{colour}'>{text}</div>"
        set_classes(self.message, "labkit-validation", "valid" if ok else "invalid")

    def _invalid(self, exc: ModelError, what: str) -> None:
        self._say(False, f"<b>{what}</b> (the lab is unchanged):{pre(str(exc))}")

    def validate(self) -> bool:
        """Dry run against the lab's current model; the message says what Apply would do."""
        try:
            changes = forms.dry_run(self.lab.cluster, self.text.value)
        except ModelError as exc:
            self._invalid(exc, "invalid")
            return False
        self._say(True, "valid; Apply would do:" + pre("\n".join(changes)))
        return True

    def apply(self) -> Any:
        """``lab.apply(text)``; returns its Changes, or None when the YAML is invalid."""
        if not self.text.value.strip():
            self._say(False, "nothing to apply: the editor is empty")
            return None
        try:
            changes = self.lab.apply(self.text.value + "\n")  # "\n": never read as a file name
        except ModelError as exc:
            self._invalid(exc, "not applied")
            return None
        self._say(True, "applied:" + pre(repr(changes)))
        if self.on_apply is not None:
            self.on_apply(changes)
        return changes

    def set_yaml(self, text: str) -> None:
        self.text.value = text
        self.message.value = ""
        set_classes(self.message, "labkit-validation")


def object_row(label_html: str, on_delete: Callable[[], None], errors: ErrorArea, what: str) -> W.HBox:
    """One line of an object list: a description and a Delete button (class ``labkit-delete``)."""
    button = W.Button(description="Delete", icon="trash", button_style="danger", layout=W.Layout(width="auto"))
    set_classes(button, "labkit-delete")
    button.on_click(guard(lambda _b: on_delete(), errors, f"deleting {what}"))
    return W.HBox([button, W.HTML(label_html)])


def escape(text: str) -> str:
    return html.escape(text)
