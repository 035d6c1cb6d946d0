"""A table restore reads only as much of its dump as the table needs (actions/
table_stream.py): `restic --no-lock dump` streams into pg_restore, which stops after the
table's data; restic is stopped and leaves no lock; a restic failing mid-way rolls the table
back and is named. Real restic (through a shim that counts the bytes it hands on) and
PostgreSQL."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.actions.restore import RestoreOptions, run_restore
from axe_pipelines.actions.selection import RestoreError
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.restic.process import find_restic

T1 = datetime(2026, 5, 19, 3, 0, tzinfo=ZoneInfo("Asia/Seoul"))
# Copies restic's output through, counting it; stops restic with SIGINT when its reader
# stops (or it is interrupted itself), then logs the count. With LIMIT, the stream stops
# (restic killed, as a dropped link would) after that many bytes.
COUNTER = """
import os, signal, subprocess, sys
log, limit, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
n = 0
try:
    while (chunk := proc.stdout.read1(1 << 16)):
        if limit and n + len(chunk) > limit:
            proc.kill()
            sys.stdout.buffer.write(chunk[:limit - n]); n = limit
            break
        sys.stdout.buffer.write(chunk); sys.stdout.buffer.flush(); n += len(chunk)
except (BrokenPipeError, KeyboardInterrupt):
    pass
finally:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.stdout.close()  # restic may be blocked writing to it
    code = proc.wait()
    open(log, "a").write(f"bytes {n}\\n")
sys.exit(1 if limit else 0)
"""


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """Returns a function setting AXE_RESTIC to a shim whose `dump` goes through COUNTER
    (optionally cut after `limit` bytes); it returns the log."""
    def use(limit: int = 0) -> Path:
        real, log = Path(find_restic()).resolve(), tmp_path / f"restic-{limit}.log"
        (tmp_path / "counter.py").write_text(COUNTER)
        shim = tmp_path / f"restic-{limit}"
        shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase " $* " in *" dump "*)\n'
                        f'  exec {sys.executable} {tmp_path / "counter.py"} {log} {limit} '
                        f'{real} "$@";;\nesac\nexec {real} "$@"\n')
        shim.chmod(0o755)
        monkeypatch.setenv("AXE_RESTIC", str(shim))
        return log
    return use


@pytest.fixture
def bulky(make_config, scratch_db, server_a):
    """`ledger` with a ~30 MB table after the others in the dump, backed up once."""
    server_a.psql("CREATE TABLE zz_bulk AS SELECT g AS id, repeat('x', 100) AS pad "
                  "FROM generate_series(1, 250000) g;", dbname=scratch_db)
    path, config = make_config(databases={"ledger": {"server": "frame-postgres",
                                                     "dbname": scratch_db}}, folders={})
    local_restic("axe", config.customer("axe")).init()
    assert run_tier_a("axe", config.customer("axe"), at=T1, run_id="run-1").ok
    return config


def _bytes(log: Path) -> list[int]:
    return [int(c.split()[1]) for c in log.read_text().splitlines() if c.startswith("bytes ")]


def test_a_small_table_reads_only_the_head_of_the_dump(bulky, counted, server_a, scratch_db):
    server_a.psql("UPDATE entity SET code = upper(code);", dbname=scratch_db)
    log = counted()
    report = run_restore(bulky, RestoreOptions("axe", target="ledger", table="entity"),
                         say=lambda _: None)
    assert report.ok
    assert server_a.psql("SELECT code FROM entity ORDER BY id;", dbname=scratch_db) == \
        [["axec"], ["axev"]]
    calls = log.read_text().splitlines()
    assert not [c for c in calls if c.startswith("restore ")]  # no whole-dump fetch
    assert [c for c in calls if c.startswith("--no-lock dump ")]
    (read,) = _bytes(log)
    assert read < 8 << 20  # of a dump over 25 MB: the head and the table's data
    assert local_restic("axe", bulky.customer("axe")).locks() == []


def test_a_large_table_streams_to_its_end(bulky, counted, server_a, scratch_db):
    server_a.psql("DELETE FROM zz_bulk WHERE id % 3 = 0;", dbname=scratch_db)
    log = counted()
    report = run_restore(bulky, RestoreOptions("axe", target="ledger", table="zz_bulk"),
                         say=lambda _: None)
    assert report.ok
    assert server_a.psql("SELECT count(*) FROM zz_bulk;", dbname=scratch_db) == [["250000"]]
    assert _bytes(log)[0] > 25 << 20


def test_a_stream_cut_short_leaves_the_table_and_names_restic(bulky, counted, server_a,
                                                              scratch_db):
    server_a.psql("DELETE FROM zz_bulk WHERE id % 3 = 0;", dbname=scratch_db)
    before = server_a.psql("SELECT count(*) FROM zz_bulk;", dbname=scratch_db)
    counted(limit=10 << 20)  # restic gone 10 MB into zz_bulk's data
    with pytest.raises(RestoreError, match="rolled back, the table is unchanged"):
        run_restore(bulky, RestoreOptions("axe", target="ledger", table="zz_bulk"),
                    say=lambda _: None)
    assert server_a.psql("SELECT count(*) FROM zz_bulk;", dbname=scratch_db) == before
