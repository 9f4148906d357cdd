"""A packet capture as the learner holds it: ``lab.capture(...)`` returns a ``Capture``.

Owns the learner's side of a running capture (a runtime's ``CaptureHandle``): waiting for and
stopping it (also as a context manager, and on Ctrl-C), the pcap file it writes when it ends
(by default ``./captures/<lab>-<target>-<time>.pcap``, so that JupyterLab's file browser shows
it beside the notebook, for Wireshark), its rows (``labkit.probe.pcap``), and its text and HTML
tables, which say when the packets were simulated.
"""
from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import Any

from labkit.errors import ModelError
from labkit.probe import pcap
from labkit.runtime.capturing import REASONS, CaptureHandle

CAPTURES_DIR = "captures"
SHOWN_ROWS = 200
COLUMNS = ("time", "src", "dst", "protocol", "summary", "who")


def reserve_path(path: Any, lab: str, target: str, now: float | None = None) -> tuple[Path, bool]:
    """Where the capture's file goes, and whether it was chosen (and created, empty) here.

    Without ``path``: ``captures/<lab>-<target, / as _>-<YYYYmmdd-HHMMSS>.pcap`` under the current
    directory (or under ``$LABKIT_CAPTURE_DIR``), never one that exists (``-2``, ``-3`` ... are added). A given path is used as is."""
    if path is not None:
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ModelError(f"path={path!r}: give a file name such as \"captures/web.pcap\" (or None)", path="path")
        chosen = Path(path)
        chosen.parent.mkdir(parents=True, exist_ok=True)
        return chosen, False
    folder = Path(os.environ.get("LABKIT_CAPTURE_DIR") or CAPTURES_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{lab}-{target.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    for n in range(1, 1000):
        chosen = folder / (f"{stem}.pcap" if n == 1 else f"{stem}-{n}.pcap")
        try:
            with open(chosen, "xb"):
                return chosen, True
        except FileExistsError:
            continue
    raise ModelError(f"{folder} holds 999 captures named {stem}*: give a path", path="path")


class Capture:
    """tcpdump on a pod, a node or the lab's internet host: its pcap file and one row per packet.

    It runs in the background until ``seconds`` passed, ``count`` packets were captured or the
    file would pass ``max_bytes``; ``stop()`` (or the end of a ``with`` block) ends it early.
    ``rows``, ``pcap`` and ``to_dict()`` wait for the end; the file is written at the end."""

    def __init__(self, handle: CaptureHandle, lab: str, path: Path, names: dict[str, str] | None = None):
        self._handle = handle
        self.lab, self.path = lab, path
        self.target = handle.target
        self.filter: str | None = handle.spec["filter"]
        self.seconds, self.count, self.max_bytes = (handle.spec[k] for k in ("seconds", "count", "max_bytes"))
        self.file_error = ""
        self._names = dict(names or {})
        self._rows: list[pcap.PacketRow] | None = None
        self._ended_at: float | None = None
        handle.on_end(self._write)

    # ------------------------------------------------------------ running
    @property
    def simulated(self) -> bool:
        return self._handle.simulated

    @property
    def running(self) -> bool:
        return not self._handle.done

    @property
    def reason(self) -> str | None:
        """Why it ended: ``time``, ``count``, ``bytes``, ``stopped`` or ``ended``; None while it runs."""
        return self._handle.reason

    def stop(self) -> "Capture":
        """End the capture now, keeping what it captured; safe to call again."""
        self._handle.stop()
        return self

    def wait(self, timeout: float | None = None) -> "Capture":
        """Block until the capture ended (or ``timeout`` seconds passed). Ctrl-C stops it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._handle.wait(0.2):
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except KeyboardInterrupt:
            self.stop()
            raise
        return self

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write(self, handle: CaptureHandle) -> None:
        self._ended_at = time.time()
        try:
            self.path.write_bytes(handle.data())
        except OSError as exc:
            self.file_error = f"could not write {self.path}: {exc.strerror or exc}"

    # ------------------------------------------------------------ results
    @property
    def pcap(self) -> bytes:
        """The pcap file's bytes (after the end)."""
        return self.wait()._handle.data()

    @property
    def rows(self) -> list[pcap.PacketRow]:
        """One row per packet (after the end)."""
        if self._rows is None:
            self._rows = self._parse(self.pcap)
        return list(self._rows)

    def rows_where(self, protocol: str | None = None, port: int | None = None) -> list[pcap.PacketRow]:
        """The rows of one protocol (``"TCP"``, ``"DNS"`` ...) and/or with ``port`` at either end."""
        return pcap.where(self.rows, protocol, port)

    def _parse(self, data: bytes) -> list[pcap.PacketRow]:
        return pcap.parse(data, started=self._handle.started, names=self._names,
                          interfaces=self._handle.interfaces, simulated=self.simulated)

    def _current_rows(self) -> list[pcap.PacketRow]:
        return self.rows if not self.running else self._parse(self._handle.data())

    def to_dict(self) -> dict[str, Any]:
        rows = self.rows
        return {"target": self.target, "filter": self.filter, "seconds": self.seconds, "count": self.count,
                "max_bytes": self.max_bytes, "simulated": self.simulated, "reason": self.reason,
                "note": self._handle.note, "packets": len(rows), "bytes": len(self.pcap), "path": str(self.path),
                "file_error": self.file_error, "started": self._handle.started,
                "rows": [r.to_dict() for r in rows]}

    # ------------------------------------------------------------ views
    def _status(self, rows: list[pcap.PacketRow]) -> str:
        what = f"{'SIMULATED ' if self.simulated else ''}capture on {self.target}"
        what += f", filter {self.filter!r}" if self.filter else ", every packet"
        size = len(self._handle.data())
        if self.running:
            return (f"{what}: running for {time.time() - self._handle.started:.1f} s of {self.seconds:g} s, "
                    f"{len(rows)} packet(s) so far")
        took = (self._ended_at or time.time()) - self._handle.started
        why = REASONS.get(self.reason or "", self.reason or "")
        note = f" ({self._handle.note})" if self._handle.note else ""
        return f"{what}: {len(rows)} packet(s), {size} bytes in {took:.1f} s; it ended because {why}{note}"

    def _footer(self) -> list[str]:
        lines = [f"file: {self.path}" + (f" ({self.file_error})" if self.file_error else "")]
        if self.simulated:
            lines.append("SIMULATED: the sim backend made these packets up from the oracle's answers to the "
                         "lab's probes; nothing was captured")
        return lines

    def _table(self, rows: list[pcap.PacketRow]) -> list[tuple[str, ...]]:
        """The header and the first ``SHOWN_ROWS`` rows as text cells (an interface column on a node)."""
        extra = any(r.interface for r in rows)
        head = COLUMNS + (("interface",) if extra else ())
        return [head] + [(f"{r.time:.6f}", r.src, r.dst, r.protocol, r.summary, r.who)
                         + ((r.interface,) if extra else ()) for r in rows[:SHOWN_ROWS]]

    def __repr__(self) -> str:
        rows = self._current_rows()
        table = self._table(rows)
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines = [f"<Capture {self._status(rows)}>"]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
        if len(rows) > SHOWN_ROWS:
            lines.append(f"  ... and {len(rows) - SHOWN_ROWS} more rows (cap.rows has them all)")
        return "\n".join(lines + self._footer())

    def _repr_html_(self) -> str:
        rows = self._current_rows()
        head, *body = self._table(rows)
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in body)
        more = f"<p>... and {len(rows) - SHOWN_ROWS} more rows (cap.rows has them all)</p>" \
            if len(rows) > SHOWN_ROWS else ""
        banner = ("<p style='color:#9a6700'><b>SIMULATED</b>: the sim backend made these packets up from the "
                  "oracle's answers to the lab's probes; nothing was captured.</p>") if self.simulated else ""
        link = self._link()
        if self.running or self.file_error:
            file = html.escape(self.file_error or "written when the capture ends")
        elif link.startswith("../"):  # outside the notebook's folder: a link would lead nowhere, say where it is
            file = f"<code>{html.escape(str(self.path.resolve()))}</code> (open it in Wireshark)"
        else:
            file = f"<a href='{html.escape(link)}' download>{html.escape(self.path.name)}</a> (open it in Wireshark)"
        return (f"<div>{banner}<p><b>{html.escape(self._status(rows))}</b></p><p>pcap file: {file}</p><table>"
                f"<thead><tr>{''.join(f'<th>{c}</th>' for c in head)}</tr></thead><tbody>{cells}</tbody></table>"
                f"{more}</div>")

    def _link(self) -> str:
        """The file relative to the current directory (JupyterLab resolves it from the notebook's folder)."""
        try:
            return Path(os.path.relpath(self.path.resolve(), Path.cwd())).as_posix()
        except ValueError:  # another drive (Windows)
            return self.path.as_posix()
