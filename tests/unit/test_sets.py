"""sets.py: grouping snapshots into sets and the as-of rules, on snapshots made up here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.restic import Snapshot
from axe_pipelines.sets import AsOfError, BackupSet, group_sets, parse_as_of, select_as_of

KST = ZoneInfo("Asia/Seoul")


def snap(sid: str, at: datetime, *tags: str) -> Snapshot:
    return Snapshot(sid, sid[:8], at, tuple(tags), ("/x",), "host")


def nightly(*days: int, second: int = 42) -> list[BackupSet]:
    """One set per day of May 2026, its run at 03:00:`second` KST."""
    return [BackupSet(f"run-{d}", datetime(2026, 5, d, 3, 0, second, tzinfo=KST), ())
            for d in days]


def test_group_sets_by_run_oldest_first_without_incomplete_snapshots():
    t = datetime(2026, 5, 20, 3, tzinfo=KST)
    sets = group_sets([
        snap("b1", t + timedelta(days=1), "run=b", "kind=pgdump", "database=frame"),
        snap("a1", t + timedelta(seconds=5), "run=a", "kind=pgdump", "database=frame"),
        snap("a2", t, "run=a", "kind=files", "folder=files"),
        snap("a3", t, "run=a", "kind=pgdump", "database=hive", "incomplete"),
        snap("x1", t, "kind=pgdump"),  # not made by a run: in no set
    ])
    assert [s.run_id for s in sets] == ["a", "b"]
    assert sets[0].time == t  # the earliest member's logical time
    assert sets[0].ids == ["a1", "a2"]
    assert sets[0].member("pgdump", "frame").id == "a1"
    assert sets[0].member("files", "files").id == "a2"
    assert sets[0].member("pgdump", "hive") is None


def test_a_date_alone_means_the_end_of_that_day_in_the_customers_zone():
    assert parse_as_of("2026-05-20", "Asia/Seoul") == datetime(
        2026, 5, 20, 23, 59, 59, 999999, tzinfo=KST)


@pytest.mark.parametrize("text", ["2026-05-20T03:00", "2026-05-20 03:00", "2026-05-20T03:00+09:00",
                                  "2026-05-19T18:00Z"])
def test_a_time_without_seconds_covers_the_whole_minute(text):
    assert parse_as_of(text, "Asia/Seoul") == datetime(2026, 5, 20, 3, 0, 59, 999999, tzinfo=KST)


def test_seconds_are_taken_exactly_and_latest_is_now():
    assert parse_as_of("2026-05-20T03:00:00", "Asia/Seoul") == datetime(2026, 5, 20, 3,
                                                                          tzinfo=KST)
    now = datetime(2026, 5, 21, 1, 2, 3, tzinfo=UTC)
    assert parse_as_of("latest", "Asia/Seoul", now=now) == now
    assert parse_as_of("now", "Asia/Seoul", now=now).tzinfo == KST


def test_an_unreadable_as_of_is_a_usage_error():
    with pytest.raises(AsOfError, match="cannot read --as-of 'yesterday'") as info:
        parse_as_of("yesterday", "Asia/Seoul")
    assert info.value.exit_code == 2


def test_select_as_of_picks_the_0300_run_that_finished_at_0300_42():
    sets = nightly(18, 19, 20, 21)
    chosen = select_as_of(sets, parse_as_of("2026-05-20T03:00", "Asia/Seoul"), where="tier A")
    assert chosen.run_id == "run-20"
    assert select_as_of(sets, parse_as_of("2026-05-20", "Asia/Seoul"), where="A").run_id == \
        "run-20"
    assert select_as_of(sets, parse_as_of("2030-01-01", "Asia/Seoul"), where="A").run_id == \
        "run-21"


def test_before_the_first_set_the_error_lists_the_range():
    with pytest.raises(AsOfError) as info:
        select_as_of(nightly(18, 21), parse_as_of("2026-05-17", "Asia/Seoul"),
                     where="tier A of axe")
    assert str(info.value) == ("no backup set in tier A of axe at or before 2026-05-17 23:59 "
                               "KST; sets exist from 2026-05-18 03:00 to 2026-05-21 03:00 "
                               "(2 sets)")
    with pytest.raises(AsOfError, match="tier A of axe holds no backup sets"):
        select_as_of([], parse_as_of("latest", "Asia/Seoul"), where="tier A of axe")
