"""The notice that says where a lab's results come from: real packets, or labkit's model.

Owns its wording (the reason in a few words, the first line of ``repr(lab)``, the amber
banner of the Lab's HTML repr) and the rule for the ``LabkitNotice`` warning: only outside
a notebook, where no banner would be seen. Imports nothing from labkit.
"""
from __future__ import annotations

import html
import sys

HEADLINE = "SIMULATED: results come from labkit's model, not real packets"


def in_notebook() -> bool:
    """True in a Jupyter kernel (IPython with a kernel attached), where the Lab's repr shows the banner."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return getattr(shell, "kernel", None) is not None


def because(notice: str) -> str:
    """Why a lab is simulated, in a few words, from the backend registry's notice."""
    if notice.startswith("backend sim"):
        return "the sim backend was asked for (backend='sim' or LABKIT_BACKEND=sim)"
    return notice.removeprefix("SIMULATED: ").removesuffix(", so results come from the oracle, not from real packets")


def first_line(notice: str) -> str:
    """The first line of a simulated lab's ``repr``."""
    return f"{HEADLINE} (why: {because(notice)})"


def banner_html(notice: str, summary: str, simulated: bool) -> str:
    """The Lab's HTML repr: ``summary`` (its one-line repr), in an amber box when simulated."""
    text = f"<code>{html.escape(summary)}</code>"
    if not simulated:
        return f"<div class='labkit-lab-banner real'>{text}</div>"
    return ("<div class='labkit-lab-banner simulated' title='Simulated backend' style='background:#fff8c5;"
            "border:1px solid #d4a72c;border-left:6px solid #bf8700;border-radius:4px;padding:6px 10px;"
            "margin:2px 0'><b style='color:#7d4e00'>SIMULATED</b>: results come from labkit's model, "
            f"not real packets.<br>Why: {html.escape(because(notice))}.<br>"
            "<small>Probes, matrices and captures are computed, never sent; run with a Docker engine "
            f"(or a lab server) for real packets.</small><br>{text}</div>")
