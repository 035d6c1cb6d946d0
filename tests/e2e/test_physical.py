"""Physical base backups (issue 13, part 1) against a real PostgreSQL server that archives
its WAL (archive_mode on), the real pg_basebackup and restic: stored, restored into a
staging copy that holds the rows and does not archive, and a killed pg_basebackup leaves no
snapshot."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.backup import Item, backup_item, local_restic, run_tier_a
from axe_pipelines.demo import create_sample_databases
from axe_pipelines.instance.owner import run_dir
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.postgres.cluster import LocalCluster
from axe_pipelines.postgres.dump import count_rows
from axe_pipelines.postgres.physical import (
    copy_connection,
    start_staging_cluster,
    unpack_base_backup,
)
from axe_pipelines.progress import NullReporter
from tests.conftest import PG_PASSWORD, server_entry

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
        copy.stop()
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
