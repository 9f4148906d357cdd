"""The machine's one neighbour (ARP) table, read (never written) from the engine's kernel.

Owns what labkit knows of it: the limit (``net.ipv4.neigh.default.gc_thresh3``, shared by
the host, every node and every pod of every lab), how many entries are in use, and how
often the kernel could not add one (``table_fulls``). Only the initial network namespace
shows these files, so they are read by this process, and only when the engine is on this
machine (a unix socket); elsewhere nothing is known and nothing is claimed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAT = Path("/proc/net/stat/arp_cache")
LIMIT = Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
ENTRIES_PER_POD = 2  # routed pods: the pod's entry for its gateway, the node's entry for the pod
ENTRIES_PER_NODE = 10  # fabric peers, the internet host and headroom


@dataclass(frozen=True)
class NeighbourTable:
    limit: int
    entries: int
    table_fulls: int

    @property
    def pods_allowed(self) -> int:
        """Roughly how many more lab pods fit (each routed pod needs about two entries)."""
        return max(0, (self.limit - self.entries) // ENTRIES_PER_POD)


def read(local_engine: bool) -> NeighbourTable | None:
    """The table as the kernel reports it now, or None when it cannot be read from here."""
    if not local_engine:
        return None
    try:
        lines = STAT.read_text().split("\n")
        limit = int(LIMIT.read_text().strip())
    except (OSError, ValueError):
        return None
    head = lines[0].split()
    rows = [line.split() for line in lines[1:] if line.strip()]
    if not rows or "table_fulls" not in head or "entries" not in head:
        return None
    fulls = sum(int(row[head.index("table_fulls")], 16) for row in rows)
    entries = int(rows[0][head.index("entries")], 16)  # the same global count on every row
    return NeighbourTable(limit, entries, fulls)


def overflow_note(before: NeighbourTable | None, after: NeighbourTable | None) -> str | None:
    """A sentence when the kernel refused neighbour entries between two readings, else None."""
    if before is None or after is None or after.table_fulls <= before.table_fulls:
        return None
    return (f"the machine's neighbour (ARP) table overflowed while probing ({after.table_fulls - before.table_fulls} "
            f"times; net.ipv4.neigh.default.gc_thresh3 = {after.limit}, shared by the host and every lab): "
            "failed connections here say nothing about policies. Close other labs, or use fewer pods")
