"""What every labkit widget shares: the error area, the callback guard, throttling, CSS.

Owns the rule "errors are never lost": ``guard`` wraps every callback so that an
exception is shown in an ``ErrorArea`` (CSS class ``labkit-error``), appended to
``lab.events`` and logged, instead of vanishing into the kernel log. ``Throttle``
coalesces bursts of calls (probe results) into at most one call per interval.
"""
from __future__ import annotations

import asyncio
import functools
import html
import logging
import time
import traceback
from typing import Any, Callable

import ipywidgets as W

from labkit.errors import LabkitError

log = logging.getLogger(__name__)

CSS = """<style>
.labkit-cell.differs { outline: 3px solid #bf8700; outline-offset: -3px; font-weight: bold; }
.labkit-cell { min-width: 2.4em; padding: 0 4px; }
.labkit-error { color: #cf222e; }
.labkit-error pre, .labkit-explain pre, .labkit-generated pre { white-space: pre-wrap; margin: 2px 0; }
.labkit-validation.invalid { color: #cf222e; }
.labkit-validation.valid { color: #1a7f37; }
.labkit-banner { padding: 4px 8px; border-radius: 4px; }
.labkit-banner.simulated { background: #fff8c5; border: 1px solid #d4a72c; }
.labkit-banner.real { background: #dafbe1; border: 1px solid #4ac26b; }
</style>"""


def css_widget() -> W.HTML:
    """The style sheet of labkit's classes (an invisible HTML widget; harmless if repeated)."""
    return W.HTML(CSS, layout=W.Layout(display="none"))


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running in this thread (the kernel's, in Jupyter), or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def set_classes(widget: W.DOMWidget, *classes: str) -> None:
    """Replace a widget's CSS classes (one ``_dom_classes`` update, not one per class)."""
    wanted = tuple(dict.fromkeys(c for c in classes if c))
    if tuple(widget._dom_classes) != wanted:
        widget._dom_classes = wanted


def close_all(widget: W.Widget) -> None:
    """Close a widget and everything inside it (frees the kernel-side models)."""
    for child in getattr(widget, "children", ()):
        close_all(child)
    widget.close()


def replace_children(box: W.Box, children: list[W.Widget]) -> None:
    """Show ``children`` in ``box``, closing the widgets they replace."""
    old = [c for c in box.children if c not in children]
    box.children = tuple(children)
    for child in old:
        close_all(child)


def pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def namespace_options(lab: Any) -> list[str]:
    """The lab's namespaces, the learner's first (kube-system last)."""
    names = sorted(lab.cluster.namespaces)
    return [n for n in names if n not in ("default", "kube-system")] + \
        [n for n in ("default", "kube-system") if n in names]


class ObjectEditor(W.VBox):
    """What the policy and Service editors share: a namespace dropdown kept in step with the
    lab, deletion of one object of ``KIND``, and ``on_change`` after every change."""

    KIND = ""

    def _changed(self) -> None:
        self.refresh()
        if self.on_change is not None:
            self.on_change()

    def delete(self, ref: str) -> None:
        namespace, name = ref.split("/", 1)
        self.lab.delete(self.KIND, name, namespace=namespace)
        self._changed()

    def _refresh_namespaces(self) -> None:
        options = namespace_options(self.lab)
        if list(self.namespace.options) != options:
            keep = self.namespace.value
            self.namespace.options = options
            if keep in options:
                self.namespace.value = keep

    def refresh(self) -> None:
        raise NotImplementedError


class ErrorArea(W.HBox):
    """Where a component shows what went wrong (newest first, the last ``keep`` errors).

    ``report(exc, action)`` is safe to call from any callback; ``messages`` holds the texts.
    """

    def __init__(self, lab: Any = None, keep: int = 5):
        self.lab, self.keep = lab, keep
        self.messages: list[str] = []
        self._entries: list[str] = []
        self.html = W.HTML(layout=W.Layout(flex="1 1 auto"))
        set_classes(self.html, "labkit-error")
        self.clear_button = W.Button(description="dismiss", layout=W.Layout(width="auto", display="none"))
        set_classes(self.clear_button, "labkit-error-clear")
        self.clear_button.on_click(lambda _b: self.clear())
        super().__init__([self.html, self.clear_button])

    def report(self, exc: BaseException, action: str = "") -> None:
        text = f"{type(exc).__name__}: {exc}"
        where = f" while {action}" if action else ""
        self.messages.insert(0, f"{action}: {text}" if action else text)
        del self.messages[self.keep:]
        if self.lab is not None:
            events = getattr(self.lab, "events", None)
            if events is not None:
                events.append(f"widget error{where}: {text}")
        log.info("labkit widget error%s: %s", where, text, exc_info=exc)
        detail = "" if isinstance(exc, LabkitError) else (
            "<details><summary>traceback</summary>"
            + pre("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))) + "</details>")
        entry = (f"<div><b>{time.strftime('%H:%M:%S')} error{html.escape(where)}</b>: "
                 f"{pre(text)}{detail}</div>")
        self._entries = [entry, *self._entries][:self.keep]
        self.html.value = "".join(self._entries)
        self.clear_button.layout.display = None

    def clear(self) -> None:
        self.messages.clear()
        self._entries = []
        self.html.value = ""
        self.clear_button.layout.display = "none"


def guard(fn: Callable[..., Any], errors: ErrorArea, action: str) -> Callable[..., Any]:
    """``fn`` wrapped so that any exception is reported to ``errors`` (and returns None)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # the point of the guard: show it, never lose it
            errors.report(exc, action)
            return None

    return wrapper


class Throttle:
    """Call ``fn`` at most once per ``interval`` seconds; a burst becomes one trailing call.

    Only the latest arguments of a burst are used. With no running asyncio loop (plain
    scripts, headless tests) or ``interval <= 0`` every call goes through at once.
    ``flush()`` runs a pending call now; ``cancel()`` drops it.
    """

    def __init__(self, fn: Callable[..., Any], interval: float, errors: ErrorArea | None = None,
                 action: str = "redrawing"):
        self.fn = guard(fn, errors, action) if errors is not None else fn
        self.interval = interval
        self.calls = 0
        self._last = float("-inf")
        self._pending: tuple[Any, ...] | None = None
        self._handle: asyncio.TimerHandle | None = None

    def __call__(self, *args: Any) -> None:
        self._pending = args
        loop = running_loop()
        if self.interval <= 0 or loop is None:
            self._fire()
            return
        if self._handle is not None:
            return  # a trailing call is already scheduled: it will use these arguments
        wait = self._last + self.interval - time.monotonic()
        if wait <= 0:
            self._fire()
        else:
            self._handle = loop.call_later(wait, self._trailing)

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def _trailing(self) -> None:
        self._handle = None
        self._fire()

    def _fire(self) -> None:
        if self._pending is None:
            return
        args, self._pending = self._pending, None
        self._last = time.monotonic()
        self.calls += 1
        self.fn(*args)

    def flush(self) -> None:
        self.cancel(keep_pending=True)
        self._fire()

    def cancel(self, keep_pending: bool = False) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not keep_pending:
            self._pending = None
