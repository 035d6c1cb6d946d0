"""Physical base backups (issue 13, part 1) against a real PostgreSQL server that archives
its WAL (archive_mode on), the real pg_basebackup and restic: stored, restored into a
staging copy that holds the rows and does not archive, and a killed pg_basebackup leaves no
snapshot."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from axe_pipelines.backup import Item, backup_item, local_restic, run_tier_a
from axe_pipelines.config import load_config
from axe_pipelines.demo import create_sample_databases
from axe_pipelines.instance.owner import run_dir
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.postgres.cluster import LocalCluster
from axe_pipelines.postgres.dump import count_rows
from axe_pipelines.postgres.physical import (
    copy_connection,
    start_staging_cluster,
    stop_staging_cluster,
    unpack_base_backup,
)
from axe_pipelines.progress import NullReporter
from tests.conftest import PG_PASSWORD, server_entry
from tests.e2e.drill_support import work_dir  # noqa: F401 - the fixture

KST = ZoneInfo("Asia/Seoul")
AT = datetime(2026, 5, 20, 3, 0, tzinfo=KST)
PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="module")
def archiving(pg_root: Path):
    """A server of its own that archives every WAL segment into a spool (as Part 2's live
    servers will): a restored copy that archived would put files there."""
    spool = pg_root / "physical-spool"
    spool.mkdir()
    os.chmod(spool, 0o777)
    cluster = LocalCluster(pg_root / "physical", password=PG_PASSWORD).start()
    # In postgresql.auto.conf, as an operator's ALTER SYSTEM puts it: the base backup
    # carries it, so a restored copy would archive into the same spool unless axe stops it.
    cluster.psql(f"ALTER SYSTEM SET archive_mode = on; "
                 f"ALTER SYSTEM SET archive_command = 'cp %p {spool}/%f';")
    cluster.stop()
    cluster.start()
    assert cluster.psql("SHOW archive_mode;") == [["on"]]
    create_sample_databases(cluster, ["frame", "hive"], rows=3000)
    yield cluster, spool
    cluster.stop()


def _config(make_config, cluster: LocalCluster, **server_extra):
    _, config = make_config(
        servers={"frame-postgres": server_entry(cluster, physical=True, **server_extra)},
        databases={"frame": {"server": "frame-postgres"}, "hive": {"server": "frame-postgres"}},
        folders={})
    return config.customer("axe")


def test_base_backup_is_stored_restored_and_never_archives(make_config, archiving, pg_root,
                                                           restic_bin):
    cluster, spool = archiving
    axe = _config(make_config, cluster)
    restic = local_restic("axe", axe)
    restic.init()
    result = run_tier_a("axe", axe, at=AT, run_id="run-p1")
    assert result.ok, [r.error for r in result.failed]
    assert [r.item.label for r in result.results] == [
        "roles/frame-postgres", "db/frame", "db/hive", "physical/frame-postgres"]
    (snap,) = [s for s in result.snapshots if s.tag("kind") == "physical"]
    assert {"axe-pipelines", "customer=axe", "kind=physical", "server=frame-postgres",
            "run=run-p1"} <= set(snap.tags) and snap.time == AT
    assert list(snap.paths) == ["/frame-postgres.base.tar"]

    datadir = unpack_base_backup(restic, snap.id, pg_root / "restored-p1")
    assert datadir.stat().st_mode & 0o777 == 0o700
    assert (datadir / "backup_manifest").is_file() and (datadir / "pg_wal").is_dir()
    copy = start_staging_cluster(datadir)
    try:
        live = Connection("frame-postgres", axe.servers["frame-postgres"], "frame")
        restored = copy_connection(copy, live, "frame")
        assert restored.psql("SHOW archive_mode;") == [["off"]]
        assert restored.psql("SHOW listen_addresses;") == [["127.0.0.1"]]
        for db in ("frame", "hive"):
            assert count_rows(copy_connection(copy, live, db)) == count_rows(live.with_db(db))
        # The copy switches WAL segments; with archiving on it would copy each into the
        # live server's spool within a second.
        restored.psql("CREATE TABLE scratch AS SELECT g FROM generate_series(1, 100000) g; "
                      "SELECT pg_switch_wal();")
        time.sleep(1.5)
        assert restored.psql("SELECT archived_count, failed_count FROM pg_stat_archiver;") \
            == [["0", "0"]]
        assert "archive_mode = 'off'" in (datadir / "postgresql.auto.conf").read_text()
    finally:
        stop_staging_cluster(copy)
    assert not (datadir / "postmaster.pid").exists()
    # A second unpack into the same (now full) folder is refused, nothing written there.
    with pytest.raises(PostgresError, match="not an empty folder"):
        unpack_base_backup(restic, snap.id, datadir)


def test_killed_pg_basebackup_leaves_no_snapshot(make_config, archiving, tmp_path, restic_bin):
    """A real kill -9 of pg_basebackup mid-stream: restic sees the command fail and writes
    no snapshot; the item fails with one line."""
    cluster, _ = archiving
    shim = tmp_path / "bin"
    shim.mkdir()
    for tool in PG_BIN.iterdir():
        (shim / tool.name).symlink_to(tool)
    (shim / "pg_basebackup").unlink()
    # The same binary, rate-limited so the stream lasts long enough to be killed mid-way
    # (exec: the process killed is pg_basebackup itself).
    (shim / "pg_basebackup").write_text(
        f'#!/bin/sh\nexec {PG_BIN}/pg_basebackup --max-rate=2M "$@"\n')
    (shim / "pg_basebackup").chmod(0o755)
    axe = _config(make_config, cluster, bin_dir=str(shim))
    restic = local_restic("axe", axe)
    restic.init()
    item = Item("physical", "frame-postgres", "frame-postgres")
    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(r=backup_item(
        restic, "axe", axe, item, at=AT, run_id="run-kill", reporter=NullReporter())))
    run_dir("run-kill")
    worker.start()
    pid = _wait_for_process("pg_basebackup", str(cluster.port))
    time.sleep(1.0)  # mid-stream: restic has read part of the tar
    os.kill(pid, signal.SIGKILL)
    worker.join(120)
    result = out["r"]
    assert not result.ok and result.snapshot_id is None
    assert "pg_basebackup" in result.error or "command failed" in result.error, result.error
    assert restic.snapshots(tags=["kind=physical"]) == []
    assert restic.locks() == []


def _wait_for_process(name: str, marker: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(name.encode()) and marker.encode() in argv:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"{name} did not start")


def test_cli_backup_then_restore_physical_starts_a_staging_copy(make_config, archiving,
                                                                 pg_root, tmp_path,
                                                                 restic_bin):
    """`axe backup --local` materializes the base backup (and its base_backup_current check)
    in a Dagster run; `axe restore --physical` refuses a full folder and one inside the live
    data directory, dry-runs, then starts the copy and says how to reach and stop it."""
    import re
    import subprocess
    import sys

    cluster, _ = archiving
    path, site = make_config(
        servers={"frame-postgres": server_entry(cluster, physical=True)},
        databases={"frame": {"server": "frame-postgres"}}, folders={})
    env = dict(os.environ, AXE_CONFIG=str(path), DAGSTER_HOME=str(tmp_path / "home"))

    def axe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "axe_pipelines.cli", *args], env=env,
                              capture_output=True, text=True, timeout=600)

    assert axe("init").returncode == 0
    backup = axe("backup", "--local", "--plain")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert "physical/frame-postgres" in backup.stdout
    assert ("check axe/physical/frame-postgres-physical:base_backup_current: ok"
            in backup.stdout), backup.stdout

    base = ["restore", "--customer", "axe", "--target", "frame-postgres", "--physical"]
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    refused = axe(*base, "--dest", str(full))
    assert refused.returncode == 1 and "is not an empty folder" in refused.stderr
    inside = axe(*base, "--dest", str(cluster.data / "restore-here"))
    assert inside.returncode == 1 and "inside the PostgreSQL data directory" in inside.stderr
    assert not (cluster.data / "restore-here").exists()
    dest = pg_root / "restored-cli"
    dry = axe(*base, "--dest", str(dest), "--dry-run")
    assert dry.returncode == 0 and "nothing was changed" in dry.stdout and not dest.exists()

    started = time.monotonic()
    out = axe(*base, "--dest", str(dest))
    assert out.returncode == 0, out.stdout + out.stderr
    restore_s = time.monotonic() - started
    port = int(re.search(r"running on 127\.0\.0\.1:(\d+)", out.stdout).group(1))
    stop = re.search(r"stop it: (.+); then remove", out.stdout).group(1)
    try:
        server = Connection("copy", axe_server(site, port), "frame")
        live = Connection("live", site.customer("axe").servers["frame-postgres"], "frame")
        assert count_rows(server) == count_rows(live)
        assert server.psql("SHOW archive_mode;") == [["off"]]
    finally:
        subprocess.run(stop.split(), check=True, timeout=120)
        sockets = Path(re.search(r"log (/\S+)/server\.log", out.stdout).group(1))
        shutil.rmtree(sockets)  # the copy's socket folder, which stays while it runs
    print(f"restore --physical: {restore_s:.1f} s")


def axe_server(site, port: int):
    return site.customer("axe").servers["frame-postgres"].model_copy(
        update={"port": port, "host": "127.0.0.1"})


def test_drill_compares_the_started_copy_with_the_same_nights_dump(make_config, archiving,
                                                                    work_dir, restic_bin):  # noqa: F811
    """The drill's physical proof passes on a set whose base backup holds the dump's rows;
    fails (one line) when rows were written between the dump and the base backup of one
    set, and when the copy does not start (a preload library the restore host lacks,
    carried in the backup's postgresql.auto.conf)."""
    from axe_pipelines.actions.drill import DrillOptions, run_drill

    cluster, _ = archiving
    path, site = make_config(
        servers={"frame-postgres": server_entry(cluster, physical=True)},
        databases={"frame": {"server": "frame-postgres"}}, folders={})
    data = yaml.safe_load(path.read_text())
    data["axe"]["drill"] = {"work_dir": str(work_dir)}  # the postgres user reaches it
    path.write_text(yaml.safe_dump(data))
    site = load_config(path)
    axe = site.customer("axe")
    restic = local_restic("axe", axe)
    restic.init()
    physical = Item("physical", "frame-postgres", "frame-postgres")

    def night(run_id: str, hour: int, between: str | None = None) -> None:
        at = AT.replace(hour=hour)
        dumps = run_tier_a("axe", axe, at=at, run_id=run_id,
                           items=[i for i in _plan(axe) if i.kind != "physical"])
        assert dumps.ok
        if between:
            cluster.psql(between, dbname="frame")
        res = backup_item(restic, "axe", axe, physical, at=at, run_id=run_id,
                          reporter=NullReporter())
        assert res.ok, res.error

    def drill_item():
        report = run_drill(site, "axe", DrillOptions(tier="local", as_of="latest"))
        (item,) = [i for i in report.items if i.kind == "physical"]
        return report, item

    night("run-d1", 1)
    report, item = drill_item()
    assert item.label == "physical/frame-postgres" and item.served is not None, \
        item.attempts[0].reason
    assert {c["check"] for c in item.served.checks} == {"start", "rows-frame"}
    assert report.ok

    night("run-d2", 2, between="INSERT INTO journal_line(entity_id, posted_on, amount) "
                               "SELECT 1, '2026-05-21', 1 FROM generate_series(1, 7);")
    report, item = drill_item()
    assert item.served is None and not report.ok
    reason = item.attempts[0].reason
    assert reason.startswith("rows-frame:") and "journal_line" in reason and "\n" not in reason

    cluster.psql("ALTER SYSTEM SET shared_preload_libraries = 'axe_not_installed';")
    try:
        night("run-d3", 3)
    finally:
        cluster.psql("ALTER SYSTEM RESET shared_preload_libraries;")
    report, item = drill_item()
    assert item.served is None
    reason = item.attempts[0].reason
    assert reason.startswith("start: the restored copy") and "axe_not_installed" in reason
    assert "\n" not in reason
    assert not list(work_dir.iterdir())  # every unpacked copy removed


def _plan(customer):
    from axe_pipelines.backup import plan_tier_a

    return plan_tier_a(customer)


def test_exec_prefixed_server_streams_the_base_backup_through_its_prefix(
        make_config, archiving, tmp_path, restic_bin):
    """A server reached with `exec:` (the runbook's `docker exec -i … frame-postgres`) runs
    pg_basebackup through that prefix, whose stdout restic reads: here the prefix is a shell
    that notes its use and runs the tool from its own PATH, as a container would."""
    cluster, _ = archiving
    marker = tmp_path / "prefix-used"
    prefix = ["sh", "-c", f'echo used >> {marker}; PATH={PG_BIN}:$PATH exec "$@"', "sh"]
    axe = _config(make_config, cluster, exec=prefix)
    restic = local_restic("axe", axe)
    restic.init()
    result = backup_item(restic, "axe", axe, Item("physical", "frame-postgres",
                                                  "frame-postgres"),
                         at=AT, run_id="run-exec", reporter=NullReporter())
    assert result.ok, result.error
    assert marker.read_text() == "used\n"
    assert result.bytes_read > 16 << 20  # the cluster and at least one WAL segment
    (snap,) = restic.snapshots(tags=["kind=physical"])
    assert list(snap.paths) == ["/frame-postgres.base.tar"]


def test_doctor_says_whether_a_base_backup_can_be_taken(make_config, archiving):
    """Asked as the backup asks: a replication connection as the configured user, and
    pg_basebackup at least as new as the server; a role without REPLICATION fails with the
    server's words."""
    from axe_pipelines.actions.doctor_physical import physical_findings

    cluster, _ = archiving
    axe = _config(make_config, cluster)
    (found,) = physical_findings("axe", axe)
    assert found.status == "ok" and "replication connection, pg_basebackup 15" in found.text
    cluster.psql("DROP ROLE IF EXISTS axe_norepl; "
                 f"CREATE ROLE axe_norepl LOGIN PASSWORD '{PG_PASSWORD}';")
    axe = _config(make_config, cluster, user="axe_norepl")
    (found,) = physical_findings("axe", axe)
    assert found.status == "FAIL" and "must be superuser or replication role" in found.text


def test_own_schedule_job_makes_a_set_of_its_own_the_nightly_job_leaves_out(
        make_config, archiving, dagster_home, restic_bin):
    """With physical_schedule the base backup's own job stores it (base_backup_current
    passes) in a set of its own; the nightly job backs up the dumps only and its coverage
    passes; status's newest set is the night's, with nothing missing."""
    import dagster as dg

    from axe_pipelines.actions.snapshots import describe_set
    from axe_pipelines.definitions import build_definitions
    from axe_pipelines.physical_item import newest_nightly
    from axe_pipelines.sets import list_sets

    cluster, _ = archiving
    axe = _config(make_config, cluster, physical_schedule="0 4 * * 0")
    restic = local_restic("axe", axe)
    restic.init()
    from axe_pipelines.config import Site

    defs = build_definitions(Site(customers={"axe": axe}))
    instance = dg.DagsterInstance.get()
    own = defs.resolve_job_def("axe_physical_frame_postgres").execute_in_process(
        instance=instance, raise_on_error=False)
    assert own.success
    evals = [e.asset_check_evaluation_data for e in own.all_events
             if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [(e.check_name, e.passed) for e in evals] == [("base_backup_current", True)]
    night = defs.resolve_job_def("axe_tier_a").execute_in_process(instance=instance,
                                                                 raise_on_error=False)
    assert night.success
    evals = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
             for e in night.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert evals["coverage"] is True and "base_backup_current" not in evals
    sets = list_sets(restic, "axe")
    assert [sorted(s.tag("kind") for s in x.snapshots if s.tag("kind") != "set-meta")
            for x in sets] == [["physical"], ["pgdump", "pgdump", "roles"]]
    assert describe_set(axe, newest_nightly(axe, sets)).missing == ()
