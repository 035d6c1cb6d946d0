"""copying.CopyReport: restic copy -v's report, read line by line, confirms a copy only when
it accounts for every snapshot in the order restic 0.17/0.18 print it."""

from __future__ import annotations

from datetime import UTC, datetime

from axe_pipelines.copying import CopyReport
from axe_pipelines.restic import Snapshot

A, B = "a" * 8 + "1" * 56, "b" * 8 + "2" * 56


def _snap(sid: str) -> Snapshot:
    return Snapshot(id=sid, short_id=sid[:8], time=datetime(2026, 12, 1, tzinfo=UTC), tags=(),
                    paths=(), hostname="vm")


def _read(*lines: str) -> CopyReport:
    report = CopyReport()
    for line in lines:
        report.line(line)
    return report


REPORT = ("", f"snapshot {A[:8]} of [/f] at 2026-12-02 10:11:33 +0000 UTC by root@vm",
          "  copy started, this may take a while...", "[0:00] 100.00%  2 / 2 packs copied",
          "", "snapshot 11112222 saved", "",
          f"snapshot {B[:8]} of [/g] at 2026-12-02 10:11:34 +0000 UTC by root@vm",
          f"skipping source snapshot {B[:8]}, was already copied to snapshot 33334444")


def test_a_full_report_with_every_copy_at_the_target_confirms_it():
    files = {"1111222200", "3333444400", "ffff"}
    saved, there = _read(*REPORT).confirmed([_snap(A), _snap(B)], files)
    assert [s.id for s in saved] == [A] and [s.id for s in there] == [B]


def test_a_copy_missing_from_the_target_files_confirms_nothing():
    assert _read(*REPORT).confirmed([_snap(A), _snap(B)], {"1111222200"}) is None


def test_a_snapshot_the_report_does_not_name_confirms_nothing():
    c = "c" * 64
    assert _read(*REPORT).confirmed([_snap(A), _snap(B), _snap(c)],
                                    {"1111222200", "3333444400"}) is None


def test_batched_or_reordered_lines_make_the_report_unreadable():
    batched = _read(REPORT[1], REPORT[7], "snapshot 11112222 saved", "snapshot 55556666 saved")
    assert batched.unreadable
    assert batched.confirmed([_snap(A), _snap(B)], {"1111222200", "5555666600"}) is None
    saved_first = _read("snapshot 11112222 saved", REPORT[1])
    assert saved_first.unreadable
    skip_of_another = _read(REPORT[1], REPORT[8])
    assert skip_of_another.unreadable


def test_a_header_left_open_at_the_end_confirms_nothing():
    report = _read(*REPORT[:4])  # restic stopped before saving
    assert report.confirmed([_snap(A)], {"1111222200"}) is None
