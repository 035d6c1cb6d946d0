"""Integrity checks against a throwaway staging PostgreSQL (`axe integrity-check`), `--live`,
command checks, and the last-valid search (`axe find-last-valid`, `--as-of last-valid`)."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines import cli
from axe_pipelines.backup import local_restic, run_tier_a
from tests.e2e.test_restore import EXTRA_SQL, table_md5

SEOUL = ZoneInfo("Asia/Seoul")
T0 = datetime(2026, 5, 10, 3, 0, tzinfo=SEOUL)

ENV_SEEN = ("import os; print(' '.join(os.environ.get(k, '-') for k in "
            "('PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER')))")

FRAME_CLI = ("import os, sys; bad = os.environ.get('AXE_TEST_FRAME_CLI_FAIL'); "
             "print('entity axec: 3 mismatches' if bad else 'entity axec: ok'); "
             "sys.exit(4 if bad else 0)")


@pytest.fixture
def checked_config(make_config, scratch_db, server_a):
    server_a.psql(EXTRA_SQL, dbname=scratch_db)
    psql = str(server_a.bin_dir / "psql")
    path, config = make_config(databases={"ledger": {
        "server": "frame-postgres", "dbname": scratch_db,
        "integrity": [
            {"name": "entities", "sql": "SELECT code FROM entity ORDER BY id",
             "expect": [["axec"], ["axev"]]},
            {"name": "no-negative", "sql": "SELECT count(*) FROM journal_line WHERE amount < 0",
             "expect": [[0]]},
            {"name": "env-seen", "command": [sys.executable, "-c", ENV_SEEN]},
            {"name": "psql-count", "command": [psql, "-X", "-A", "-t", "-c",
                                               "SELECT count(*) FROM entity"]},
            # Stands in for `frame.cli integrity-check`: fails while the test says so.
            {"name": "frame-cli", "command": [sys.executable, "-c", FRAME_CLI]},
        ]}}, folders={})
    local_restic("axe", config.customer("axe")).init()
    return path, config


def axe(path, *args: str) -> int:
    return cli.main(["--config", str(path), *args])


def test_integrity_check_in_staging_runs_sql_and_command_checks(checked_config, scratch_db,
                                                                server_a, capsys, monkeypatch):
    path, config = checked_config
    monkeypatch.setenv("AXE_TEST_FRAME_CLI_FAIL", "1")
    assert run_tier_a("axe", config.customer("axe"), at=T0, run_id="r0").ok
    code = axe(path, "integrity-check", "--customer", "axe", "--target", "ledger",
               "--as-of", "2026-05-10")
    out = capsys.readouterr().out
    assert code == 1  # frame-cli fails on purpose
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()
            if line.startswith("  ") and len(line.split()) > 2}
    assert rows == {"check": "result", "row-counts": "ok", "entities": "ok",
                    "no-negative": "ok", "env-seen": "ok", "psql-count": "ok",
                    "frame-cli": "FAILED"}
    assert "exit 4: entity axec: 3 mismatches" in out
    # The command ran against the staging copy, not the live server.
    seen = out.split("--- output of env-seen:\n")[1].splitlines()[0].split()
    assert seen[0] == "127.0.0.1" and seen[1] != str(server_a.port) and seen[3] == "postgres"
    assert out.split("--- output of psql-count:\n")[1].splitlines()[0] == "2"

    assert axe(path, "integrity-check", "--customer", "axe", "--target", "ledger",
               "--check", "row-counts", "--check", "entities") == 0
    capsys.readouterr()
    assert axe(path, "integrity-check", "--customer", "axe", "--target", "ledger",
               "--check", "nope") == 1
    assert "no check 'nope'" in capsys.readouterr().err


def test_integrity_check_live(checked_config, scratch_db, server_a, capsys):
    path, config = checked_config
    assert run_tier_a("axe", config.customer("axe"), at=T0, run_id="r0").ok
    assert axe(path, "integrity-check", "--customer", "axe", "--target", "ledger",
               "--live") == 0
    out = capsys.readouterr().out
    assert "live database" in out and "entities" in out and "frame-cli" not in out
    server_a.psql("UPDATE entity SET code = 'axe?' WHERE id = 2;", dbname=scratch_db)
    assert axe(path, "integrity-check", "--customer", "axe", "--target", "ledger",
               "--live") == 1
    assert "got [axec; axe?]" in capsys.readouterr().out


def test_last_valid_search_and_partial_restore(checked_config, scratch_db, server_a, capsys,
                                               monkeypatch):
    """Scenario 3: silent corruption crept in before the 4th of 6 nightly sets. The search
    finds the 3rd without testing every set; the table restore brings its rows back."""
    path, config = checked_config
    customer = config.customer("axe")
    md5_at = []
    for night in range(6):
        if night == 3:
            server_a.psql("UPDATE journal_line SET amount = -amount WHERE id % 97 = 0;",
                          dbname=scratch_db)
        server_a.psql("INSERT INTO journal_line(entity_id, posted_on, amount) "
                      f"VALUES (1, '2026-05-1{night}', {night + 1});", dbname=scratch_db)
        md5_at.append(table_md5(server_a, scratch_db, "journal_line"))
        assert run_tier_a("axe", customer, at=T0 + timedelta(days=night),
                          run_id=f"night-{night}").ok

    assert axe(path, "find-last-valid", "--customer", "axe", "--target", "ledger",
               "--check", "no-negative") == 0
    out = capsys.readouterr().out
    assert "last valid: 2026-05-12T03:00:00+09:00" in out
    probes = [ln for ln in out.splitlines() if " passes " in ln or " fails " in ln]
    assert len(probes) == 3  # newest, then halving: not all 6
    assert "--as-of 2026-05-12T03:00:00+09:00" in out

    # The seed's command (no --target: the dumps say which database holds journal_line).
    assert axe(path, "restore", "--customer", "axe", "--tier", "local",
               "--table", "journal_line", "--as-of", "last-valid", "--check",
               "no-negative") == 0
    assert "table journal_line is in database ledger" in capsys.readouterr().out
    assert table_md5(server_a, scratch_db, "journal_line") == md5_at[2]
    assert server_a.psql("SELECT count(*) FROM journal_line WHERE amount < 0;",
                         dbname=scratch_db)[0][0] == "0"

    # When even the oldest set fails, say so, after log2(n) probes, and change nothing.
    capsys.readouterr()
    monkeypatch.setenv("AXE_TEST_FRAME_CLI_FAIL", "1")
    assert axe(path, "find-last-valid", "--customer", "axe", "--target", "ledger",
               "--check", "frame-cli") == 1
    captured = capsys.readouterr()
    assert "no set in tier local of axe passes frame-cli" in captured.err
    assert len([ln for ln in captured.out.splitlines() if " fails " in ln]) == 3
    assert axe(path, "find-last-valid", "--customer", "axe", "--target", "ledger",
               "--check", "entities", "--before", "2026-05-01") == 1
    assert "holds no dump" in capsys.readouterr().err


def test_restore_runs_command_checks_after_the_swap_and_post_restore(make_config, scratch_db,
                                                                    server_a, tmp_path,
                                                                    capsys):
    """SQL checks decide the swap on the restored copy; command checks (which may go
    through an application to the live database) run after the swap and the post-restore
    commands, with {PGDATABASE}-style placeholders filled and their output printed."""
    marker = tmp_path / "restarted"
    path, config = make_config(databases={"ledger": {
        "server": "frame-postgres", "dbname": scratch_db,
        "post_restore": [[sys.executable, "-c", f"open({str(marker)!r}, 'w')"]],
        "integrity": [
            {"name": "entities", "sql": "SELECT code FROM entity ORDER BY id",
             "expect": [["axec"], ["axev"]]},
            # Only {PG…} tokens are filled; other braces (a Node snippet) stay as they are.
            {"name": "db-arg", "command": [sys.executable, "-c",
                                           "import sys; print(*sys.argv[1:])",
                                           "{PGDATABASE}", "{PGPORT}", "{PrismaClient}"]},
            {"name": "after-restart", "command": [
                sys.executable, "-c",
                f"import os, sys; print('restarted' if os.path.exists({str(marker)!r}) "
                f"else 'not restarted'); sys.exit(0 if os.path.exists({str(marker)!r}) "
                f"else 3)"]},
        ]}}, folders={})
    local_restic("axe", config.customer("axe")).init()
    assert run_tier_a("axe", config.customer("axe"), at=T0, run_id="r0").ok
    try:
        assert axe(path, "restore", "--customer", "axe", "--target", "ledger") == 0
        out = capsys.readouterr().out
        rows = {line.split()[0]: line.split()[2] for line in out.splitlines()
                if line.startswith("  ") and len(line.split()) > 2}
        assert rows["entities"] == "ok" and rows["db-arg"] == "ok"
        assert rows["after-restart"] == "ok"
        # Against the live name after the swap, not the `_restoring_` copy.
        assert f"--- output of db-arg:\n{scratch_db} {server_a.port} {{PrismaClient}}" in out
        assert "--- output of after-restart:\nrestarted" in out

        # Against staging the same placeholders name the staging copy.
        assert axe(path, "integrity-check", "--customer", "axe", "--target", "ledger",
                   "--check", "db-arg") == 0
        seen = capsys.readouterr().out.split("--- output of db-arg:\n")[1].split()
        assert seen[0].startswith(scratch_db + "_") and seen[1] != str(server_a.port)
        assert seen[2] == "{PrismaClient}"
    finally:
        for name, in server_a.psql(f"SELECT datname FROM pg_database WHERE datname LIKE "
                                   f"'{scratch_db}\\_%';"):
            server_a.psql(f'DROP DATABASE "{name}" WITH (FORCE);')
