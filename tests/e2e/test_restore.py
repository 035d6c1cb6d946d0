"""`axe restore` end to end against real PostgreSQL clusters and the real restic binary: back up,
damage, restore as of a time (database, table, folder), compare row for row; dry-run changes
nothing; each fault of issue 4 gives one clear line and a non-zero exit."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines import cli
from axe_pipelines.actions.restore import RestoreOptions, run_restore
from axe_pipelines.actions.selection import RestoreError, resolve_target
from axe_pipelines.assets.metadata import row_count_table, row_counts_from
from axe_pipelines.backup import Item, local_restic, run_tier_a
from axe_pipelines.names import item_key
from axe_pipelines.postgres.client import PostgresError
from axe_pipelines.postgres.cluster import LocalCluster
from tests.conftest import PG_PASSWORD, REPO_PASSWORD

SEOUL = ZoneInfo("Asia/Seoul")
T1 = datetime(2026, 5, 19, 3, 0, tzinfo=SEOUL)
T2 = datetime(2026, 5, 20, 3, 0, 42, tzinfo=SEOUL)  # the 03:00 run that finished at 03:00:42

EXTRA_SQL = """
CREATE VIEW big_lines AS SELECT id, amount FROM journal_line WHERE amount > 500;
CREATE TABLE note (id serial PRIMARY KEY, jl bigint REFERENCES journal_line(id),
                   body text);
INSERT INTO note(jl, body) SELECT g * 7, 'note ' || g FROM generate_series(1, 50) g;
"""


def table_md5(cluster: LocalCluster, db: str, table: str) -> str:
    return cluster.psql(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) "
                        f"FROM {table} t;", dbname=db)[0][0]


def db_fingerprint(cluster: LocalCluster, db: str) -> dict[str, str]:
    """Every table's content checksum plus the server's database list."""
    tables = [r[0] for r in cluster.psql(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1;",
        dbname=db)]
    out = {t: cluster.psql(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), "
                           f"'')) FROM {t} t;", dbname=db)[0][0] for t in tables}
    out["__databases__"] = ",".join(r[0] for r in cluster.psql(
        "SELECT datname FROM pg_database ORDER BY 1;"))
    return out


@pytest.fixture
def scratch_config(make_config, scratch_db, server_a):
    """customers.yaml with one database (the damageable scratch db) named `ledger`, with a
    configured SQL check, and its repository initialised."""
    server_a.psql(EXTRA_SQL, dbname=scratch_db)
    path, config = make_config(databases={"ledger": {
        "server": "frame-postgres", "dbname": scratch_db, "aliases": ["ledger-db"],
        "integrity": [{"name": "entities", "sql": "SELECT code FROM entity ORDER BY id",
                       "expect": [["axec"], ["axev"]]}]}}, folders={})
    local_restic("axe", config.customer("axe")).init()
    return path, config


def backup(config, at: datetime, run_id: str) -> None:
    result = run_tier_a("axe", config.customer("axe"), at=at, run_id=run_id)
    assert result.ok, [r.error for r in result.failed]


def axe(path: Path, *args: str) -> int:
    return cli.main(["--config", str(path), *args])


# --- database -------------------------------------------------------------------------------


def test_database_restore_as_of_picks_the_run_and_keeps_the_old_database(
        scratch_config, scratch_db, server_a, capsys):
    path, config = scratch_config
    original = table_md5(server_a, scratch_db, "journal_line")
    backup(config, T1, "run-1")
    server_a.psql("DELETE FROM note; DELETE FROM journal_line WHERE id % 3 = 0;",
                  dbname=scratch_db)
    second = table_md5(server_a, scratch_db, "journal_line")
    backup(config, T2, "run-2")
    # The incident: a migration drops a table and corrupts values.
    server_a.psql("DROP TABLE note; UPDATE journal_line SET amount = -1;", dbname=scratch_db)

    # 03:00 covers the whole minute: the run stamped 03:00:42 is chosen.
    assert axe(path, "restore", "--customer", "axe", "--tier", "local", "--as-of",
               "2026-05-20T03:00", "--target", "ledger-postgres") == 0
    out = capsys.readouterr().out
    assert table_md5(server_a, scratch_db, "journal_line") == second
    assert "row-counts" in out and "entities" in out and "FAILED" not in out
    kept = [r[0] for r in server_a.psql(
        f"SELECT datname FROM pg_database WHERE datname LIKE '{scratch_db}_before_restore_%';")]
    assert len(kept) == 1
    assert server_a.psql("SELECT min(amount) FROM journal_line;", dbname=kept[0])[0][0] == "-1.00"

    # A date alone means the end of that day: the 05-19 run, the original rows.
    assert axe(path, "restore", "--customer", "axe", "--from", "local", "--as-of", "2026-05-19",
               "--target", "ledger") == 0
    out = capsys.readouterr().out
    assert table_md5(server_a, scratch_db, "journal_line") == original
    assert server_a.psql("SELECT count(*) FROM note;", dbname=scratch_db)[0][0] == "50"
    # The keys came back with the data.
    assert server_a.psql("SELECT count(*) FROM pg_constraint WHERE conrelid = "
                         "'journal_line'::regclass;", dbname=scratch_db)[0][0] == "2"

    for secret in (PG_PASSWORD, REPO_PASSWORD):  # passwords stay in environments
        assert secret not in out
    # The printed undo command puts the previous database back, even with a client
    # reconnected to the restored one (a rename refuses while sessions are open).
    undo = next(line for line in out.splitlines() if line.startswith("undo with: "))
    argv = __import__("shlex").split(undo.removeprefix("undo with: "))
    assert argv[:3] == ["axe", "--config", str(path)] and "--undo" in argv
    client, _ = _connected_client(server_a, scratch_db, "frame-mcp-green")
    try:
        assert cli.main(argv[1:]) == 0
    finally:
        client.kill()
        client.wait()
    assert table_md5(server_a, scratch_db, "journal_line") == second
    assert axe(path, *argv[3:-1], "20000101000000") == 1  # no such kept copy: one line
    _one_line_error(capsys, "no ", "_before_restore_20000101000000", "nothing was changed")
    for name, in server_a.psql(f"SELECT datname FROM pg_database WHERE datname LIKE "
                               f"'{scratch_db}\\_%';"):
        server_a.psql(f'DROP DATABASE "{name}" WITH (FORCE);')


def test_dry_run_changes_nothing(scratch_config, scratch_db, server_a, capsys):
    from axe_pipelines.progress import human_bytes

    path, config = scratch_config
    backup(config, T1, "run-1")
    server_a.psql("DELETE FROM journal_line WHERE id > 1500;", dbname=scratch_db)
    # Vacuumed now (every table: inserts trigger autovacuum too), so autovacuum does not
    # change the database's size between the dry run's reading and this test's (seen once
    # in a clean-clone run).
    server_a.psql("VACUUM;", dbname=scratch_db)
    before = db_fingerprint(server_a, scratch_db)
    for target in (["--target", "ledger"], ["--target", "ledger", "--table", "journal_line"],
                   []):
        assert axe(path, "restore", "--customer", "axe", "--from", "local", "--as-of",
                   "2026-05-20", "--dry-run", *target) == 0
        out = capsys.readouterr().out
        assert "dry run: nothing will be changed" in out
        assert db_fingerprint(server_a, scratch_db) == before
        if "--table" in target:
            assert "would replace table public.journal_line of " in out
            assert "(now 1500 rows)" in out
    # What it printed: the snapshot (id, tier, logical time, age, size) and what it would
    # replace (the database's current size and row counts; the table's current rows).
    dump = next(s for s in local_restic("axe", config.customer("axe")).snapshots()
                if s.tag("kind") == "pgdump")
    line = next(ln for ln in out.splitlines() if "would restore database ledger" in ln)
    assert f"snapshot {dump.short_id} (tier local, 2026-05-19 03:00:00 KST, " in line
    assert line.endswith(f"{human_bytes(int(dump.summary['total_bytes_processed']))})")
    assert "from tier local of axe (age " in out
    size = server_a.psql(f"SELECT pg_size_pretty(pg_database_size('{scratch_db}'));")[0][0]
    assert f"would replace database {scratch_db} on frame-postgres (127.0.0.1:" in out
    assert f": {size}, 3 table(s): " in out
    assert "public.entity 2" in out and "public.journal_line 1500" in out
    assert "public.note 50" in out


def test_connections_are_refused_unless_forced(scratch_config, scratch_db, server_a, capsys):
    path, config = scratch_config
    backup(config, T1, "run-1")
    client, _ = _connected_client(server_a, scratch_db, "frame-mcp-blue")
    try:
        before = db_fingerprint(server_a, scratch_db)
        assert axe(path, "restore", "--customer", "axe", "--target", "ledger") == 1
        err = capsys.readouterr().err
        assert "frame-mcp-blue" in err and "--force" in err and "nothing was changed" in err
        assert len(err.strip().splitlines()) == 1
        assert db_fingerprint(server_a, scratch_db) == before
        assert axe(path, "restore", "--customer", "axe", "--target", "ledger", "--force") == 0
    finally:
        client.kill()
        client.wait()
    assert server_a.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                         "'frame-mcp-blue';")[0][0] == "0"


def _connected_client(cluster: LocalCluster, db: str, app: str, sql: str = "SELECT 1;",
                      state: str | None = None) -> tuple[subprocess.Popen, str]:
    """A psql session on `db` named `app` that has run `sql` and stays open until killed;
    returns once the server shows it (in `state`, when given), with its backend pid."""
    client = subprocess.Popen(
        [str(cluster.bin_dir / "psql"), "-X", "-h", "127.0.0.1", "-p", str(cluster.port),
         "-U", "postgres", "-d", db], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        env=dict(os.environ, PGPASSWORD=PG_PASSWORD, PGAPPNAME=app))
    assert client.stdin is not None
    client.stdin.write(sql.encode() + b"\n")
    client.stdin.flush()
    where = f"application_name = '{app}' AND datname = '{db}'" + (
        f" AND state = '{state}'" if state else "")
    for _ in range(300):
        rows = cluster.psql(f"SELECT pid FROM pg_stat_activity WHERE {where};")
        if rows:
            return client, rows[0][0]
        cluster.psql("SELECT pg_sleep(0.1);")
    client.kill()
    raise AssertionError(f"{app} never connected")


def _kill_pg_restore_into(fragment: str) -> int:
    killed = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"pg_restore") and any(fragment.encode() in a for a in cmd):
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    return killed


def test_pg_restore_killed_half_way_leaves_the_original_intact(scratch_config, scratch_db,
                                                               server_a, capsys):
    path, config = scratch_config
    # ~35 MB of rows, so pg_restore is still copying them when the kill lands (the sample
    # tables alone restore in milliseconds: a kill could arrive after the end).
    server_a.psql("CREATE TABLE bulk AS SELECT g AS id, repeat('x', 100) AS pad "
                  "FROM generate_series(1, 300000) g;", dbname=scratch_db)
    backup(config, T1, "run-1")
    server_a.psql("DELETE FROM journal_line WHERE id % 2 = 0 AND id NOT IN (SELECT jl FROM note);",
                  dbname=scratch_db)
    before = db_fingerprint(server_a, scratch_db)
    killed = []

    def on_line(line: str) -> None:
        # pg_restore -v says this as it starts copying bulk's rows: kill it there.
        if 'processing data for table "public.bulk"' in line and not killed:
            killed.append(_kill_pg_restore_into(f"{scratch_db}_restoring_"))

    # A PostgreSQL step failed: PostgresError (RestoreError is for targets, tiers and sets).
    with pytest.raises(PostgresError) as err:
        run_restore(config, RestoreOptions(customer="axe", target="ledger", jobs=1),
                    say=lambda _: None, on_line=on_line)
    assert killed and killed[0] >= 1
    message = str(err.value)
    assert "killed" in message and f"the original database {scratch_db} is untouched" in message
    assert "dropped" in message
    assert db_fingerprint(server_a, scratch_db) == before  # incl. no leftover databases


# --- table ----------------------------------------------------------------------------------


def test_table_restore_replaces_deleted_and_corrupted_rows(scratch_config, scratch_db,
                                                           server_a, capsys):
    path, config = scratch_config
    original = table_md5(server_a, scratch_db, "journal_line")
    notes = table_md5(server_a, scratch_db, "note")
    seq_at_backup = server_a.psql("SELECT last_value FROM journal_line_id_seq;",
                                  dbname=scratch_db)[0][0]
    backup(config, T1, "run-1")
    server_a.psql("DELETE FROM journal_line WHERE id > 1000 AND id NOT IN (SELECT jl FROM note);"
                  "UPDATE journal_line SET memo = 'corrupt', amount = 0 WHERE id < 100;"
                  "INSERT INTO journal_line(entity_id, posted_on, amount) "
                  "VALUES (1, '2026-06-01', 1);", dbname=scratch_db)
    assert axe(path, "restore", "--customer", "axe", "--tier", "local", "--table",
               "journal_line", "--target", "ledger", "--as-of", "2026-05-19") == 0
    out = capsys.readouterr().out
    assert table_md5(server_a, scratch_db, "journal_line") == original
    assert table_md5(server_a, scratch_db, "note") == notes  # other tables untouched
    assert "public.journal_line" in out and "row-counts" in out
    # Dependent objects are still valid: the view works, the FK from note is still there.
    assert server_a.psql("SELECT count(*) > 0 FROM big_lines;", dbname=scratch_db)[0][0] == "t"
    assert server_a.psql("SELECT count(*) FROM pg_constraint WHERE conname = 'note_jl_fkey';",
                         dbname=scratch_db)[0][0] == "1"
    # The sequence was set back with the rows (to its value in the snapshot, not the one it
    # reached by the insert after the backup); the next insert does not collide.
    assert server_a.psql("SELECT last_value FROM journal_line_id_seq;",
                         dbname=scratch_db)[0][0] == seq_at_backup
    server_a.psql("INSERT INTO journal_line(entity_id, posted_on, amount) "
                  "VALUES (2, '2026-06-02', 2);", dbname=scratch_db)


def test_dropped_table_comes_back_with_keys_indexes_and_foreign_keys(scratch_config, scratch_db,
                                                                     server_a):
    path, config = scratch_config
    original = table_md5(server_a, scratch_db, "journal_line")
    backup(config, T1, "run-1")
    shape = ("SELECT string_agg(indexdef, ';' ORDER BY indexdef) FROM pg_indexes "
             "WHERE tablename = 'journal_line';")
    indexes = server_a.psql(shape, dbname=scratch_db)[0][0]
    server_a.psql("DROP TABLE journal_line CASCADE;", dbname=scratch_db)  # view + note FK go
    assert axe(path, "restore", "--customer", "axe", "--target", "ledger", "--table",
               "public.journal_line") == 0
    assert table_md5(server_a, scratch_db, "journal_line") == original
    assert server_a.psql(shape, dbname=scratch_db)[0][0] == indexes
    cons = server_a.psql("SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint "
                         "WHERE conrelid IN ('journal_line'::regclass, 'note'::regclass);",
                         dbname=scratch_db)[0][0]
    assert cons == "journal_line_entity_id_fkey,journal_line_pkey,note_jl_fkey,note_pkey"
    assert server_a.psql("SELECT count(*) > 0 FROM big_lines;", dbname=scratch_db)[0][0] == "t"
    with pytest.raises(PostgresError, match="duplicate key"):
        server_a.psql("INSERT INTO journal_line(id, entity_id, posted_on, amount) "
                      "VALUES (1, 1, '2026-06-01', 1);", dbname=scratch_db)


def test_table_restore_that_would_break_a_foreign_key_leaves_the_table_unchanged(
        scratch_config, scratch_db, server_a, capsys):
    path, config = scratch_config
    backup(config, T1, "run-1")
    # After the backup a new entity gets lines; restoring `entity` would orphan them.
    server_a.psql("INSERT INTO entity(code) VALUES ('axez');"
                  "INSERT INTO journal_line(entity_id, posted_on, amount) "
                  "SELECT id, '2026-06-01', 5 FROM entity WHERE code = 'axez';",
                  dbname=scratch_db)
    before = db_fingerprint(server_a, scratch_db)
    assert axe(path, "restore", "--customer", "axe", "--target", "ledger", "--table",
               "entity") == 1
    err = capsys.readouterr().err
    assert "journal_line_entity_id_fkey" in err and "unchanged" in err
    assert len(err.strip().splitlines()) == 1
    assert db_fingerprint(server_a, scratch_db) == before


# --- folders --------------------------------------------------------------------------------


def test_no_target_restores_the_whole_set_and_folders_go_beside(make_config, scratch_db,
                                                                 server_a, tmp_path, capsys):
    """Scenario 2 (a lost machine): no --target restores every member of the set: the
    server's roles first, then each database, then each folder (beside the original)."""
    path, config = make_config(databases={"ledger": {"server": "frame-postgres",
                                                     "dbname": scratch_db}})
    local_restic("axe", config.customer("axe")).init()
    original = table_md5(server_a, scratch_db, "journal_line")
    backup(config, T1, "run-1")
    server_a.psql("TRUNCATE journal_line;", dbname=scratch_db)
    files = tmp_path / "files"
    (files / "uploads" / "a.txt").write_text("overwritten by mistake\n")
    (files / "uploads" / "new.txt").write_text("made after the backup\n")

    assert axe(path, "restore", "--customer", "axe", "--from", "local", "--as-of",
               "2026-05-19") == 0
    out = capsys.readouterr().out
    assert "existing role(s) left as they are (passwords unchanged)" in out
    assert table_md5(server_a, scratch_db, "journal_line") == original
    beside = [p for p in tmp_path.iterdir() if p.name.startswith("files.restored-")]
    assert len(beside) == 1
    assert (beside[0] / "uploads" / "a.txt").read_text() == "contract\n" * 100
    assert not (beside[0] / "junk.tmp").exists()  # excluded at backup time
    assert (files / "uploads" / "a.txt").read_text() == "overwritten by mistake\n"

    assert axe(path, "restore", "--customer", "axe", "--target", "files", "--in-place") == 0
    assert (files / "uploads" / "a.txt").read_text() == "contract\n" * 100
    assert (files / "uploads" / "new.txt").exists()  # in place never deletes
    for name, in server_a.psql(f"SELECT datname FROM pg_database WHERE datname LIKE "
                               f"'{scratch_db}\\_%';"):
        server_a.psql(f'DROP DATABASE "{name}" WITH (FORCE);')


# --- faults: one clear line, non-zero exit --------------------------------------------------


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def test_faults_before_anything_changes(scratch_config, scratch_db, server_a, capsys,
                                        monkeypatch, tmp_path):
    path, config = scratch_config
    backup(config, T1, "run-1")
    before = db_fingerprint(server_a, scratch_db)
    base = ["restore", "--customer", "axe", "--target", "ledger"]

    assert axe(path, *base, "--as-of", "2026-05-18") == 1
    _one_line_error(capsys, "no backup set", "2026-05-19 03:00", "nothing was changed")

    assert axe(path, "restore", "--customer", "axe", "--target", "ledgr") == 1
    _one_line_error(capsys, "unknown target 'ledgr'", "ledger, ledger-db, ledger-postgres")

    monkeypatch.setenv("AXE_TEST_REPO_PASSWORD", "not-" + REPO_PASSWORD)
    assert axe(path, *base) == 1
    _one_line_error(capsys, "wrong password", "nothing was changed")
    monkeypatch.setenv("AXE_TEST_REPO_PASSWORD", REPO_PASSWORD)

    # The ring peer does not answer (nothing listens on its ssh port).
    import yaml

    from axe_pipelines.postgres.cluster import free_port

    data = yaml.safe_load(path.read_text())
    data["realchoice"]["ring_backup"].update(ssh_fqdn="127.0.0.1", ssh_ip=None,
                                             ssh_port=free_port())
    path.write_text(yaml.safe_dump(data))
    assert axe(path, *base, "--tier", "ring", "--from", "realchoice", "--as-of",
               "2026-05-20") == 1
    _one_line_error(capsys, "tier ring", "cannot reach realchoice", "nothing was changed")

    repo = tmp_path / "repo"
    repo.rename(tmp_path / "repo-away")  # the disk holding the repository is gone
    assert axe(path, *base) == 1
    _one_line_error(capsys, "does not exist", "nothing was changed")
    (tmp_path / "repo-away").rename(repo)

    assert db_fingerprint(server_a, scratch_db) == before


def test_restore_from_a_cold_volume_and_not_mounted(scratch_config, scratch_db, server_a,
                                                    tmp_path, monkeypatch, capsys):
    """Scenario 2 from the cold SSD: the set synced onto a volume (a folder standing in for
    /Volumes/axe-cold-1) restores through tiers.open_tier; without a volume, one line."""
    import yaml

    from axe_pipelines.cold import cold_settings, sync_volume, volume_at
    from axe_pipelines.config import load_config

    path, config = scratch_config
    monkeypatch.setenv("AXE_TEST_COLD_PASSWORD", "cold-" + REPO_PASSWORD[::-1])
    data = yaml.safe_load(path.read_text())
    data["axe"]["tiers"]["cold"] = {"password": {"env": "AXE_TEST_COLD_PASSWORD"},
                                    "mount_glob": str(tmp_path / "Volumes" / "axe-cold-*"),
                                    "accept_plain_folders": True, "timeout_s": 120}
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    original = table_md5(server_a, scratch_db, "journal_line")
    backup(config, T1, "run-1")

    assert axe(path, "restore", "--customer", "axe", "--tier", "cold", "--as-of",
               "2026-05-20", "--target", "ledger") == 1
    _one_line_error(capsys, "tier cold", "no cold volume", "nothing was changed")

    volume = tmp_path / "Volumes" / "axe-cold-1"
    volume.mkdir(parents=True)
    cold = cold_settings("axe", config.customer("axe"))
    sync_volume(config, "axe", volume_at(cold, volume))
    server_a.psql("UPDATE journal_line SET amount = 0;", dbname=scratch_db)
    assert axe(path, "restore", "--customer", "axe", "--tier", "cold", "--as-of",
               "2026-05-20", "--target", "ledger") == 0
    assert "from tier cold of axe" in capsys.readouterr().out
    assert table_md5(server_a, scratch_db, "journal_line") == original


def test_pg_restore_older_than_the_dump_format(scratch_config, scratch_db, server_a, capsys,
                                               tmp_path):
    """A real archive whose header claims format 1.99 (a pg_dump from the future): this
    pg_restore refuses it exactly as an old one refuses a new dump."""
    path, config = scratch_config
    dump = tmp_path / "future.pgdump"
    with open(dump, "wb") as fh:
        subprocess.run([str(server_a.bin_dir / "pg_dump"), "-Fc", "-Z0", "-h", "127.0.0.1",
                        "-p", str(server_a.port), "-U", "postgres", scratch_db], stdout=fh,
                       check=True, env=dict(os.environ, PGPASSWORD=PG_PASSWORD))
    data = bytearray(dump.read_bytes())
    assert data[:5] == b"PGDMP"
    data[6] = 99  # minor archive version: 1.14 -> 1.99
    dump.write_bytes(bytes(data))
    restic = local_restic("axe", config.customer("axe"))
    item = Item("pgdump", "ledger", "frame-postgres")
    restic.backup_command(["cat", str(dump)], filename="ledger.pgdump",
                          tags=item.tags("axe", "run-future"), at=T1)
    before = db_fingerprint(server_a, scratch_db)
    for extra in ([], ["--table", "journal_line"]):
        assert axe(path, "restore", "--customer", "axe", "--target", "ledger", *extra) == 1
        _one_line_error(capsys, "unsupported version (1.99", "pg_restore", "newer",
                        "nothing was changed")
    assert db_fingerprint(server_a, scratch_db) == before


def test_resolve_target_accepts_runbook_names(make_config):
    _, config = make_config(folders={})
    customer = config.customer("axe")
    # frame-postgres is also the name of a server holding frame and hive: all of them (issue
    # 10); a server with one database is that database (tests/unit/test_restore_targets.py).
    assert resolve_target("axe", customer, "frame-postgres").kind == "server"
    assert resolve_target("axe", customer, "hive-postgres").name == "hive"
    assert resolve_target("axe", customer, "index").name == "index"
    with pytest.raises(RestoreError, match="valid: blueprint, blueprint-postgres, frame"):
        resolve_target("axe", customer, "mysrt-postgres")


def test_counts_from_the_dump_snapshot_decide_and_post_restore_commands_run(
        make_config, scratch_db, server_a, dagster_home, tmp_path, capsys):
    import sys

    import dagster as dg

    marker = tmp_path / "restarted"
    restart = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('frame-mcp-blue')"]
    path, config = make_config(databases={"ledger": {
        "server": "frame-postgres", "dbname": scratch_db, "post_restore": [restart]}},
        folders={})
    local_restic("axe", config.customer("axe")).init()
    assert axe(path, "backup", "--local", "--plain") == 0  # tier A through Dagster
    capsys.readouterr()

    assert axe(path, "restore", "--customer", "axe", "--target", "ledger") == 0
    out = capsys.readouterr().out
    assert "as counted in the dump's snapshot" in out  # the tier-A metadata was used
    assert marker.read_text() == "frame-mcp-blue" and "post-restore:" in out

    # History saying the dump's snapshot held other counts: the copy is not swapped in.
    instance = dg.DagsterInstance.get()
    key = item_key("axe", Item("pgdump", "ledger"))
    meta = instance.get_latest_materialization_event(key).asset_materialization.metadata
    counts = row_counts_from(meta["row_counts"])
    counts["public.journal_line"] += 1
    instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata={
        "snapshot_id": meta["snapshot_id"].value, "row_counts": row_count_table(counts)}))
    marker.unlink()
    before = db_fingerprint(server_a, scratch_db)
    assert axe(path, "restore", "--customer", "axe", "--target", "ledger") == 1
    _one_line_error(capsys, "public.journal_line: 2000 rows, 2001 counted in the dump's "
                    "snapshot", "not swapped in", "untouched")
    assert db_fingerprint(server_a, scratch_db) == before
    assert not marker.exists()


@pytest.fixture(autouse=True)
def _drop_kept_databases(server_a):
    """Restores keep the replaced database (`<db>_before_restore_<stamp>`); drop them after
    each test so the shared server does not collect them."""
    yield
    for name, in server_a.psql("SELECT datname FROM pg_database WHERE datname ~ "
                               "'_(before_restore|restoring|restored)_[0-9]{14}$';"):
        server_a.psql(f'DROP DATABASE "{name}" WITH (FORCE);')


# --- review findings: scenario 3 as written, whole-set failures, roles, database properties --


def test_table_without_target_finds_the_database_holding_it(make_config, scratch_db,
                                                            server_a, capsys):
    """Seed scenario 3 as typed: `--table journal_line` and no --target. The set's dumps say
    which database holds the table; when two do, the candidates are listed."""
    path, config = make_config(databases={
        "ledger": {"server": "frame-postgres", "dbname": scratch_db},
        "hive": {"server": "frame-postgres"}}, folders={})
    local_restic("axe", config.customer("axe")).init()
    original = table_md5(server_a, scratch_db, "journal_line")
    backup(config, T1, "run-1")
    server_a.psql("UPDATE journal_line SET amount = 0 WHERE id % 5 = 0;", dbname=scratch_db)

    assert axe(path, "restore", "--customer", "axe", "--tier", "local", "--table",
               "journal_line", "--as-of", "2026-05-19T03:00") == 0
    out = capsys.readouterr().out
    assert "table journal_line is in database ledger" in out
    assert table_md5(server_a, scratch_db, "journal_line") == original

    assert axe(path, "restore", "--customer", "axe", "--table", "no_such_table") == 1
    _one_line_error(capsys, "holds a table 'no_such_table'", "searched: ledger, hive",
                    "nothing was changed")
    # last-valid needs the check that marks the corruption: say so, with the checks.
    assert axe(path, "restore", "--customer", "axe", "--tier", "local", "--table",
               "journal_line", "--as-of", "last-valid") == 1
    _one_line_error(capsys, "--as-of last-valid needs --check NAME", "ledger: row-counts",
                    "find-last-valid")

    # Two databases with a journal_line: the operator has to choose.
    path, config = make_config(databases={
        "ledger": {"server": "frame-postgres", "dbname": scratch_db},
        "frame": {"server": "frame-postgres"}}, folders={})
    backup(config, T2, "run-2")
    before = db_fingerprint(server_a, scratch_db)
    assert axe(path, "restore", "--customer", "axe", "--table", "public.journal_line") == 1
    _one_line_error(capsys, "more than one database (ledger, frame)", "--target")
    assert db_fingerprint(server_a, scratch_db) == before


def test_whole_set_restore_goes_on_past_a_failing_database_and_keeps_the_undo_lines(
        make_config, scratch_db, server_a, tmp_path, capsys):
    """No --target: database #2's server is gone at restore time. Database #1 is restored
    (its undo line printed), #2 is reported as failed, the folder still comes back, exit 1."""
    import yaml

    from axe_pipelines.postgres.cluster import free_port
    from tests.conftest import create_sample_databases_named, server_entry

    second = scratch_db + "_b"
    create_sample_databases_named(server_a, second, "frame", rows=100)
    try:
        path, config = make_config(
            servers={"frame-postgres": server_entry(server_a),
                     "ghost-postgres": server_entry(server_a)},
            databases={"ledger": {"server": "frame-postgres", "dbname": scratch_db},
                       "ghost": {"server": "ghost-postgres", "dbname": second}})
        local_restic("axe", config.customer("axe")).init()
        original = table_md5(server_a, scratch_db, "journal_line")
        backup(config, T1, "run-1")
        server_a.psql("UPDATE journal_line SET amount = 0;", dbname=scratch_db)
        data = yaml.safe_load(path.read_text())
        data["axe"]["servers"]["ghost-postgres"]["port"] = free_port()  # nothing listens
        path.write_text(yaml.safe_dump(data))

        assert axe(path, "restore", "--customer", "axe", "--as-of", "2026-05-19") == 1
        captured = capsys.readouterr()
        out = captured.out
        assert table_md5(server_a, scratch_db, "journal_line") == original
        assert "database ghost: FAILED: database ghost: cannot reach ghost-postgres" in out
        assert "roles ghost-postgres: FAILED:" in out
        assert f"database ledger: {scratch_db} now holds snapshot" in out
        undo = [ln for ln in out.splitlines() if ln.startswith("undo with: ")]
        assert len(undo) == 1 and "--target ledger --undo " in undo[0]
        assert any(p.name.startswith("files.restored-") for p in tmp_path.iterdir())
        err = captured.err.strip()
        assert len(err.splitlines()) == 1
        assert "2 of 5 item(s) failed: roles ghost-postgres; database ghost" in err
        assert "undo lines above" in err
    finally:
        server_a.psql(f'DROP DATABASE IF EXISTS "{second}" WITH (FORCE);')


def test_roles_replay_creates_missing_roles_and_keeps_passwords(make_config, scratch_db,
                                                                 server_a, capsys):
    """A role whose password changed after the backup keeps the new one; a role dropped
    after the backup is created again, with its password and membership."""
    import uuid

    app, gone = "t_app_" + uuid.uuid4().hex[:6], "t_gone_" + uuid.uuid4().hex[:6]
    server_a.psql(f"CREATE ROLE {app} LOGIN PASSWORD 'old-pw'; "
                  f"CREATE ROLE {gone} LOGIN PASSWORD 'gone-pw' IN ROLE {app};")
    try:
        path, config = make_config(databases={"ledger": {"server": "frame-postgres",
                                                         "dbname": scratch_db}}, folders={})
        local_restic("axe", config.customer("axe")).init()
        backup(config, T1, "run-1")
        server_a.psql(f"ALTER ROLE {app} PASSWORD 'new-pw'; DROP ROLE {gone};")

        assert axe(path, "restore", "--customer", "axe", "--as-of", "2026-05-19") == 0
        out = capsys.readouterr().out
        assert f"created 1 missing role(s) ({gone})" in out
        assert "left as they are (passwords unchanged)" in out

        def login(role: str, password: str) -> int:
            return subprocess.run(
                [str(server_a.bin_dir / "psql"), "-X", "-h", "127.0.0.1", "-p",
                 str(server_a.port), "-U", role, "-d", "postgres", "-c", "SELECT 1"],
                capture_output=True, env=dict(os.environ, PGPASSWORD=password)).returncode

        assert login(app, "new-pw") == 0
        assert login(app, "old-pw") != 0
        assert login(gone, "gone-pw") == 0
        assert server_a.psql(f"SELECT pg_has_role('{gone}', '{app}', 'MEMBER');")[0][0] == "t"
        assert login("postgres", PG_PASSWORD) == 0
    finally:
        server_a.psql(f"DROP ROLE IF EXISTS {gone}; DROP ROLE IF EXISTS {app};")


def test_database_properties_survive_a_restore(make_config, server_a, capsys):
    """Encoding, locale, ALTER DATABASE … SET, comment and grants of the database come
    with the restore: from the current database, or from the dump when it is gone."""
    import uuid

    from axe_pipelines.demo import SAMPLE_SQL

    name = "t_props_" + uuid.uuid4().hex[:6]
    role = "t_reader_" + uuid.uuid4().hex[:6]
    props = ("SELECT pg_encoding_to_char(encoding), datcollate, datctype, datconnlimit, "
             "shobj_description(oid, 'pg_database'), "
             "(SELECT setconfig::text FROM pg_db_role_setting WHERE setdatabase = d.oid "
             " AND setrole = 0), has_database_privilege('{role}', d.oid, 'CONNECT'), "
             "has_database_privilege('public', d.oid, 'CONNECT') "
             "FROM pg_database d WHERE datname = '{name}';")
    server_a.psql(f"CREATE ROLE {role}; CREATE DATABASE {name} TEMPLATE template0 "
                  f"ENCODING 'SQL_ASCII' LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8';")
    try:
        server_a.psql(SAMPLE_SQL["frame"].format(rows=50, blob_repeat=1), dbname=name)
        server_a.psql(f"ALTER DATABASE {name} SET work_mem = '7MB'; "
                      f"ALTER DATABASE {name} SET search_path = public, \"My Schema\"; "
                      f"ALTER DATABASE {name} CONNECTION LIMIT 40; "
                      f"COMMENT ON DATABASE {name} IS 'the ledger''s database'; "
                      f"REVOKE CONNECT ON DATABASE {name} FROM PUBLIC; "
                      f"GRANT CONNECT ON DATABASE {name} TO {role};")
        expected = server_a.psql(props.format(role=role, name=name))
        assert expected[0][:3] == ["SQL_ASCII", "C.utf8", "C.utf8"]
        assert "work_mem=7MB" in expected[0][5] and expected[0][6:] == ["t", "f"]
        path, config = make_config(databases={"ledger": {"server": "frame-postgres",
                                                         "dbname": name}}, folders={})
        local_restic("axe", config.customer("axe")).init()
        backup(config, T1, "run-1")

        assert axe(path, "restore", "--customer", "axe", "--target", "ledger") == 0
        capsys.readouterr()
        assert server_a.psql(props.format(role=role, name=name)) == expected
        # The database is gone (a new server): the dump's own DATABASE entries serve.
        server_a.psql(f'DROP DATABASE "{name}" WITH (FORCE);')
        assert axe(path, "restore", "--customer", "axe", "--target", "ledger") == 0
        assert f"{name} created from snapshot" in capsys.readouterr().out
        assert server_a.psql(props.format(role=role, name=name)) == expected
    finally:
        server_a.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
        for kept, in server_a.psql(f"SELECT datname FROM pg_database WHERE datname LIKE "
                                   f"'{name}\\_%';"):
            server_a.psql(f'DROP DATABASE "{kept}" WITH (FORCE);')
        server_a.psql(f"DROP ROLE IF EXISTS {role};")


def test_table_restore_waits_for_a_lock_only_lock_timeout_and_names_the_holder(
        scratch_config, scratch_db, server_a, capsys):
    path, config = scratch_config
    backup(config, T1, "run-1")
    server_a.psql("UPDATE journal_line SET amount = 0 WHERE id < 10;", dbname=scratch_db)
    before = db_fingerprint(server_a, scratch_db)
    # A client in an open transaction that has read the table (holds ACCESS SHARE).
    client, pid = _connected_client(server_a, scratch_db, "frame-report",
                                    "BEGIN; SELECT count(*) FROM journal_line;",
                                    state="idle in transaction")
    try:
        assert axe(path, "restore", "--customer", "axe", "--target", "ledger", "--table",
                   "journal_line", "--lock-timeout", "1") == 1
        _one_line_error(capsys, "stayed locked for 1 s", f"pid {pid} (frame-report, idle in "
                        "transaction)", "is unchanged", "--lock-timeout")
        assert db_fingerprint(server_a, scratch_db) == before
    finally:
        client.kill()
        client.wait()
    assert axe(path, "restore", "--customer", "axe", "--target", "ledger", "--table",
               "journal_line") == 0


def test_table_restore_brings_back_a_dropped_index_and_constraint(scratch_config, scratch_db,
                                                                  server_a, capsys):
    path, config = scratch_config
    shape = ("SELECT string_agg(indexdef, ';' ORDER BY indexdef) FROM pg_indexes "
             "WHERE tablename = 'journal_line';")
    indexes = server_a.psql(shape, dbname=scratch_db)[0][0]
    backup(config, T1, "run-1")
    server_a.psql("DROP INDEX journal_line_entity; "
                  "ALTER TABLE journal_line DROP CONSTRAINT journal_line_entity_id_fkey;",
                  dbname=scratch_db)
    assert axe(path, "restore", "--customer", "axe", "--target", "ledger", "--table",
               "journal_line") == 0
    out = capsys.readouterr().out
    assert "recreated its missing index journal_line_entity" in out
    assert server_a.psql(shape, dbname=scratch_db)[0][0] == indexes
    assert server_a.psql("SELECT count(*) FROM pg_constraint WHERE conname = "
                         "'journal_line_entity_id_fkey';", dbname=scratch_db)[0][0] == "1"


def test_as_of_with_a_zone_but_no_seconds_is_the_whole_minute():
    from axe_pipelines.sets import parse_as_of

    assert parse_as_of("2026-05-20T03:00+09:00", "Asia/Seoul") == T2.replace(
        second=59, microsecond=999999)
    assert parse_as_of("2026-05-20T03:00Z", "Asia/Seoul").second == 59
    assert parse_as_of("2026-05-20T03:00:00+09:00", "Asia/Seoul") == T2.replace(second=0)
    assert parse_as_of("2026-05-20T03:00:42", "Asia/Seoul") == T2


def test_folder_path_with_tilde_restores_beside_the_expanded_folder(make_config, scratch_db,
                                                                     tmp_path, monkeypatch,
                                                                     capsys):
    import yaml

    path, config = make_config(databases={"ledger": {"server": "frame-postgres",
                                                     "dbname": scratch_db}})
    local_restic("axe", config.customer("axe")).init()
    backup(config, T1, "run-1")
    # The machine was rebuilt: customers.yaml now says ~/files.
    monkeypatch.setenv("HOME", str(tmp_path))
    data = yaml.safe_load(path.read_text())
    data["axe"]["folders"]["files"]["path"] = "~/files"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path / "files")
    assert axe(path, "restore", "--customer", "axe", "--target", "files") == 0
    beside = [p for p in tmp_path.iterdir() if p.name.startswith("files.restored-")]
    assert len(beside) == 1
    assert (beside[0] / "uploads" / "a.txt").read_text() == "contract\n" * 100
    assert not (tmp_path / "files" / "~").exists()


def test_dump_reader_exception_leaves_no_lock(scratch_config, tmp_path):
    """restic dump whose reader raises: restic gets SIGINT and removes its lock (a SIGKILL
    would leave a stale one that makes the next forget/prune fail)."""
    _, config = scratch_config
    restic = local_restic("axe", config.customer("axe"))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(48 * 1024 * 1024))
    restic.backup_command(["cat", str(big)], filename="big.bin", tags=["axe-test=dump"], at=T1)
    snap = next(s for s in restic.snapshots() if "axe-test=dump" in s.tags)
    with pytest.raises(ValueError, match="reader gave up"):
        with restic.dump(snap.id, "/big.bin") as stream:
            assert len(stream.read(65536)) == 65536
            raise ValueError("reader gave up")
    assert restic.locks() == []
    restic.run(["check"], what="checking the repository")  # takes an exclusive lock


def test_whole_set_restore_from_the_cold_tier(make_config, scratch_db, server_a, tmp_path,
                                              monkeypatch, capsys):
    """Scenario 2 from the cold SSD, no --target: with the local repository gone, every
    database and folder of the set comes back from the mounted volume."""
    import yaml

    from axe_pipelines.cold import cold_settings, sync_volume, volume_at
    from axe_pipelines.config import load_config

    path, _ = make_config(databases={"ledger": {"server": "frame-postgres",
                                                "dbname": scratch_db}})
    monkeypatch.setenv("AXE_TEST_COLD_PASSWORD", "cold-" + REPO_PASSWORD[::-1])
    data = yaml.safe_load(path.read_text())
    data["axe"]["tiers"]["cold"] = {"password": {"env": "AXE_TEST_COLD_PASSWORD"},
                                    "mount_glob": str(tmp_path / "Volumes" / "axe-cold-*"),
                                    "accept_plain_folders": True, "timeout_s": 120}
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    local_restic("axe", config.customer("axe")).init()
    original = table_md5(server_a, scratch_db, "journal_line")
    backup(config, T1, "run-1")
    volume = tmp_path / "Volumes" / "axe-cold-1"
    volume.mkdir(parents=True)
    sync_volume(config, "axe", volume_at(cold_settings("axe", config.customer("axe")), volume))

    (tmp_path / "repo").rename(tmp_path / "repo-lost")  # the machine's disk is gone
    server_a.psql("DELETE FROM journal_line WHERE id % 2 = 1;", dbname=scratch_db)
    (tmp_path / "files" / "uploads" / "a.txt").unlink()
    assert axe(path, "restore", "--customer", "axe", "--tier", "cold", "--as-of",
               "2026-05-20") == 0
    out = capsys.readouterr().out
    assert "from tier cold of axe" in out
    assert "existing role(s) left as they are" in out
    assert f"database ledger: {scratch_db} now holds snapshot" in out
    assert table_md5(server_a, scratch_db, "journal_line") == original
    beside = [p for p in tmp_path.iterdir() if p.name.startswith("files.restored-")]
    assert len(beside) == 1
    assert (beside[0] / "uploads" / "a.txt").read_text() == "contract\n" * 100
