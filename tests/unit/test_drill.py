"""The drill without servers: its schedule's ticks, the per-item choice of a snapshot, the
tier chain and its reasons, damage named as such, folder sampling and counting, the report's
JSON, Markdown, Slack and check forms, and the digest's SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from axe_pipelines.actions.drill import end_of_yesterday
from axe_pipelines.actions.drill_folders import Listed, choose_sample, files_check, mtime_ns
from axe_pipelines.actions.drill_report import (
    Attempt,
    DrillReport,
    ItemProof,
    markdown,
    slack_message,
)
from axe_pipelines.actions.drill_tiers import failure_reason, newest_holding, tier_chain
from axe_pipelines.actions.selection import RestoreError
from axe_pipelines.checks.drill import restorable_everywhere_result
from axe_pipelines.config import ConfigError, load_config, parse_config
from axe_pipelines.definitions import build_definitions
from axe_pipelines.integrity import digest_check
from axe_pipelines.names import drill_key
from axe_pipelines.postgres.dump import resolve_table_sql, table_digests
from axe_pipelines.restic import ResticFatal, Snapshot
from axe_pipelines.sets import BackupSet

SEOUL = ZoneInfo("Asia/Seoul")
SITE = Path(__file__).parent / "data" / "customers.yaml"


def test_the_drill_schedule_ticks_on_jan_apr_jul_oct_15_at_0300_seoul():
    defs = build_definitions(load_config(SITE))
    schedule = defs.get_repository_def().get_schedule_def("axe_restore_drill")
    assert schedule.cron_schedule == "0 3 15 1,4,7,10 *"
    assert schedule.execution_timezone == "Asia/Seoul"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "axe_restore_drill"
    start = datetime(2026, 5, 20, tzinfo=UTC).timestamp()
    ticks = cron_string_iterator(start, schedule.cron_schedule, schedule.execution_timezone)
    got = [next(ticks).isoformat() for _ in range(5)]
    assert got == ["2026-07-15T03:00:00+09:00", "2026-10-15T03:00:00+09:00",
                   "2027-01-15T03:00:00+09:00", "2027-04-15T03:00:00+09:00",
                   "2027-07-15T03:00:00+09:00"]
    job = defs.get_repository_def().get_job("axe_restore_drill")
    assert dict(job.tags)["axe/tier"] == "drill"


def test_a_bad_drill_schedule_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError) as err:
        parse_config({"axe": {"drill": {"schedule": "0 3 15 13 *"}}})
    assert "axe.drill.schedule" in str(err.value)


def test_the_default_as_of_is_the_end_of_yesterday():
    now = datetime(2026, 7, 15, 3, 0, 5, tzinfo=SEOUL)
    assert end_of_yesterday(now) == datetime(2026, 7, 14, 23, 59, 59, 999999, tzinfo=SEOUL)


def _snap(sid: str, at: datetime, kind: str, name: str) -> Snapshot:
    key = {"pgdump": "database", "files": "folder"}[kind]
    return Snapshot(sid, sid[:8], at, ("axe-pipelines", "customer=axe", f"kind={kind}",
                                       f"{key}={name}", f"run=r-{sid}"), ("/x",), "host")


def test_each_item_gets_its_own_newest_set_at_or_before_the_as_of():
    day = datetime(2026, 7, 12, 3, 0, tzinfo=SEOUL)
    sets = [BackupSet("r1", day, (_snap("a1", day, "pgdump", "frame"),
                                  _snap("f1", day, "files", "files"))),
            # The night frame failed: only the folder made it.
            BackupSet("r2", day + timedelta(days=1), (_snap("f2", day + timedelta(days=1),
                                                            "files", "files"),)),
            BackupSet("r3", day + timedelta(days=3), (_snap("a3", day + timedelta(days=3),
                                                            "pgdump", "frame"),))]
    as_of = day + timedelta(days=2)
    frame = newest_holding(sets, "pgdump", "frame", as_of, "tier local")
    assert [s.run_id for s in frame] == ["r1"]
    assert newest_holding(sets, "files", "files", as_of, "tier local")[-1].run_id == "r2"
    with pytest.raises(RestoreError) as err:
        newest_holding(sets, "pgdump", "frame", day - timedelta(days=1), "tier cold")
    assert "tier cold holds no pgdump snapshot of frame at or before 2026-07-11" in str(err.value)
    assert "its first is from 2026-07-12 03:00" in str(err.value)


def test_tiers_not_configured_are_named_and_an_unknown_tier_is_refused():
    site = parse_config({"solo": {"servers": {"s": {"host": "127.0.0.1"}},
                                  "databases": {"d": {"server": "s"}},
                                  "tiers": {"local": {"repository": "/r",
                                                      "password": {"env": "X"}}}}})
    chain = tier_chain(site, "solo", None)
    assert [t.name for t in chain] == ["local", "cold", "ring"]
    for tier, reason in zip(chain[1:], ("tier C is not configured",
                                        "tier B is not configured"), strict=True):
        with pytest.raises(RestoreError, match=reason):
            tier.open()
    with pytest.raises(ConfigError):
        tier_chain(site, "solo", "tape")
    assert [t.name for t in tier_chain(load_config(SITE), "axe", None)] == [
        "local", "cold", "ring (realchoice)"]


def test_a_damaged_pack_is_named_as_damage():
    exc = ResticFatal("tier A repository of axe (/r): restoring /frame.pgdump from snapshot "
                      "ab12cd34 failed: Fatal: There were 2 errors",
                      detail="Load(<data/d7985ec728>, 3000197, 0) failed: file is too short\n"
                             "Fatal: There were 2 errors")
    assert failure_reason(exc, "local") == (
        "pack d7985ec728 of the local repository is damaged (file is too short); run "
        "`restic check --read-data` (`axe check`) on it")
    assert failure_reason(RestoreError("no such set"), "local") == "no such set"


def test_restic_times_to_nanoseconds():
    assert mtime_ns("2026-12-01T20:59:44.745295467Z") == 1796158784745295467
    assert mtime_ns("2026-12-02T05:59:44.5+09:00") == 1796158784500000000
    assert mtime_ns("2026-12-01T20:59:44Z") == 1796158784000000000
    assert mtime_ns("yesterday") is None


def test_every_file_is_hashed_under_the_bound_else_a_repeatable_sample():
    files = [Listed(f"/f/{i}", 100, None) for i in range(50)]
    assert choose_sample(files, max_files=5, max_bytes=5000, seed="snap1") == files
    sample = choose_sample(files, max_files=5, max_bytes=4999, seed="snap1")
    assert len(sample) == 5 and sample == choose_sample(files, max_files=5, max_bytes=0,
                                                        seed="snap1")


def test_files_check_names_missing_extra_and_resized_files():
    listed = [Listed("/src/a", 3, None), Listed("/src/d/b", 5, None), Listed("/src/c", 1, None)]
    ok = files_check(listed, {"a": 3, "d/b": 5, "c": 1}, "/src")
    assert ok.passed and ok.detail.startswith("3 file(s), 9 bytes restored")
    bad = files_check(listed, {"a": 3, "d/b": 4, "x": 1}, "/src")
    assert not bad.passed
    assert "missing: c" in bad.detail and "not in the snapshot: x" in bad.detail
    assert "another size: d/b" in bad.detail


def _report() -> DrillReport:
    served = Attempt("cold", ok=True, snapshot_id="c0ffee00aa", original_id="a1b2c3d4ee",
                     set_time="2026-07-14T03:00:00+09:00", rto_s=4.25,
                     checks=[{"check": "row-counts", "kind": "builtin", "result": "ok",
                              "detail": "2 table(s)", "seconds": 0.1, "output": ""}])
    damaged = Attempt("local", reason="pack d7985ec728 of the local repository is damaged")
    return DrillReport("axe", "2026-07-15T03:00:00+09:00", "2026-07-14T23:59:59+09:00",
                       host="mini", axe_version="0.1.0", items=[
                           ItemProof("database", "index", attempts=[damaged, served],
                                     rpo_age_h=24.0, rpo_gap_h=24.0),
                           ItemProof("folder", "cache", required=False,
                                     attempts=[Attempt("local", reason="gone")])])


def test_the_report_round_trips_through_its_json_and_renders():
    report = _report()
    again = DrillReport.from_json(report.to_json())
    assert again == report and report.ok  # the optional folder does not fail the drill
    assert report.fallback_lines() == [
        "db/index: local failed (pack d7985ec728 of the local repository is damaged); "
        "served by cold", "files/cache: local failed (gone); NOT PROVEN by any tier"]
    row = report.rows()[0]
    assert row == {"item": "db/index", "tier": "cold", "snapshot": "c0ffee00", "set":
                   "2026-07-14 03:00", "rpo_h": 24.0, "rpo_gap_h": 24.0, "rto_s": 4.25,
                   "checks": "1/1",
                   "result": "ok"}
    assert report.rows()[1]["result"] == "WARN"
    md = markdown(report)
    assert "# Restore drill of axe: PASSED" in md and "copy of a1b2c3d4" in md
    message = slack_message(report)
    assert message.summary == "axe: restore drill passed (2 items)" and message.ok
    assert message.bullets_title == "Fallbacks"


def test_the_rpo_gap_between_the_last_two_good_sets_is_shown_everywhere():
    from axe_pipelines.assets.drill import drill_metadata
    from axe_pipelines.cli_drill import format_report

    report = _report()
    report.items[0].rpo_gap_h = 26.5
    meta = drill_metadata(report)
    assert meta["rpo_gap_h/db/index"].value == 26.5 and meta["rpo_gap_h_max"].value == 26.5
    [record, _] = meta["items"].value.records
    assert record.data["rpo_gap_h"] == 26.5
    header, first = format_report(report)[1:3]
    assert first[header.index("rpo_gap_h"):].split()[0] == "26.5"  # in its own column
    assert "| rpo_gap_h |" in markdown(report) and "| 26.5 |" in markdown(report)
    message = slack_message(report)
    assert "rpo_gap_h" in message.columns
    assert message.rows[0][message.columns.index("rpo_gap_h")] == "26.5"


def test_restorable_everywhere_is_an_error_naming_each_tier_when_nothing_proved_an_item():
    report = _report()
    report.items[0].attempts = report.items[0].attempts[:1]
    check = restorable_everywhere_result(drill_key("axe"), report)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.description == ("not proven by any tier: db/index (local: pack d7985ec728 "
                                 "of the local repository is damaged)")
    report.fatal = "drill staging: PostgreSQL did not start"
    assert restorable_everywhere_result(drill_key("axe"), report).description.startswith(
        "the drill could not run: drill staging")


def test_digest_tables_are_resolved_through_the_catalog_and_missing_ones_are_none():
    assert resolve_table_sql("o'brien").endswith("to_regclass('o''brien');")
    asked: list[str] = []
    answers = iter([[["public.evidence_blob"]], [["id", "f"], ["body", "t"]],
                    [["3", "12", "-7"]], []])

    def query(sql: str) -> list[list[str]]:
        asked.append(sql)
        return next(answers)

    got = table_digests(query, ["evidence_blob", "gone"])
    assert got["gone"] is None and got["evidence_blob"].startswith("3:")
    assert len(got["evidence_blob"]) == 2 + 32
    # bytea is hashed as bytes, the rest as text; only the catalog's quoted name is scanned.
    assert "md5(id::text)" in asked[2] and "md5(body)" in asked[2]
    assert asked[2].endswith("FROM public.evidence_blob) s;")


def test_no_recorded_digest_is_a_failed_check_not_a_silent_pass():
    check = digest_check(None, ["evidence_blob"], None)  # type: ignore[arg-type]
    assert not check.passed and "no digest was recorded" in check.detail
