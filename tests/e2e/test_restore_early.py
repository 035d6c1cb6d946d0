"""A restore of one database as it is now fetches the newest dump beside the listing
(actions/restore_early.py): used when it is the picked snapshot, thrown away when restic's
`latest` is another one. Real restic (through a shim that logs each call) and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.actions.restore import RestoreOptions, run_restore
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.restic.process import find_restic

SEOUL = ZoneInfo("Asia/Seoul")
T1 = datetime(2026, 5, 19, 3, 0, tzinfo=SEOUL)
T2 = datetime(2026, 5, 20, 3, 0, tzinfo=SEOUL)


@pytest.fixture
def logged_restic(tmp_path, monkeypatch) -> Path:
    """AXE_RESTIC pointed at a shim that appends each call's arguments to a log."""
    real, log = find_restic(), tmp_path / "restic-calls.log"
    shim = tmp_path / "restic"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("AXE_RESTIC", str(shim))
    return log


def _calls(log: Path, verb: str) -> list[str]:
    return [c for c in log.read_text().splitlines() if c.split(" ")[0] == verb] \
        if log.exists() else []


def _md5(cluster, db: str) -> str:
    return cluster.psql("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM journal_line t;",
                        dbname=db)[0][0]


@pytest.fixture
def two_sets(make_config, scratch_db, server_a):
    """Two nightly sets of `ledger`, journal_line changed between them; returns the config
    and the table's checksum in each set."""
    path, config = make_config(databases={"ledger": {"server": "frame-postgres",
                                                     "dbname": scratch_db}}, folders={})
    customer = config.customer("axe")
    local_restic("axe", customer).init()
    sums = []
    for at, run in ((T1, "run-1"), (T2, "run-2")):
        assert run_tier_a("axe", customer, at=at, run_id=run).ok
        sums.append(_md5(server_a, scratch_db))
        server_a.psql(f"UPDATE journal_line SET memo = '{run} was here' WHERE id < 40;",
                      dbname=scratch_db)
    return config, sums


def test_the_newest_dump_fetched_early_is_the_one_restored(two_sets, logged_restic, server_a,
                                                           scratch_db):
    config, (_, newest) = two_sets
    report = run_restore(config, RestoreOptions("axe", target="ledger", force=True),
                         say=lambda _: None)
    assert report.ok and _md5(server_a, scratch_db) == newest
    restores = _calls(logged_restic, "restore")
    assert len(restores) == 1 and restores[0].startswith("restore latest --tag ")
    args = restores[0].split(" ")
    assert not Path(args[args.index("--target") + 1]).exists()  # its folder is removed


def test_an_early_fetch_of_another_snapshot_is_thrown_away(two_sets, logged_restic, server_a,
                                                           scratch_db, monkeypatch):
    import axe_pipelines.actions.restore_early as early

    taken = early.EarlyFetch.take
    left: list[bool] = []

    def take(self, snap, sets):  # a file not taken is gone before the pick is fetched
        got = taken(self, snap, sets)
        left.append(got is None and (self.dir / self.path.lstrip("/")).exists())
        return got

    monkeypatch.setattr(early.EarlyFetch, "take", take)
    config, (older, _) = two_sets
    restic = local_restic("axe", config.customer("axe"))
    newest = [s for s in restic.snapshots(tags=["database=ledger"])][-1]
    # restic's `latest` is now a snapshot a restore never picks (an unfinished night).
    restic.tag(newest.id, ["incomplete"])
    report = run_restore(config, RestoreOptions("axe", target="ledger", force=True),
                         say=lambda _: None)
    assert report.ok and _md5(server_a, scratch_db) == older
    restores = _calls(logged_restic, "restore")
    assert [r.split(" ")[1] for r in restores] == ["latest", report.targets[0].snapshot_id]
    assert left == [False]


def test_an_earlier_as_of_fetches_nothing_early(two_sets, logged_restic, server_a, scratch_db):
    config, (older, _) = two_sets
    report = run_restore(config, RestoreOptions("axe", target="ledger", as_of="2026-05-19",
                                                force=True), say=lambda _: None)
    assert report.ok and _md5(server_a, scratch_db) == older
    assert [r.split(" ")[1] for r in _calls(logged_restic, "restore")] == \
        [report.targets[0].snapshot_id]


def test_a_refused_restore_stops_the_early_fetch(two_sets, tmp_path, monkeypatch, server_a,
                                                 scratch_db):
    """Open connections without --force refuse the restore before it needs the dump: the
    early `restic restore` (here one that would take 60 s) is stopped with SIGINT, not
    waited for, and no lock is left."""
    from tests.e2e.test_restore import _connected_client

    config, _ = two_sets
    real, log = find_restic(), tmp_path / "restic-calls.log"
    shim = tmp_path / "restic"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nif [ "$1" = restore ]; then\n'
                    f'  trap \'echo interrupted >> {log}; kill $!; exit 130\' INT\n'
                    f'  sleep 60 & wait $!\nfi\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("AXE_RESTIC", str(shim))
    client, _ = _connected_client(server_a, scratch_db, "frame-mcp-blue")
    try:
        with pytest.raises(Exception, match="frame-mcp-blue"):
            run_restore(config, RestoreOptions("axe", target="ledger"), say=lambda _: None)
    finally:
        client.kill()
        client.wait()
    calls = log.read_text().splitlines()
    assert [c for c in calls if c.startswith("restore ")] and "interrupted" in calls
    monkeypatch.delenv("AXE_RESTIC")
    assert local_restic("axe", config.customer("axe")).locks() == []
