"""Reading the machine's one neighbour table: the limit, the entries in use, and overflows
(``table_fulls``) between two readings, which turn a probe's failures into an error."""
from __future__ import annotations

import pytest

from labkit.runtime import neighbours

HEAD = ("entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast rcv_probes_ucast "
        "periodic_gc_runs forced_gc_runs unresolved_discards table_fulls")


def stat(entries: int, fulls: tuple[int, ...]) -> str:
    rows = [f"{entries:08x} 00000001 00000001 00000001   00000001 00000001 00000000   00000000         00000000 "
            f"        00000001         00000000       00000000            {f:08x}" for f in fulls]
    return "\n".join([HEAD, *rows]) + "\n"


@pytest.fixture
def proc(tmp_path, monkeypatch):
    files = {"stat": tmp_path / "arp_cache", "limit": tmp_path / "gc_thresh3"}
    monkeypatch.setattr(neighbours, "STAT", files["stat"])
    monkeypatch.setattr(neighbours, "LIMIT", files["limit"])
    files["limit"].write_text("1024\n")
    return files


def test_reads_limit_entries_and_overflows_summed_over_cpus(proc):
    proc["stat"].write_text(stat(0x56, (1, 2)))
    table = neighbours.read(local_engine=True)
    assert (table.limit, table.entries, table.table_fulls) == (1024, 0x56, 3)
    assert table.pods_allowed == (1024 - 0x56) // 2


def test_nothing_is_claimed_for_an_engine_elsewhere_or_unreadable_files(proc):
    proc["stat"].write_text(stat(10, (0,)))
    assert neighbours.read(local_engine=False) is None
    proc["stat"].unlink()
    assert neighbours.read(local_engine=True) is None


def test_an_overflow_between_two_readings_is_a_sentence_naming_the_limit(proc):
    proc["stat"].write_text(stat(1024, (5, 0)))
    before = neighbours.read(True)
    assert neighbours.overflow_note(before, neighbours.read(True)) is None
    proc["stat"].write_text(stat(1024, (5, 4)))
    note = neighbours.overflow_note(before, neighbours.read(True))
    assert note and "overflowed while probing (4 times" in note and "gc_thresh3 = 1024" in note
    assert "say nothing about policies" in note
    assert neighbours.overflow_note(None, before) is None


def test_this_machine_if_readable():
    table = neighbours.read(True)
    if table is None:
        pytest.skip("/proc/net/stat/arp_cache is not readable from this network namespace")
    assert table.limit >= 1 and table.entries >= 0
