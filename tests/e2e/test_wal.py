"""Issue 13 part 2 against a real PostgreSQL with archiving on, the real archive command
(run by the server's archiver as its own user) and the real restic: the pusher survives
kill -9 between its steps without losing or duplicating a segment, and a missing segment is
found by the gap check."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from axe_pipelines.backup import local_restic
from axe_pipelines.postgres.cluster import LocalCluster
from axe_pipelines.wal.push import PAUSE_ENV
from axe_pipelines.wal.segments import find_gaps
from tests.e2e.wal_support import (
    COLD_PASSWORD_ENV,
    archive_command,
    archiver,
    own_spool,
    run_axe,
    start_archiving_cluster,
    start_axe,
    switch,
    wait_archived,
    wait_stopped,
    write_site,
)


@pytest.fixture(scope="module")
def wal_server(pg_root: Path) -> Iterator[LocalCluster]:
    cluster = start_archiving_cluster(pg_root / "wal")
    cluster.psql("CREATE DATABASE ledger;")
    yield cluster
    cluster.stop()


def stored_names(config_site, restic_bin: str) -> Counter[str]:
    """Every WAL file name in tier A's WAL snapshots, counted over all of them."""
    restic = local_restic("axe", config_site.customers["axe"])
    out = restic.run(["find", "--json", "--tag", "kind=wal", "0*"], what="find")
    return Counter(m["path"].rsplit("/", 1)[1] for snap in json.loads(out or "[]")
                   for m in snap["matches"] if m["type"] == "file")


def test_the_pusher_survives_kill_9_between_its_steps(wal_server: LocalCluster, pg_root: Path,
                                                     tmp_path: Path, restic_bin: str,
                                                     monkeypatch: pytest.MonkeyPatch):
    spool = own_spool(wal_server, pg_root / "spool-kill")
    monkeypatch.setenv(COLD_PASSWORD_ENV, "cold-" + os.urandom(8).hex())
    (tmp_path / "Volumes" / "axe-cold-1").mkdir(parents=True)
    config, site = write_site(tmp_path, wal_server, spool, cold=tmp_path / "Volumes")
    assert run_axe(config, "init").returncode == 0
    made = switch(wal_server, 3)
    wait_archived(wal_server, made[-1])

    # 1: killed after moving the batch into pushing/<id>/, before restic ran.
    proc = start_axe(config, "wal", "push", env={PAUSE_ENV: "moved"})
    wait_stopped(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    batches = [p for p in (spool / "pushing").iterdir() if p.is_dir()]
    assert len(batches) == 1 and sorted(p.name for p in batches[0].iterdir()) == made
    assert stored_names(site, restic_bin) == Counter()

    # 2: more WAL; killed after the snapshot was written, before the batch was removed (it
    # pauses in the first batch it backs up: the leftover one, pushed again).
    made += switch(wal_server, 2)
    wait_archived(wal_server, made[-1])
    proc = start_axe(config, "wal", "push", env={PAUSE_ENV: "backed-up"})
    wait_stopped(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [p.name for p in (spool / "pushing").iterdir() if p.is_dir()] == [batches[0].name]

    # 3: a push without pauses settles both and pushes the rest.
    made += switch(wal_server, 1)
    wait_archived(wal_server, made[-1])
    done = run_axe(config, "wal", "push")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already in the repository; removed from the spool" in done.stderr
    assert "sequence whole" in done.stdout
    counts = stored_names(site, restic_bin)
    assert set(made) <= set(counts) and max(counts.values()) == 1, counts
    assert find_gaps(counts) == []
    assert [p.name for p in spool.iterdir() if not p.name.startswith(".")] == ["pushing"]
    assert [p for p in (spool / "pushing").iterdir() if p.is_dir()] == []
    doctor = run_axe(config, "doctor").stdout
    for said in ("WAL of ledger-postgres: archive_mode on", "wal_level replica",
                 "archive_timeout 60 s", f"archive_command writes into {spool}",
                 "newest WAL in tier A arrived"):
        assert said in doctor, doctor

    # Tier C copies the WAL batches with the night's set.
    assert run_axe(config, "backup", "--local", "--skip-restore-check").returncode == 0
    cold = run_axe(config, "backup", "--cold")
    assert cold.returncode == 0, cold.stdout + cold.stderr
    from axe_pipelines.tiers import open_tier

    wal_a = {s.id for s in local_restic("axe", site.customers["axe"]).snapshots(
        tags=["kind=wal"])}
    wal_c = {s.original for s in open_tier(site, "axe", "cold").snapshots(tags=["kind=wal"])}
    assert len(wal_a) == 2 and wal_c == wal_a


def test_a_missing_segment_is_found_by_the_gap_check_and_named_by_the_restore(
        wal_server: LocalCluster, pg_root: Path, tmp_path: Path):
    spool = own_spool(wal_server, pg_root / "spool-gap")
    config, _ = write_site(tmp_path, wal_server, spool, physical=True)
    assert run_axe(config, "init").returncode == 0
    assert run_axe(config, "backup", "--local", "--skip-restore-check").returncode == 0
    made = switch(wal_server, 2)
    moment = _now(wal_server)
    made += switch(wal_server, 2)
    wait_archived(wal_server, made[-1])
    (spool / made[1]).unlink()  # a segment lost before it was pushed
    done = run_axe(config, "wal", "push")
    assert done.returncode == 1
    assert f"GAPS: segments {made[1]}..{made[1]} are missing" in done.stdout

    restore = run_axe(config, "restore", "--customer", "axe", "--target", "ledger",
                      "--as-of", moment, "--pitr")
    assert restore.returncode == 1
    (line,) = restore.stderr.strip().splitlines()
    assert line.startswith("axe: restore: ledger-postgres: WAL needed") and made[1] in line
    assert "nothing was changed" in line


def test_a_full_spool_disk_makes_the_archiver_retry_and_alerts(
        wal_server: LocalCluster, pg_root: Path, tmp_path: Path, dagster_home: Path,
        monkeypatch: pytest.MonkeyPatch):
    import dagster as dg

    from axe_pipelines.definitions import build_definitions
    from axe_pipelines.names import ALERT_SENSOR, wal_job, wal_key
    from tests.e2e.test_alerts import HOOK_ENV, tick
    from tests.mounts import require_tmpfs, umount_all
    from tests.slack_catcher import SlackCatcher

    spool = pg_root / "spool-full"
    spool.mkdir()
    require_tmpfs(spool, "size=40m")  # two 16 MiB segments fit, the third does not
    try:
        os.chown(spool, *_postgres_ids())
        wal_server.psql("ALTER SYSTEM SET archive_command = "
                        f"'{archive_command(spool)}'; SELECT pg_reload_conf();")
        with SlackCatcher("ok") as slack:
            monkeypatch.setenv(HOOK_ENV, slack.webhook_url("T0AXE/B0AXE/walsecret"))
            config, site = write_site(tmp_path, wal_server, spool, extra={"notify": {
                "slack": {"webhook": {"env": HOOK_ENV}, "timeout_s": 5, "retries": 1,
                          "backoff_s": 0}}})
            assert run_axe(config, "init").returncode == 0
            before = int(archiver(wal_server)["failed"])
            made = switch(wal_server, 3)
            wait_failed(wal_server, made[2], before)
            # PostgreSQL keeps the segment and retries; nothing half-written is in the spool.
            assert (wal_server.data / "pg_wal" / made[2]).exists()
            assert sorted(p.name for p in spool.iterdir()) == made[:2]
            time.sleep(2)
            assert int(archiver(wal_server)["failed"]) > before + 1  # it keeps retrying

            defs = build_definitions(site)
            instance = dg.DagsterInstance.get()
            # The push moves what fits into tier A; the archiver was failing when it looked.
            failed = defs.resolve_job_def(wal_job("axe")).execute_in_process(
                instance=instance, raise_on_error=False)
            evaluations = {e.check_name: e for e in failed.get_asset_check_evaluations()}
            assert not evaluations["archiving"].passed
            assert "archive_command is failing" in evaluations["archiving"].description
            assert failed.asset_materializations_for_node(
                f"{wal_job('axe')}_spools") == []
            tick(defs, ALERT_SENSOR, instance, None)
            posted = [json.dumps(r.json) for r in slack.requests]
            assert len(posted) == 1 and "archive_command is failing" in posted[0]
            assert str(wal_key("axe", "ledger-postgres").to_user_string()) in posted[0]

            # Space is free again: the retry arrives, and the next push is current.
            switch(wal_server, 1)
            wait_archived(wal_server, made[2])
            done = defs.resolve_job_def(wal_job("axe")).execute_in_process(
                instance=instance, raise_on_error=False)
            assert all(e.passed for e in done.get_asset_check_evaluations())
            assert len(done.asset_materializations_for_node(f"{wal_job('axe')}_spools")) == 1
    finally:
        wal_server.psql("ALTER SYSTEM SET archive_command = '/bin/false'; "
                        "SELECT pg_reload_conf();")
        umount_all(spool)


def _postgres_ids() -> tuple[int, int]:
    import pwd

    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def wait_failed(cluster: LocalCluster, name: str, before: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = archiver(cluster)
        if int(state["failed"]) > before and state["last_failed"] == name:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not fail to archive: {archiver(cluster)}")


def _now(cluster: LocalCluster) -> str:
    return cluster.psql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"');")[0][0]


def test_restore_as_of_a_moment_between_two_commits_brings_back_exactly_the_rows_before_it(
        wal_server: LocalCluster, pg_root: Path, tmp_path: Path):
    spool = own_spool(wal_server, pg_root / "spool-pitr")
    config, _ = write_site(tmp_path, wal_server, spool, physical=True)
    wal_server.psql("DROP TABLE IF EXISTS entries; CREATE TABLE entries (id int PRIMARY KEY, "
                    "note text); INSERT INTO entries VALUES (1, 'before the base backup');",
                    dbname="ledger")
    assert run_axe(config, "init").returncode == 0
    backup = run_axe(config, "backup", "--local", "--skip-restore-check")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    wal_server.psql("INSERT INTO entries VALUES (2, 'after'), (3, 'after');", dbname="ledger")
    time.sleep(1.2)
    moment = _now(wal_server)  # between the last good commit and the bad one
    time.sleep(1.2)
    wal_server.psql("DELETE FROM entries;", dbname="ledger")  # the bad migration
    wal_server.psql("INSERT INTO entries VALUES (9, 'after the delete');", dbname="ledger")
    time.sleep(1.2)
    idle_since = _now(wal_server)  # no commit after this one in the WAL pushed below
    time.sleep(1.2)
    made = switch(wal_server, 1, write=False)
    wait_archived(wal_server, made[-1])
    assert run_axe(config, "wal", "push").returncode == 0

    plan = run_axe(config, "restore", "--customer", "axe", "--target", "ledger", "--as-of",
                   moment, "--pitr", "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    print(plan.stdout)
    assert "base backup " in plan.stdout and "replay of up to" in plan.stdout
    assert wal_server.psql("SELECT count(*) FROM entries;", dbname="ledger") == [["1"]]

    done = run_axe(config, "restore", "--customer", "axe", "--target", "ledger", "--as-of",
                   moment, "--pitr", "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    assert wal_server.psql("SELECT id FROM entries ORDER BY id;", dbname="ledger") == [
        ["1"], ["2"], ["3"]]
    assert "undo with: " in done.stdout
    kept = wal_server.psql("SELECT datname FROM pg_database WHERE datname LIKE "
                           "'ledger_before_restore_%';")
    assert len(kept) == 1
    assert wal_server.psql("SELECT id FROM entries;", dbname=kept[0][0]) == [["9"]]

    # A moment after the last commit: PostgreSQL finds no commit past it and stops short of
    # the target; the whole WAL (all of it before the moment) is replayed instead.
    again = run_axe(config, "restore", "--customer", "axe", "--target", "ledger", "--as-of",
                    idle_since, "--pitr", "--force")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no commit after the target: all of the WAL replayed" in again.stdout
    assert wal_server.psql("SELECT id FROM entries;", dbname="ledger") == [["9"]]


def test_retention_forgets_the_wal_only_an_older_base_backup_needed(
        wal_server: LocalCluster, pg_root: Path, tmp_path: Path):
    spool = own_spool(wal_server, pg_root / "spool-retention")
    config, site = write_site(tmp_path, wal_server, spool, physical=True,
                              local={"retention": {"keep_last": 1}})
    assert run_axe(config, "init").returncode == 0
    assert run_axe(config, "backup", "--local", "--skip-restore-check").returncode == 0
    old = switch(wal_server, 2)
    wait_archived(wal_server, old[-1])
    assert run_axe(config, "wal", "push").returncode == 0  # WAL only the first backup needs
    assert run_axe(config, "backup", "--local", "--skip-restore-check").returncode == 0
    new = switch(wal_server, 2)
    wait_archived(wal_server, new[-1])
    assert run_axe(config, "wal", "push").returncode == 0

    done = run_axe(config, "prune", "--customer", "axe", "--tier", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wal/ledger-postgres: keep 1 WAL batch(es), forget 1" in done.stdout
    left = stored_names(site, "")
    assert set(new) <= set(left) and not set(old) & set(left)
    # What is left still restores: the sequence from the kept base backup on is whole.
    check = run_axe(config, "wal", "push")
    assert check.returncode == 0 and "sequence whole from" in check.stdout
