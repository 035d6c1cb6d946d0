"""Tier A end to end against real PostgreSQL servers and the real restic binary."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.backup import coverage, local_restic, plan_tier_a, run_tier_a
from axe_pipelines.postgres.client import Connection
from axe_pipelines.postgres.cluster import LocalCluster, free_port
from axe_pipelines.postgres.dump import SnapshotSession
from axe_pipelines.progress import PlainReporter
from axe_pipelines.readback import PROVED_WHILE_WRITING, verify_dump
from tests.conftest import server_entry

KST = ZoneInfo("Asia/Seoul")
AT = datetime(2026, 5, 20, 3, 0, tzinfo=KST)


def table_counts(cluster: LocalCluster, db: str) -> dict[str, int]:
    rows = cluster.psql("""
        SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables
        ORDER BY 1;""", dbname=db)
    counts = {}
    for (name,) in rows:
        counts[name] = int(cluster.psql(f"SELECT count(*) FROM {name};", dbname=db)[0][0])
    return counts


def test_full_set_across_two_servers(make_config, server_a, server_b, restic_bin):
    _, config = make_config()
    axe = config.customer("axe")
    restic = local_restic("axe", axe)
    restic.init()
    result = run_tier_a("axe", axe, at=AT, run_id="run-1")

    assert result.ok, [r.error for r in result.failed]
    assert coverage(axe, result.snapshots) == []
    labels = [r.item.label for r in result.results]
    assert labels == ["roles/frame-postgres", "roles/index-postgres", "db/frame", "db/hive",
                      "db/blueprint", "db/index", "files/files"]
    # Every snapshot carries the logical time and the run, customer and item tags.
    assert {s.time for s in result.snapshots} == {AT}
    assert all({"customer=axe", "run=run-1"} <= set(s.tags) for s in result.snapshots)
    # Row counts were taken for every table, and match the live databases.
    by_name = {r.item.name: r for r in result.results if r.item.kind == "pgdump"}
    assert by_name["frame"].row_counts == table_counts(server_a, "frame")
    assert by_name["index"].row_counts == table_counts(server_b, "index")
    assert by_name["hive"].row_counts["axec.employees"] == 42
    # The verifier proved the stream restic stored held exactly those rows...
    hive = by_name["hive"]
    assert hive.proof is not None and hive.proof.proved == PROVED_WHILE_WRITING
    assert hive.proof.rows_in_dump == sum(hive.row_counts.values())
    # ...and the dump read back from the repository holds them too.
    check = verify_dump(restic, by_name["hive"].snapshot_id, by_name["hive"].path,
                        fmt="custom", expected_counts=by_name["hive"].row_counts)
    assert check.ok and check.rows_in_dump == sum(by_name["hive"].row_counts.values())


def test_excludes_file_is_applied(make_config, restic_bin):
    _, config = make_config(databases={})
    axe = config.customer("axe")
    local_restic("axe", axe).init()
    result = run_tier_a("axe", axe, at=AT, run_id="r")
    (files,) = result.results
    listing = local_restic("axe", axe).run(["ls", files.snapshot_id], what="ls")
    assert "uploads/a.txt" in listing and "junk.tmp" not in listing


def test_counts_are_from_the_dumped_snapshot_not_later_writes(server_a, scratch_db):
    """Rows inserted after the snapshot was exported are neither counted nor dumped."""
    conn = Connection("a", _server(server_a), scratch_db)
    with SnapshotSession(conn) as session:
        info = session.export()
        server_a.psql("INSERT INTO journal_line(entity_id, posted_on, amount) "
                      "SELECT 1, '2026-05-21', 1 FROM generate_series(1, 77);", dbname=scratch_db)
        later = session.query("SELECT count(*) FROM journal_line;")[0][0]
    assert int(later) == info.row_counts["public.journal_line"] == 2000


def _server(cluster: LocalCluster):
    from axe_pipelines.config import Server

    return Server.model_validate(server_entry(cluster))


def test_pg_dump_killed_mid_stream_leaves_no_snapshot_and_others_survive(
        make_config, server_a, restic_bin):
    big = "big_" + uuid.uuid4().hex[:8]
    server_a.psql(f'CREATE DATABASE "{big}";')
    # ~160 MB of COPY output so the stream is still flowing when the backend is terminated.
    server_a.psql("CREATE TABLE blob (id int PRIMARY KEY, body bytea); "
                  "INSERT INTO blob SELECT g, decode(repeat(md5(g::text), 80000), 'hex') "
                  "FROM generate_series(1, 60) g;", dbname=big)
    try:
        _, config = make_config(databases={
            big: {"server": "frame-postgres"}, "hive": {"server": "index-postgres",
                                                        "dbname": "index"}})
        axe = config.customer("axe")
        local_restic("axe", axe).init()
        killed = threading.Event()

        def kill_when_copying() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = server_a.psql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    f"datname = '{big}' AND application_name = 'pg_dump' "
                    "AND query LIKE 'COPY %';")
                if rows:
                    killed.set()
                    return
                time.sleep(0.005)

        killer = threading.Thread(target=kill_when_copying)
        killer.start()
        result = run_tier_a("axe", axe, at=AT, run_id="run-kill", reporter=PlainReporter())
        killer.join()
        assert killed.is_set(), "the test never caught pg_dump copying"
        by_name = {r.item.name: r for r in result.results}
        assert not by_name[big].ok and by_name[big].snapshot_id is None
        # The operator reads pg_dump's own reason, not just restic's "exit status 1".
        assert 'pg_dump for db/' + big + ' failed: Dumping the contents of table "blob" failed' \
            in by_name[big].error
        assert by_name["hive"].ok  # the other server's database still got its snapshot
        repo_snaps = local_restic("axe", axe).snapshots(tags=["run=run-kill"])
        assert {s.tag("database") for s in repo_snaps if s.tag("kind") == "pgdump"} == {"hive"}
        assert [g.item.name for g in coverage(axe, repo_snaps)] == [big]
    finally:
        server_a.psql(f'DROP DATABASE IF EXISTS "{big}" WITH (FORCE);')


def test_unreachable_database_is_one_clear_line(make_config, server_a, restic_bin):
    port = free_port()  # nothing listens there
    _, config = make_config(
        servers={"frame-postgres": server_entry(server_a),
                 "gone-postgres": {**server_entry(server_a), "port": port}},
        databases={"frame": {"server": "frame-postgres"}, "gone": {"server": "gone-postgres"}})
    axe = config.customer("axe")
    local_restic("axe", axe).init()
    result = run_tier_a("axe", axe, at=AT, run_id="r")
    failed = {r.item.label: r.error for r in result.failed}
    assert set(failed) == {"roles/gone-postgres", "db/gone"}
    assert "\n" not in failed["db/gone"]
    assert f"gone-postgres (127.0.0.1:{port})" in failed["db/gone"]
    # Which server, which database, and libpq's own reason (nothing listens: refused).
    refused = f'connection to server at "127.0.0.1", port {port} failed: Connection refused'
    assert failed["db/gone"].startswith(f"gone-postgres (127.0.0.1:{port})/gone: {refused}")
    assert failed["roles/gone-postgres"].startswith(f"gone-postgres (127.0.0.1:{port})/")
    assert refused in failed["roles/gone-postgres"]
    assert {r.item.label for r in result.results if r.ok} >= {"db/frame", "files/files"}


def test_required_folder_missing_is_a_coverage_gap_with_its_path(make_config, tmp_path,
                                                                 restic_bin):
    missing = tmp_path / "not-mounted" / "files"
    _, config = make_config(databases={},
                            folders={"files": {"path": str(missing), "required": True},
                                     "cache": {"path": str(tmp_path / "nope"),
                                               "required": False}})
    axe = config.customer("axe")
    local_restic("axe", axe).init()
    result = run_tier_a("axe", axe, at=AT, run_id="r")
    (failed,) = result.failed
    assert str(missing) in failed.error
    assert [r.skipped for r in result.results] == [False, True]
    gaps = coverage(axe, result.snapshots)
    assert [g.reason for g in gaps] == [f"required folder {missing} is not in the set"]


def test_plan_includes_dumpall_when_enabled(make_config, server_a):
    _, config = make_config(servers={"frame-postgres": server_entry(server_a, dumpall=True)},
                            databases={"hive": {"server": "frame-postgres"}})
    kinds = [(i.kind, i.name) for i in plan_tier_a(config.customer("axe"))]
    assert kinds[:2] == [("roles", "frame-postgres"), ("dumpall", "frame-postgres")]


def test_plain_format_dump_round_trips(make_config, server_a, restic_bin):
    _, config = make_config(servers={"frame-postgres": server_entry(server_a, dumpall=True)},
                            databases={"hive": {"server": "frame-postgres", "format": "plain"}},
                            folders={})
    axe = config.customer("axe")
    restic = local_restic("axe", axe)
    restic.init()
    result = run_tier_a("axe", axe, at=AT, run_id="r")
    assert result.ok, [r.error for r in result.failed]
    hive = next(r for r in result.results if r.item.name == "hive")
    assert hive.path == "hive.sql"
    check = verify_dump(restic, hive.snapshot_id, hive.path, fmt="plain",
                        expected_counts=hive.row_counts)
    assert check.ok, check.problems
    dumpall = next(r for r in result.results if r.item.kind == "dumpall")
    with restic.dump(dumpall.snapshot_id, "/" + dumpall.path) as stream:
        text = stream.read().decode()
    assert "CREATE DATABASE hive" in text and "COPY axec.employees" in text


def test_verify_dump_detects_a_count_mismatch(make_config, restic_bin):
    _, config = make_config(databases={"hive": {"server": "frame-postgres"}}, folders={})
    axe = config.customer("axe")
    restic = local_restic("axe", axe)
    restic.init()
    result = run_tier_a("axe", axe, at=AT, run_id="r")
    hive = next(r for r in result.results if r.item.name == "hive")
    wrong = dict(hive.row_counts, **{"axec.employees": 41, "public.ghost": 3})
    check = verify_dump(restic, hive.snapshot_id, hive.path, fmt="custom",
                        expected_counts=wrong)
    assert not check.ok
    assert check.problems == ["axec.employees: 42 rows in the dump, 41 counted at dump time",
                              "public.ghost: missing from the dump"]


def test_counts_that_disagree_with_the_archive_store_no_snapshot(make_config, restic_bin,
                                                                 monkeypatch):
    """The verifier gets the snapshot's counts through its 0600 spec file; rows cannot change
    inside an exported snapshot, so the fault is one count off in what the session reports:
    the custom-format archive disagrees, restic stores nothing, the item says which table."""
    real = SnapshotSession.export

    def one_off(self, **kwargs):
        info = real(self, **kwargs)
        info.row_counts["axec.employees"] += 1
        return info

    monkeypatch.setattr(SnapshotSession, "export", one_off)
    _, config = make_config(databases={"hive": {"server": "frame-postgres"}}, folders={})
    axe = config.customer("axe")
    local_restic("axe", axe).init()
    result = run_tier_a("axe", axe, at=AT, run_id="r-off")
    hive = next(r for r in result.results if r.item.name == "hive")
    assert not hive.ok and hive.snapshot_id is None and hive.proof is None
    assert hive.error.endswith("the dump of db/hive was not stored: axec.employees: 42 rows in "
                               "the dump, 43 counted at dump time"), hive.error
    assert "\n" not in hive.error
    assert local_restic("axe", axe).snapshots(tags=["kind=pgdump"]) == []


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_truncated_archive_is_not_restorable(tmp_path, make_config, restic_bin, cut):
    """A dump cut short (what a plain pipe stores when pg_dump dies) fails verification."""
    from axe_pipelines.postgres.client import PostgresError
    from axe_pipelines.postgres.dump import read_dump

    _, config = make_config(databases={"frame": {"server": "frame-postgres"}}, folders={})
    axe = config.customer("axe")
    restic = local_restic("axe", axe)
    restic.init()
    result = run_tier_a("axe", axe, at=AT, run_id="r")
    frame = next(r for r in result.results if r.item.name == "frame")
    with restic.dump(frame.snapshot_id, "/frame.pgdump") as stream:
        data = stream.read()
    cut_file = tmp_path / "cut.pgdump"
    cut_file.write_bytes(data[: int(len(data) * cut)])
    with open(cut_file, "rb") as stream, pytest.raises(PostgresError) as info:
        read_dump(stream, fmt="custom")
    assert "pg_restore cannot read the dump" in str(info.value)


class Recorder:
    """A reporter that keeps the order items start and finish in."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def start(self, item):
        with self.lock:
            self.events.append(("start", item.label))

    def progress(self, item, n):
        pass

    def finish(self, result):
        with self.lock:
            self.events.append(("finish", result.item.label))


def test_servers_are_dumped_in_parallel_lanes(make_config, restic_bin):
    """Two servers' first items start before either finishes; with `parallel_items: 1` one
    server's items run in turn."""
    _, config = make_config(folders={}, local={"parallel_items": 1})
    axe = config.customer("axe")
    local_restic("axe", axe).init()
    recorder = Recorder()
    result = run_tier_a("axe", axe, at=AT, run_id="r", reporter=recorder)
    assert result.ok
    events = recorder.events
    first_finish = next(i for i, e in enumerate(events) if e[0] == "finish")
    assert {e[1] for e in events[:first_finish]} == {"roles/frame-postgres",
                                                      "roles/index-postgres"}
    # Within a server: frame starts only after frame-postgres' roles finished.
    assert events.index(("finish", "roles/frame-postgres")) < events.index(("start", "db/frame"))
    assert events.index(("finish", "db/frame")) < events.index(("start", "db/hive"))


def test_two_items_of_one_server_at_once_by_default(make_config, restic_bin):
    """`parallel_items` defaults to 2: a server's first two items start together, and never
    more than two of its items run at once; the set is whole."""
    _, config = make_config(databases={"frame": {"server": "frame-postgres"},
                                       "hive": {"server": "frame-postgres"}}, folders={})
    axe = config.customer("axe")
    local_restic("axe", axe).init()
    recorder = Recorder()
    result = run_tier_a("axe", axe, at=AT, run_id="r2", reporter=recorder)
    assert result.ok and coverage(axe, result.snapshots) == []
    events = recorder.events
    first_finish = next(i for i, e in enumerate(events) if e[0] == "finish")
    assert {e[1] for e in events[:first_finish]} == {"roles/frame-postgres", "db/frame"}
    running = peak = 0
    for kind, _label in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2
    # Built from restic's summaries, not read back: the same snapshots the repository lists.
    listed = local_restic("axe", axe).snapshots(tags=["run=r2"])
    assert sorted((s.id, s.tags, s.paths, s.time, s.hostname) for s in listed) == sorted(
        (s.id, s.tags, s.paths, s.time, s.hostname) for s in result.snapshots)


# pg_dump's stream damaged on its way into restic while pg_dump and the pipeline report
# success (what a broken exec wrapper or a plain pipe could store); every other tool runs as is.
DAMAGING_EXEC = 'if [ "$1" = pg_dump ]; then "$@" | {filter}; else exec "$@"; fi'


@pytest.mark.parametrize(("database", "fmt", "damage", "says"), [
    ("frame", "custom", "head -c 30000",  # cut short: the archive ends inside a table's data
     "the stream ends inside the data of public."),
    ("hive", "plain", "sed '/^7\tc7\t/d'",  # one row of axec.employees left out
     "axec.employees: 41 rows in the dump, 42 counted at dump time"),
])
def test_a_damaged_dump_is_never_stored_and_the_item_says_what_is_wrong(
        make_config, tmp_path, server_a, restic_bin, database, fmt, damage, says):
    """A damaged dump stream (the dump tool itself said ok) is met while restic stores it: the
    verifier fails the command, so no snapshot of it exists, the item fails with one line
    saying what is wrong, and its `restorable` check fails. (Reading a stored dump back, the
    check run on its own: test_honest_damage and test_dagster_tier_a.)"""
    from axe_pipelines.names import item_key

    from .test_cli_backup import run_axe

    damaging = ["sh", "-c", DAMAGING_EXEC.format(filter=damage), "axe-damage"]
    path, config = make_config(
        servers={"frame-postgres": server_entry(server_a, exec=damaging)},
        databases={database: {"server": "frame-postgres", "format": fmt}}, folders={})
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    proc = run_axe(path, home, "backup", "--local")
    axe = config.customer("axe")
    [dump] = [i for i in plan_tier_a(axe) if i.kind == "pgdump"]
    key = item_key("axe", dump).to_user_string()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # Nothing of it was stored, not even as a snapshot that looks good...
    assert local_restic("axe", axe).snapshots(tags=["kind=pgdump"]) == []
    # ...the item's one line says why...
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"axe: axe db/{database}:")]
    assert f"the dump of db/{database} was not stored: " in line and says in line, line
    # ...and its restorable check fails with it.
    [check] = [ln for ln in proc.stdout.splitlines() if f"check {key}:restorable:" in ln]
    assert check == f"check {key}:restorable: FAILED (the dump failed in this run)", check
