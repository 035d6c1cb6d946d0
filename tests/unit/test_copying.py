"""copying.py's set arithmetic: what a target lacks (a copy counts as its original), and
which tier-A sets are finished."""

from __future__ import annotations

from datetime import UTC, datetime

from axe_pipelines.copying import finished_sets, missing_from, present_ids
from axe_pipelines.restic import Snapshot
from axe_pipelines.sets import BackupSet

T = datetime(2026, 5, 20, tzinfo=UTC)


def snap(sid: str, original: str | None = None) -> Snapshot:
    return Snapshot(sid, sid[:8], T, ("run=r",), ("/x",), "h", original=original)


def test_a_copy_counts_as_its_original():
    the_set = BackupSet("r", T, (snap("a" * 64), snap("b" * 64), snap("c" * 64)))
    at_target = [snap("x" * 64, original="a" * 64), snap("b" * 64)]
    assert present_ids(at_target) == {"a" * 64, "x" * 64, "b" * 64}
    assert [s.id for s in missing_from(the_set, at_target)] == ["c" * 64]
    assert missing_from(the_set, [*at_target, snap("y" * 64, original="c" * 64)]) == []


def test_sets_still_being_written_are_left_out():
    sets = [BackupSet(r, T, ()) for r in ("r1", "r2", "r3")]
    done, busy = finished_sets(sets, lambda run: run == "r3")
    assert [s.run_id for s in done] == ["r1", "r2"] and busy == ["r3"]
    assert finished_sets(sets, None) == (sets, [])
