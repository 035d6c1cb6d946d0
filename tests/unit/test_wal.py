"""Issue 13 part 2 without servers: WAL segment arithmetic (timelines, the FF -> next xlogid
rollover, .history/.partial/.backup files), the archive command's cases on real files, and
the `wal:` config rules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from axe_pipelines.config import ConfigError, parse_config
from axe_pipelines.wal import archive
from axe_pipelines.wal.segments import (
    Segment,
    file_kind,
    find_gaps,
    parse_segment,
    segment_of_lsn,
    segments_of,
)

LOCAL = {"repository": "/r", "password": {"env": "X"}}


# --- segments ----------------------------------------------------------------------------------


def test_segment_names_roll_over_from_ff_to_the_next_xlogid():
    seg = parse_segment("0000000100000000000000FF")
    assert seg is not None and seg.timeline == 1 and seg.number == 0xFF
    assert seg.next().name == "000000010000000100000000"
    assert seg.next().next().name == "000000010000000100000001"
    assert parse_segment("000000010000000100000000").number == 0x100


def test_segment_parse_refuses_what_is_no_plain_segment():
    assert parse_segment("000000010000000000000100") is None  # past FF: no 16 MiB segment
    assert parse_segment("00000002.history") is None
    assert parse_segment("000000000000000000000001") is None  # timeline 0 does not exist
    assert parse_segment("00000001000000000000000a") is None  # PostgreSQL writes upper case
    # With 1 GiB segments an xlogid holds only 4.
    big = parse_segment("000000010000000000000003", 1 << 30)
    assert big is not None and big.next().name == "000000010000000100000000"


def test_file_kinds_of_the_archive():
    assert file_kind("000000010000000000000003") == "segment"
    assert file_kind("00000002.history") == "history"
    assert file_kind("000000010000000000000002.00000028.backup") == "backup"
    assert file_kind("000000010000000000000005.partial") == "partial"
    assert file_kind(".000000010000000000000003.123.tmp") is None
    assert file_kind("pushing") is None


def test_lsn_to_segment():
    assert segment_of_lsn("0/3000028", 1).name == "000000010000000000000003"
    assert segment_of_lsn("1/FF000000", 2).name == "0000000200000001000000FF"
    with pytest.raises(ValueError):
        segment_of_lsn("nonsense", 1)


def test_gaps_per_timeline_across_the_rollover_and_ignoring_other_files():
    names = ["0000000100000000000000FE", "0000000100000000000000FF",
             "000000010000000100000000",  # rollover: no gap
             "000000010000000100000003",  # 01 and 02 missing
             "000000010000000100000004.partial", "00000002.history",
             "000000020000000100000004", "000000020000000100000005",  # timeline 2 whole
             "000000010000000000000002.00000028.backup"]
    gaps = find_gaps(names)
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap.timeline, gap.first.name, gap.last.name, gap.count) == (
        1, "000000010000000100000001", "000000010000000100000002", 2)
    assert "2 segments 000000010000000100000001..000000010000000100000002" in gap.describe()
    assert find_gaps(names, since=Segment(1, 0x103)) == []
    assert [s.name for s in segments_of(names)][:3] == [
        "0000000100000000000000FE", "0000000100000000000000FF", "000000010000000100000000"]


def test_one_missing_segment_is_named():
    gaps = find_gaps(["000000010000000000000001", "000000010000000000000003"])
    assert [g.describe() for g in gaps] == [
        "segment 000000010000000000000002 is missing (timeline 1)"]


# --- the archive command -----------------------------------------------------------------------


def _wal(tmp_path: Path, name: str = "000000010000000000000007", data: bytes = b"w" * 9000,
         ) -> Path:
    pg_wal = tmp_path / "pg_wal"
    pg_wal.mkdir(exist_ok=True)
    (pg_wal / name).write_bytes(data)
    return pg_wal / name


def test_archive_puts_a_whole_file_under_its_name_and_leaves_no_temp(tmp_path: Path):
    spool = tmp_path / "spool"
    spool.mkdir()
    src = _wal(tmp_path)
    assert archive.main([str(src), src.name, str(spool)]) == 0
    assert (spool / src.name).read_bytes() == src.read_bytes()
    assert sorted(p.name for p in spool.iterdir()) == [src.name]


def test_archive_again_with_the_same_bytes_is_success_other_bytes_fail(tmp_path: Path, capsys):
    spool = tmp_path / "spool"
    spool.mkdir()
    src = _wal(tmp_path)
    assert archive.main([str(src), src.name, str(spool)]) == 0
    assert archive.main([str(src), src.name, str(spool)]) == 0  # PostgreSQL's retry
    # Already moved into a batch being pushed: still the same file, still success.
    batch = spool / archive.PUSHING / "b1"
    batch.mkdir(parents=True)
    (spool / src.name).rename(batch / src.name)
    assert archive.main([str(src), src.name, str(spool)]) == 0
    assert not (spool / src.name).exists()  # not stored a second time
    src.write_bytes(b"x" * 9000)
    capsys.readouterr()
    assert archive.main([str(src), src.name, str(spool)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other content" in err and src.name in err
    assert (batch / src.name).read_bytes() == b"w" * 9000  # never overwritten


def test_archive_refuses_a_missing_spool_and_odd_names(tmp_path: Path, capsys):
    src = _wal(tmp_path)
    assert archive.main([str(src), src.name, str(tmp_path / "not-mounted")]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert not (tmp_path / "not-mounted").exists()  # never created under a mount point
    spool = tmp_path / "spool"
    spool.mkdir()
    assert archive.main([str(src), "../escape", str(spool)]) == 1
    assert archive.main([str(tmp_path / "pg_wal" / "gone"), "gone", str(spool)]) == 1
    assert archive.main(["only-two", "args"]) == 2
    assert list(spool.iterdir()) == []


def test_archive_into_a_read_only_spool_fails_with_one_line(tmp_path: Path, capsys):
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o500)
    src = _wal(tmp_path)
    # root ignores the mode (CI runs as root): make the folder read-only for real with a
    # read-only bind mount of itself.
    mounted = os.geteuid() == 0
    if mounted:
        subprocess.run(["mount", "--bind", str(spool), str(spool)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(spool)], check=True)
    try:
        assert archive.main([str(src), src.name, str(spool)]) == 1
        assert "cannot copy" in capsys.readouterr().err
    finally:
        if mounted:
            subprocess.run(["umount", str(spool)], check=True)
    assert list(spool.iterdir()) == []


def test_archive_runs_as_a_plain_script_under_the_system_python(tmp_path: Path):
    """PostgreSQL runs it as the server's user, often without our venv: stdlib only."""
    spool = tmp_path / "spool"
    spool.mkdir()
    src = _wal(tmp_path)
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    proc = subprocess.run([python, "-I", archive.__file__, str(src), src.name, str(spool)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert (spool / src.name).read_bytes() == src.read_bytes()


# --- config ------------------------------------------------------------------------------------


def _site(servers: dict[str, Any], tiers: bool = True) -> Any:
    body: dict[str, Any] = {"servers": servers}
    if tiers:
        body["tiers"] = {"local": LOCAL}
    return parse_config({"axe": body})


def test_a_server_without_wal_stays_valid_and_defaults_apply():
    site = _site({"pg": {"host": "h"}, "pg2": {"host": "h", "wal": {"spool": "/s"}}})
    assert site.customers["axe"].servers["pg"].wal is None
    wal = site.customers["axe"].servers["pg2"].wal
    assert (wal.push_every_minutes, wal.rpo_minutes, wal.spool_on_server) == (5, 15, "/s")


@pytest.mark.parametrize(("servers", "tiers", "says"), [
    ({"pg": {"wal": {"spool": "relative/dir"}}}, True, "absolute"),
    ({"pg": {"wal": {"spool": "/s", "push_every_minutes": 0}}}, True, "push_every_minutes"),
    ({"pg": {"wal": {"spool": "/s", "push_every_minutes": 10, "freshness_minutes": 10}}},
     True, "must be more than push_every_minutes"),
    ({"pg": {"wal": {"spool": "/s", "speed": 3}}}, True, "speed"),
    ({"a": {"wal": {"spool": "/s"}}, "b": {"wal": {"spool": "/s"}}}, True,
     "also the spool of axe.servers.a"),
    ({"pg": {"wal": {"spool": "/s"}}}, False, "add tiers.local"),
])
def test_wal_config_rules(servers: dict[str, Any], tiers: bool, says: str):
    with pytest.raises(ConfigError) as info:
        _site(servers, tiers)
    assert says in " ".join(info.value.problems)


def test_the_wal_node_has_a_label_of_its_own():
    from axe_pipelines.node_labels import customer_nodes

    site = _site({"pg": {"host": "h", "wal": {"spool": "/s"}}})
    nodes = customer_nodes(site.customers["axe"], [])
    assert nodes["pg-wal"] == ["WAL of server pg"]


def test_the_wal_definitions_push_in_tier_a_pool_with_the_rpo_as_freshness():
    from datetime import timedelta

    from axe_pipelines.definitions import build_definitions
    from axe_pipelines.names import repository_pool, wal_job, wal_key, wal_sensor

    site = _site({"pg": {"host": "h", "wal": {"spool": "/s", "push_every_minutes": 3}},
                  "other": {"host": "h"}})
    defs = build_definitions(site)
    key = wal_key("axe", "pg")
    assert key.path == ["axe", "wal", "pg-wal"]
    (assets,) = [a for a in defs.assets if getattr(a, "keys", None) and key in a.keys]
    assert assets.keys == {key}  # the server without wal: has no WAL asset
    spec = next(iter(assets.specs))
    assert spec.freshness_policy.fail_window.to_timedelta() == timedelta(minutes=11)
    assert {k.name for k in assets.check_keys} == {"sequence_whole", "archiving"}
    assert assets.op.pool == repository_pool(site.customers["axe"])
    job = defs.resolve_job_def(wal_job("axe"))
    assert job.tags["axe/repository"]
    sensor = defs.resolve_sensor_def(wal_sensor("axe"))
    assert sensor.minimum_interval_seconds == 180


# --- retention ---------------------------------------------------------------------------------


def _snap(at, tags):
    import hashlib
    from datetime import UTC

    from axe_pipelines.restic import Snapshot

    tags = tuple(tags)
    sid = hashlib.sha256(f"{at.isoformat()}|{tags}".encode()).hexdigest()
    return Snapshot(sid, sid[:8], at.astimezone(UTC), tags, ("/x",), "host")


def test_retention_keeps_the_wal_every_kept_base_backup_needs_and_nothing_older():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from axe_pipelines.backup import TAG_TOOL
    from axe_pipelines.care import RetentionPolicy, plan_retention

    kst = ZoneInfo("Asia/Seoul")
    base = [TAG_TOOL, "customer=axe", "kind=physical", "server=pg"]
    old = _snap(datetime(2026, 5, 1, 3, tzinfo=kst), [*base, "run=r1"])
    new = _snap(datetime(2026, 5, 8, 3, tzinfo=kst), [*base, "run=r2"])
    wal = [TAG_TOOL, "customer=axe", "kind=wal", "server=pg"]

    def batch(day: int, first: int, last: int):
        return _snap(datetime(2026, 5, day, 4, tzinfo=kst),
                     [*wal, f"batch=b{first}", f"first=000000010000000000000{first:03X}",
                      f"last=000000010000000000000{last:03X}"])

    before_old, between, straddles, after = batch(1, 1, 4), batch(3, 5, 0x20), \
        batch(8, 0x21, 0x23), batch(9, 0x24, 0x30)
    history = _snap(datetime(2026, 5, 2, 4, tzinfo=kst), [*wal, "batch=h"])  # only .history
    other = _snap(datetime(2026, 5, 2, 4, tzinfo=kst),
                  [TAG_TOOL, "customer=zzz", "kind=wal", "server=pg", "batch=x",
                   "first=000000010000000000000001", "last=000000010000000000000001"])
    everything = [old, new, before_old, between, straddles, after, history, other]
    now = datetime(2026, 5, 10, tzinfo=kst)
    starts = {old.id: parse_segment("000000010000000000000003"),
              new.id: parse_segment("000000010000000000000022")}

    keep_both = plan_retention(everything, RetentionPolicy(keep_last=2), customer="axe",
                               now=now, timezone="Asia/Seoul", wal_starts=starts)
    assert {d.snapshot.id for d in keep_both.forgotten} == set()
    only_new = plan_retention(everything, RetentionPolicy(keep_last=1), customer="axe",
                              now=now, timezone="Asia/Seoul", wal_starts=starts)
    gone = {d.snapshot.id for d in only_new.forgotten}
    assert gone == {old.id, before_old.id, between.id}  # older than the new backup's start
    assert other.id not in gone and history.id not in gone and straddles.id not in gone
    assert any("wal/pg: keep 3 WAL batch(es), forget 2" in line for line in only_new.lines())
    # The start of a kept base backup unknown (its tar unreadable): all its WAL stays.
    unknown = plan_retention(everything, RetentionPolicy(keep_last=1), customer="axe",
                             now=now, timezone="Asia/Seoul", wal_starts={})
    assert {d.snapshot.id for d in unknown.forgotten} == {old.id}


def test_doctor_names_each_wal_setting_that_cannot_work():
    from axe_pipelines.actions.doctor_wal import setting_findings

    server = _site({"pg": {"host": "h", "wal": {"spool": "/srv/wal/pg"}}}).customers[
        "axe"].servers["pg"]
    good = {"archive_mode": "on", "wal_level": "replica", "archive_timeout": "60",
            "archive_command": "/usr/bin/python3 /opt/axe/axe_pipelines/wal/archive.py %p %f "
                               "/srv/wal/pg"}
    assert [f.status for f in setting_findings("pg", server, good)] == ["ok"] * 4
    bad = {"archive_mode": "off", "wal_level": "minimal", "archive_timeout": "0",
           "archive_command": "cp %p /mnt/elsewhere/%f"}
    found = setting_findings("pg", server, bad)
    assert [f.status for f in found] == ["FAIL", "FAIL", "warn", "FAIL"]
    assert "set archive_mode = on" in found[0].text and "restart" in found[0].text
    assert "%p %f /srv/wal/pg" in found[3].text


def test_a_clock_time_between_the_sets_on_a_server_with_wal_means_pitr(monkeypatch):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from axe_pipelines.actions import restore_pitr
    from axe_pipelines.actions.restore import RestoreOptions
    from axe_pipelines.actions.selection import RestoreError
    from axe_pipelines.sets import BackupSet

    site = parse_config({"axe": {
        "servers": {"pg": {"host": "h", "wal": {"spool": "/s"}}, "plain": {"host": "h"}},
        "databases": {"ledger": {"server": "pg"}, "other": {"server": "plain"}},
        "tiers": {"local": LOCAL}}})
    kst = ZoneInfo("Asia/Seoul")
    sets = [BackupSet("r1", datetime(2026, 5, 20, 3, 0, 12, tzinfo=kst), ())]
    monkeypatch.setattr(restore_pitr, "open_source", lambda *a: ("local", None, None))
    monkeypatch.setattr(restore_pitr, "list_sets", lambda *a: sets)

    def wants(as_of: str, target: str | None = "ledger", pitr: bool = False) -> bool:
        return restore_pitr.wants_pitr(site, RestoreOptions(customer="axe", as_of=as_of,
                                                            target=target, pitr=pitr))

    assert wants("2026-05-20T14:37")
    assert not wants("2026-05-20T03:00")  # a set was stamped in that minute: set-based
    assert not wants("2026-05-20") and not wants("latest")  # no clock time
    assert not wants("2026-05-20T14:37", target="other")  # its server has no wal:
    assert wants("2026-05-20T03:00", pitr=True)
    with pytest.raises(RestoreError, match="--pitr restores one database"):
        wants("2026-05-20T14:37", target=None, pitr=True)
