"""Part of a ruleset listing: the tables a learner asks for, out of ``lab.rules()``.

Owns ``lab.rules(table=...)``: which names choose a table (``"ip labkit-svc"`` or just
``"labkit-svc"``; an unknown name is a ModelError that lists the choices) and the cutting of
a listing down to those tables' blocks. It works on the text either backend returns (the
kernel's ``nft list`` on docker, the rendered transaction on sim): comment lines (``# node-2``,
the simulated banner) stay, the ``add table``/``delete table`` preamble and every other table
go. Pure: text in, text out.
"""
from __future__ import annotations

import re

from labkit.dataplane import ruleset
from labkit.errors import ModelError

CHOICES = tuple(f"{family} {table}" for family, table in ruleset.TABLES)
_TABLE = re.compile(r"^table (\S+) (\S+) \{\s*$")


def resolve(table: str | list[str] | tuple[str, ...]) -> list[str]:
    """The full names (``"ip labkit-svc"``) of ``table``: one name or a list of them."""
    wanted = [table] if isinstance(table, str) else list(table)
    out = []
    for name in wanted:
        text = " ".join(str(name).split()).removeprefix("table ")
        found = [c for c in CHOICES if text in (c, c.split()[1])]
        if not found:
            raise ModelError(f"table={name!r} is not a table of labkit's ruleset: choose one of "
                             f"{', '.join(repr(c) for c in CHOICES)} (the family may be left out, e.g. "
                             "'labkit-svc'), or leave table out for the whole ruleset", path="table")
        out += [c for c in found if c not in out]
    return out


def select(text: str, tables: list[str]) -> str:
    """``text`` (a ``lab.rules()`` listing) with only the blocks of ``tables`` and the comment lines."""
    out: list[str] = []
    keep = None  # inside a table block: whether it is kept
    for line in text.splitlines():
        match = _TABLE.match(line)
        if match:
            keep = f"{match.group(1)} {match.group(2)}" in tables
        if keep is None:
            if line.startswith("#"):
                out.append(line)
            continue
        if keep:
            out.append(line)
        if line == "}":
            keep = None
            if out and out[-1] == "}":
                out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
