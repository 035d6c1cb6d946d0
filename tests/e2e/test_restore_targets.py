"""`axe restore --target <server>` (every database on it), the kept names' stamps on the
customer's clock from a process in UTC, and `axe restore --cleanup` against a real server and
real folders: lists first, drops nothing unasked, drops only axe's own names."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.backup import run_tier_a
from tests.conftest import create_sample_databases_named, server_entry
from tests.e2e.test_cli_backup import run_axe

KST = ZoneInfo("Asia/Seoul")
UTC_ENV = {"TZ": "UTC"}


def databases(server_a) -> set[str]:
    return {r[0] for r in server_a.psql("SELECT datname FROM pg_database;")}


@pytest.fixture
def pair(server_a):
    """Two scratch databases on server A (a server holding several); dropped afterwards with
    everything a restore kept of them."""
    names = [f"t_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        create_sample_databases_named(server_a, name, "frame", rows=300)
    yield names
    for db in databases(server_a):
        if db.startswith(tuple(names)):
            server_a.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE);')


def test_server_target_stamps_and_cleanup(make_config, tmp_path, server_a, pair, restic_bin):
    one, two = pair
    path, config = make_config(servers={"pair-postgres": server_entry(server_a)},
                               databases={"one": {"server": "pair-postgres", "dbname": one},
                                          "two": {"server": "pair-postgres", "dbname": two}})
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    run_tier_a("axe", config.customer("axe"), at=datetime.now(KST).replace(microsecond=0)
               - timedelta(hours=1), run_id="r1")
    server_a.psql("DELETE FROM journal_line;", dbname=two)

    proc = run_axe(path, home, "restore", "--customer", "axe", "--target", "pair-postgres",
                   env=UTC_ENV)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert re.search(r"^roles pair-postgres: created 0 missing role\(s\)", proc.stdout, re.M)
    stamps = re.findall(r"undo with: axe --config \S+ restore --customer axe --target "
                        r"(one|two) --undo (\d{14})", proc.stdout)
    assert sorted(s[0] for s in stamps) == ["one", "two"], proc.stdout
    for _, tag in stamps:  # on the customer's clock, not the process's UTC
        made = datetime.strptime(tag, "%Y%m%d%H%M%S").replace(tzinfo=KST)
        assert abs((datetime.now(KST) - made).total_seconds()) < 600, tag
    assert server_a.psql("SELECT count(*) FROM journal_line;", dbname=two)[0][0] == "300"
    kept = {f"{one}_before_restore_{dict(stamps)['one']}",
            f"{two}_before_restore_{dict(stamps)['two']}"}
    assert kept <= databases(server_a)
    folder = run_axe(path, home, "restore", "--customer", "axe", "--target", "files",
                     env=UTC_ENV)
    assert folder.returncode == 0, folder.stderr
    (restored,) = [p for p in (tmp_path).iterdir() if p.name.startswith("files.restored-")]
    made = datetime.strptime(restored.name[-14:], "%Y%m%d%H%M%S").replace(tzinfo=KST)
    assert abs((datetime.now(KST) - made).total_seconds()) < 600

    # Fresh kept copies are not older than 7 days; old ones and look-alikes are made here.
    proc = run_axe(path, home, "restore", "--customer", "axe", "--cleanup")
    assert proc.returncode == 0 and proc.stdout.strip() == (
        "nothing older than 7d left by restores of axe")
    old_db = f"{one}_restored_20200101000000"
    lookalikes = [f"{one}_before_restore_junk", "postgres_before_restore_20200101000000"]
    for db in (old_db, *lookalikes):
        server_a.psql(f'CREATE DATABASE "{db}";')
    old_folder = tmp_path / "files.restored-20200101000000"
    old_folder.mkdir()
    (old_folder / "a.txt").write_text("old copy\n")
    (tmp_path / "files.restored-2020").mkdir()
    try:
        proc = run_axe(path, home, "restore", "--customer", "axe", "--cleanup")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == "kept by restores of axe, older than 7d:"
        assert lines[1].startswith(f"  database {old_db} on pair-postgres: kept by a restore "
                                   f"of one on 2020-01-01 00:00 (")
        assert lines[2].startswith(f"  folder {old_folder} on {tmp_path / 'files'}: kept by "
                                   f"a restore of files on 2020-01-01 00:00")
        assert lines[3:] == ["dry run: nothing dropped; run again with --yes to drop them"]
        assert old_db in databases(server_a) and old_folder.is_dir()

        proc = run_axe(path, home, "restore", "--customer", "axe", "--cleanup",
                       "--older-than", "0", "--dry-run")
        listed = "\n".join(proc.stdout.splitlines()[1:-1])
        assert all(name in listed for name in kept) and restored.name in listed
        assert proc.stdout.splitlines()[-1] == "dry run: nothing dropped"

        proc = run_axe(path, home, "restore", "--customer", "axe", "--cleanup", "--yes")
        assert proc.returncode == 0, proc.stderr
        assert f"dropped database {old_db} on pair-postgres" in proc.stdout
        assert f"removed folder {old_folder}" in proc.stdout
        left = databases(server_a)
        assert old_db not in left and not old_folder.exists()
        assert set(lookalikes) <= left and kept <= left and {one, two} <= left
        assert (tmp_path / "files.restored-2020").is_dir() and restored.is_dir()

        proc = run_axe(path, home, "restore", "--customer", "axe", "--cleanup",
                       "--older-than", "0", "--yes")
        assert proc.returncode == 0, proc.stderr
        left = databases(server_a)
        assert not kept & left and {one, two} <= left and not restored.exists()
        assert server_a.psql("SELECT count(*) FROM journal_line;", dbname=one)[0][0] == "300"
    finally:
        for db in lookalikes:
            server_a.psql(f'DROP DATABASE IF EXISTS "{db}";')
