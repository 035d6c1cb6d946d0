"""Retention planning on a synthetic history (no restic): policies keep exactly what they say,
per item, sets whole, each item's newest always, other snapshots never judged."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from axe_pipelines.backup import TAG_TOOL
from axe_pipelines.care import (
    ForgetPlan,
    RetentionPolicy,
    parse_duration,
    plan_retention,
    tier_policy,
)
from axe_pipelines.care.planner import NEWEST, NEWEST_COMPLETE
from axe_pipelines.restic import Snapshot

ZONE = "Asia/Seoul"
KST = ZoneInfo(ZONE)
NOW = datetime(2026, 5, 20, 9, 0, tzinfo=KST)
# (kind, tag key, name) -> the item label the planner uses.
ITEMS = {("pgdump", "database", "frame"): "db/frame", ("pgdump", "database", "hive"): "db/hive",
         ("roles", "server", "frame-postgres"): "roles/frame-postgres",
         ("files", "folder", "files"): "files/files"}


def snap(at: datetime, tags: Iterable[str]) -> Snapshot:
    tags = tuple(tags)
    sid = hashlib.sha256(f"{at.isoformat()}|{tags}".encode()).hexdigest()
    # restic lists times with the offset they were made in; the planner must convert.
    return Snapshot(sid, sid[:8], at.astimezone(UTC), tags, ("/x",), "host")


def make_set(at: datetime, items: Iterable[tuple[str, str, str]] = ITEMS, *,
             run: str | None = None, customer: str = "axe",
             extra: tuple[str, ...] = ()) -> list[Snapshot]:
    """One run's set: every item a snapshot at the run's logical time, one run= tag."""
    run = run or f"run-{at:%Y%m%d%H%M}"
    return [snap(at, (TAG_TOOL, f"customer={customer}", f"kind={kind}", f"{key}={name}",
                      f"run={run}", *extra)) for kind, key, name in items]


def nightly(first: date, last: date, hour: int = 3) -> list[Snapshot]:
    """A set every night at `hour` KST from `first` to `last`."""
    out: list[Snapshot] = []
    day = first
    while day <= last:
        out += make_set(datetime(day.year, day.month, day.day, hour, tzinfo=KST))
        day += timedelta(days=1)
    return out


# 18 months of nightly sets: 2024-12-01 .. 2026-05-20, 4 items each.
HISTORY = nightly(date(2024, 12, 1), date(2026, 5, 20))


def plan(snapshots: list[Snapshot], **policy: object) -> ForgetPlan:
    return plan_retention(snapshots, RetentionPolicy(**policy), customer="axe", now=NOW,
                          timezone=ZONE)


def kept_days(p: ForgetPlan, item: str | None = None) -> set[str]:
    """The local days (YYYY-MM-DD HH:MM) of the sets whose snapshots were kept."""
    return {f"{d.set_time.astimezone(KST):%Y-%m-%d %H:%M}" for d in p.kept
            if d.set_time and (item is None or d.item == item)}


def assert_sets_whole(p: ForgetPlan) -> None:
    for s in p.sets():
        assert not (s.kept and s.forgotten), f"set {s.run} is split: {s}"


def assert_newest_kept(p: ForgetPlan, snapshots: list[Snapshot]) -> None:
    newest: dict[tuple[str | None, str | None], Snapshot] = {}
    for s in snapshots:
        key = (s.tag("kind"), s.tag("database") or s.tag("server") or s.tag("folder"))
        if key not in newest or s.time > newest[key].time:
            newest[key] = s
    kept = {d.snapshot.id for d in p.kept}
    assert all(s.id in kept for s in newest.values())


def test_daily_weekly_monthly_yearly_keep_exactly_those_sets_whole():
    p = plan(HISTORY, keep_daily=7, keep_weekly=4, keep_monthly=6, keep_yearly=2)
    # 2026-05-20 is a Wednesday: its ISO week began Monday 05-18; earlier weeks end on Sunday.
    assert kept_days(p) == {
        *(f"2026-05-{d:02d} 03:00" for d in range(14, 21)),     # daily: the last 7 days
        "2026-05-10 03:00", "2026-05-03 03:00",                 # weekly: W19, W18 (+W21, W20)
        "2026-04-30 03:00", "2026-03-31 03:00", "2026-02-28 03:00", "2026-01-31 03:00",
        "2025-12-31 03:00",                                     # monthly (and yearly 2025)
    }
    assert len(p.kept) == 14 * 4 and len(p.forgotten) == len(HISTORY) - 14 * 4
    assert_sets_whole(p)
    assert_newest_kept(p, HISTORY)
    (dec31,) = [s for s in p.sets() if s.time.astimezone(KST).date() == date(2025, 12, 31)]
    assert set(dec31.reasons) == {"monthly 2025-12", "yearly 2025"}
    (today,) = p.sets()[:1]
    assert {"daily 2026-05-20", "weekly 2026-W21", "monthly 2026-05", "yearly 2026",
            NEWEST} <= set(today.reasons)


def test_a_count_not_used_up_keeps_the_oldest_as_restic_does():
    # 18 months span 2024..2026: yearly 5 keeps the newest of each year and, with counts
    # left, the oldest snapshot (restic: "oldest yearly snapshot").
    p = plan(HISTORY, keep_yearly=5)
    assert kept_days(p) == {"2026-05-20 03:00", "2025-12-31 03:00", "2024-12-31 03:00",
                            "2024-12-01 03:00"}
    (first,) = [s for s in p.sets() if s.time.astimezone(KST).date() == date(2024, 12, 1)]
    assert first.reasons == ("oldest yearly 2024",)
    assert_sets_whole(p)


def test_keep_last_counts_per_item_so_a_partial_run_pushes_out_nothing():
    history = nightly(date(2026, 5, 11), date(2026, 5, 20))
    # A Dagster re-execution at 09:00 that backed up db/frame alone.
    history += make_set(datetime(2026, 5, 20, 9, 0, tzinfo=KST),
                        [("pgdump", "database", "frame")], run="rerun")
    p = plan(history, keep_last=3)
    assert kept_days(p, "db/frame") == {"2026-05-20 09:00", "2026-05-20 03:00",
                                        "2026-05-19 03:00"}
    for other in ("db/hive", "roles/frame-postgres", "files/files"):
        assert kept_days(p, other) == {"2026-05-20 03:00", "2026-05-19 03:00",
                                       "2026-05-18 03:00"}
    assert {d.reasons[0] for d in p.kept} == {"last 3"}


def test_an_item_missing_from_a_set_keeps_its_own_history():
    history = [s for s in nightly(date(2026, 5, 1), date(2026, 5, 20))
               if not (s.tag("database") == "hive" and s.tag("run") == "run-202605190300")]
    # hive's dump failed on the 05-19 03:00 run; a re-run at 09:00 backed up hive alone.
    history += make_set(datetime(2026, 5, 19, 9, 0, tzinfo=KST),
                        [("pgdump", "database", "hive")], run="hive-rerun")
    p = plan(history, keep_daily=3)
    for other in ("db/frame", "roles/frame-postgres", "files/files"):
        assert kept_days(p, other) == {"2026-05-20 03:00", "2026-05-19 03:00",
                                       "2026-05-18 03:00"}
    # hive's newest of 05-19 is the re-run's: the 05-19 bucket is complete over both sets.
    assert kept_days(p, "db/hive") == {"2026-05-20 03:00", "2026-05-19 09:00",
                                       "2026-05-18 03:00"}
    # A hive gap with no re-run: hive reaches one day further back, nobody loses a day.
    gap = [s for s in history if s.tag("run") != "hive-rerun"]
    p = plan(gap, keep_daily=3)
    assert kept_days(p, "db/hive") == {"2026-05-20 03:00", "2026-05-18 03:00",
                                       "2026-05-17 03:00"}
    assert kept_days(p, "db/frame") == {"2026-05-20 03:00", "2026-05-19 03:00",
                                        "2026-05-18 03:00"}


def test_the_newest_and_the_newest_complete_snapshot_of_every_item_are_kept():
    history = nightly(date(2026, 5, 1), date(2026, 5, 19))
    history += make_set(datetime(2026, 5, 20, 3, tzinfo=KST), [("files", "folder", "files")],
                        run="last", extra=("incomplete",))
    history += make_set(datetime(2026, 5, 20, 3, tzinfo=KST),
                        [k for k in ITEMS if k[0] != "files"], run="last")
    # An item no longer configured: its last copies are from March.
    history += make_set(datetime(2026, 3, 2, 3, tzinfo=KST), [("pgdump", "database", "gone")])
    p = plan(history, keep_within="1d")
    files = {d.snapshot.time.astimezone(KST).date(): d.reasons for d in p.kept
             if d.item == "files/files"}
    assert files == {date(2026, 5, 20): ("within 1d", NEWEST),
                     date(2026, 5, 19): (NEWEST_COMPLETE,)}  # 1d back is not "after"
    assert kept_days(p, "db/gone") == {"2026-03-02 03:00"}
    assert_newest_kept(p, history)


def test_snapshots_not_made_by_axe_or_of_another_customer_or_from_the_future_stay():
    history = nightly(date(2026, 5, 1), date(2026, 5, 20))
    manual = snap(datetime(2025, 1, 1, tzinfo=KST), ())  # someone's own `restic backup`
    other = make_set(datetime(2025, 1, 1, 3, tzinfo=KST), customer="realchoice")
    untagged = snap(datetime(2025, 1, 2, tzinfo=KST), (TAG_TOOL, "customer=axe"))
    future = make_set(datetime(2026, 5, 22, 3, tzinfo=KST))  # a skewed clock or a forgery
    p = plan([*history, manual, *other, untagged, *future], keep_last=1)
    why = {d.snapshot.id: d.reasons for d in p.kept}
    assert why[manual.id] == ("not made by axe",)
    assert all(why[s.id] == ("customer realchoice, not axe",) for s in other)
    assert why[untagged.id] == ("no run= or item tag",)
    assert all(why[s.id][0].startswith("dated after now") for s in future)
    # The future set does not count as "last 1": the real newest set stays too.
    assert kept_days(p) >= {"2026-05-20 03:00"}
    assert len(p.forgotten) == 19 * 4
    assert not set(p.forget_ids) & {manual.id, untagged.id, *(s.id for s in other + future)}


def test_keep_within_is_measured_from_the_newest_set():
    p = plan(HISTORY, keep_within="30d")
    # Newest set 2026-05-20 03:00; restic keeps what is strictly after 2026-04-20 03:00.
    assert min(kept_days(p)) == "2026-04-21 03:00" and len(kept_days(p)) == 30
    assert_sets_whole(p)
    # Backups that stopped a month ago still keep their last 30 days (not measured from now).
    stopped = [s for s in HISTORY if s.time < datetime(2026, 4, 20, tzinfo=KST)]
    assert len(kept_days(plan(stopped, keep_within="30d"))) == 30
    assert len(plan(HISTORY, keep_within="1y6m").forgotten) == 0  # 1y6m reaches 2024-11-20


def test_buckets_are_days_and_weeks_of_the_customers_zone():
    sets = [make_set(datetime(2026, 5, 20, 3, 0, tzinfo=KST)),
            make_set(datetime(2026, 5, 19, 0, 30, tzinfo=KST)),   # 05-18 15:30 UTC
            make_set(datetime(2026, 5, 18, 23, 0, tzinfo=KST)),   # 05-18 14:00 UTC
            make_set(datetime(2026, 5, 18, 3, 0, tzinfo=KST))]    # 05-17 18:00 UTC
    history = [s for one in sets for s in one]
    p = plan(history, keep_daily=3)
    # KST days 05-20, 05-19, 05-18 (the 23:00 set is that day's newest); in UTC the 00:30
    # set would share 05-18 with the 23:00 one and the 05-18 03:00 set would be kept.
    assert kept_days(p) == {"2026-05-20 03:00", "2026-05-19 00:30", "2026-05-18 23:00"}
    (half_past,) = [s for s in p.sets() if s.time.astimezone(KST).hour == 0]
    assert half_past.reasons[0] == "daily 2026-05-19"
    # Monday 2026-05-18 00:30 KST is Sunday in UTC: it opens ISO week 21 here.
    # In UTC all three are in week 20 (Monday's and Saturday's kept, Sunday's forgotten).
    week = [s for d, h in ((18, 0), (17, 3), (16, 3))
            for s in make_set(datetime(2026, 5, d, h, 30 if h == 0 else 0, tzinfo=KST))]
    p = plan(week, keep_weekly=2)
    assert kept_days(p) == {"2026-05-18 00:30", "2026-05-17 03:00"}
    assert [s.reasons[0] for s in p.sets() if s.kept] == ["weekly 2026-W21", "weekly 2026-W20"]


@pytest.mark.parametrize("bad", [{}, {"keep_hourly": 24}, {"keep_daily": 0},
                                 {"keep_within": "2w"}, {"keep_within": "0d"}])
def test_an_empty_or_malformed_policy_is_rejected(bad: dict[str, object]):
    with pytest.raises(ValidationError):
        RetentionPolicy(**bad)


def test_a_tiers_policy_is_read_from_its_retention_block():
    with pytest.raises(ValidationError, match="at least one of keep_last"):
        RetentionPolicy.model_validate({})
    assert tier_policy(SimpleNamespace(retention={"keep_daily": 7})) == RetentionPolicy(
        keep_daily=7)
    assert tier_policy(SimpleNamespace()) is None and tier_policy(None) is None


def test_durations_follow_restics_calendar_arithmetic():
    end = datetime(2026, 3, 31, 3, 0, tzinfo=KST)
    assert parse_duration("1m").before(end) == datetime(2026, 3, 3, 3, 0, tzinfo=KST)
    assert parse_duration("1y6m").before(end) == datetime(2024, 10, 1, 3, 0, tzinfo=KST)
    assert parse_duration("36h").before(end) == datetime(2026, 3, 29, 15, 0, tzinfo=KST)
    assert str(parse_duration("6m1y")) == "1y6m"


def test_the_dry_run_lines_and_json_say_what_goes():
    p = plan(nightly(date(2026, 5, 1), date(2026, 5, 20)), keep_daily=2)
    lines = p.lines()
    assert lines[0].startswith("axe: keep 8 snapshot(s), forget 72 (from 18 of 20 set(s))")
    assert "2026-05-20 03:00 KST" in lines[1] and "keep all 4: daily 2026-05-20" in lines[1]
    assert lines[-1].endswith("forget all 4") and len(lines) == 21
    data = p.as_json()
    assert len(data["keep"]) == 8 and len(data["forget"]) == 72
    assert data["policy"] == {"keep_daily": 2} and data["keep"][0]["item"] in ITEMS.values()
    assert p.forget_ids == [d["id"] for d in reversed(data["forget"])]
