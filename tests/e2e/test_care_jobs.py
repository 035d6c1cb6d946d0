"""Repository care as Dagster jobs and commands, against the real restic: the weekly retention
job forgets and prunes on tier A and on the mounted cold volume what their policies let go
(the peer's copy of its backups untouched, an unreachable peer failing alone), `axe prune
--dry-run` shows the plan per tier and changes nothing, `axe prune` applies it; the weekly
restic_check reads the rotating part and fails with restic's repair advice on a flipped
byte, as does `axe check` (exit 1); stale locks follow the one policy of every tier."""

from __future__ import annotations

import os
import shutil
import signal
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from axe_pipelines import cli
from axe_pipelines.care.repositories import tier_repositories
from axe_pipelines.cold import find_volumes, sync_volume
from axe_pipelines.config import Site, load_config
from axe_pipelines.definitions import build_definitions
from axe_pipelines.names import (
    RESTIC_CHECK,
    restic_check_job,
    retention_job,
    set_key,
    tier_c_key,
)
from axe_pipelines.postgres.cluster import free_port
from axe_pipelines.restic import Restic
from tests.e2e.test_care import (
    _flip_a_byte_in_the_largest_pack,
    back_up_history,
    make_repo,
    open_repo,
)
from tests.e2e.test_restic import _hold_exclusive_lock, locks

COLD_ENV = "AXE_TEST_CARE_COLD_PASSWORD"
DAYS = [date(2026, 5, d) for d in (15, 16, 17, 18, 19, 20)]


def write_site(root: Path, *, ring: bool = False, local: dict[str, Any] | None = None,
               cold: dict[str, Any] | None = None) -> Site:
    (root / "files").mkdir(exist_ok=True)
    tiers: dict[str, Any] = {
        "local": {"repository": str(root / "repo"), "password": {"file": str(root / "pw")},
                  "retention": {"keep_last": 2}, **(local or {})},
        "cold": {"password": {"env": COLD_ENV}, "mount_glob": str(root / "vols" / "axe-cold-*"),
                 "accept_plain_folders": True, "retention": {"keep_last": 1}, **(cold or {})}}
    if ring:
        tiers["ring"] = {"connect_timeout_s": 2, "retries": 0,
                         "retention": {"keep_last": 1}}
    data = {"axe": {"folders": {"files": {"path": str(root / "files")}}, "tiers": tiers},
            "realchoice": {"ring_backup": {
                "ssh_user": "realchoice", "ssh_fqdn": "realchoice.invalid",
                "ssh_ip": "127.0.0.1", "ssh_port": free_port(),
                "receive_dir_at_peer": "/Users/realchoice/peer-backups/axe/",
                "receive_dir_at_self": str(root / "inbound" / "realchoice")}}}
    (root / "customers.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(root / "customers.yaml")


@pytest.fixture(scope="session")
def tier_a_history(tmp_path_factory: pytest.TempPathFactory, restic_bin: str) -> Path:
    """A tier-A repository with one set per day of DAYS, made once and copied into each test
    (none of them tests the backups that made it)."""
    root = tmp_path_factory.mktemp("care_tier_a")
    back_up_history(make_repo(root / "repo", root / "pw"), DAYS)
    return root


@pytest.fixture
def tier_a(tmp_path: Path, tier_a_history: Path, monkeypatch: pytest.MonkeyPatch) -> Restic:
    monkeypatch.setenv(COLD_ENV, "cold-" + os.urandom(6).hex())
    shutil.copytree(tier_a_history / "repo", tmp_path / "repo", symlinks=True)
    shutil.copy2(tier_a_history / "pw", tmp_path / "pw")
    return open_repo(tmp_path / "repo", tmp_path / "pw")


def cold_with_two_sets(site: Site, root: Path, tier_a: Restic) -> Restic:
    """A plain folder counted as cold volume #1, synced twice: two sets on it."""
    (root / "vols" / "axe-cold-1").mkdir(parents=True)
    [volume] = find_volumes(site.customer("axe").tiers.cold)
    sync_volume(site, "axe", volume)
    back_up_history(tier_a, [date(2026, 5, 21)])
    sync_volume(site, "axe", find_volumes(site.customer("axe").tiers.cold)[0])
    [repo] = tier_repositories(site, "axe", ["cold"])
    return repo.open()


def runs(restic: Restic) -> list[str]:
    return sorted({s.tag("run") or "" for s in restic.snapshots()})


def test_the_weekly_retention_job_prunes_tier_a_and_cold_and_an_unreachable_peer_fails_alone(
        tmp_path: Path, tier_a: Restic, dagster_home: Path):
    site = write_site(tmp_path, ring=True)
    cold = cold_with_two_sets(site, tmp_path, tier_a)
    peer_copy = make_repo(tmp_path / "inbound" / "realchoice", tmp_path / "peer-pw")
    back_up_history(peer_copy, DAYS[:3])
    peer_before = {s.id for s in peer_copy.snapshots()}
    assert len(runs(tier_a)) == 7 and len(runs(cold)) == 2

    defs = build_definitions(site)
    result = defs.resolve_job_def(retention_job("axe")).execute_in_process(
        instance=dg.DagsterInstance.get(), raise_on_error=False)

    assert runs(tier_a) == ["run-2026-05-20", "run-2026-05-21"]  # keep_last 2, sets whole
    assert runs(cold) == ["run-2026-05-21"]  # the cold tier's own policy: keep_last 1
    assert {s.id for s in peer_copy.snapshots()} == peer_before  # never the peer's copy
    assert not result.success  # the peer did not answer: that repository alone failed
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    text = failure.step_failure_data.user_failure_data.description
    assert text.startswith("axe tier B at realchoice: tier B: cannot reach realchoice")
    assert "\n" not in text and text.endswith("(2 other repositories done)")


def test_prune_dry_run_shows_the_plan_per_tier_and_prune_applies_it(
        tmp_path: Path, tier_a: Restic, capsys: pytest.CaptureFixture[str]):
    site = write_site(tmp_path)
    cold = cold_with_two_sets(site, tmp_path, tier_a)
    before_a, before_c = runs(tier_a), runs(cold)
    config = str(site.path)

    assert cli.main(["--config", config, "prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "axe tier A:" in out and "axe tier C on axe-cold-1:" in out
    assert "keep 4 snapshot(s), forget 10 (from 5 of 7 set(s)); policy last 2" in out
    assert "forget all 2" in out and "dry run: nothing was forgotten" in out
    assert (runs(tier_a), runs(cold)) == (before_a, before_c)

    assert cli.main(["--config", config, "prune", "--tier", "local"]) == 0
    out = capsys.readouterr().out
    assert out.index("forget all 2") < out.index("forgot 10 snapshot(s), 4 remain")
    assert len(runs(tier_a)) == 2 and runs(cold) == before_c  # --tier local only


def test_the_weekly_check_fails_with_restics_repair_advice(tmp_path: Path, tier_a: Restic,
                                                           dagster_home: Path,
                                                           capsys: pytest.CaptureFixture[str]):
    site = write_site(tmp_path, local={"check_read_parts": 1})  # all data every week
    defs = build_definitions(site)
    job = defs.resolve_job_def(restic_check_job("axe"))
    assert job.execute_in_process(instance=dg.DagsterInstance.get()).success

    broken = _flip_a_byte_in_the_largest_pack(tmp_path / "repo")
    result = job.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)
    checks = {c.asset_key.to_user_string(): c for c in result.get_asset_check_evaluations()
              if c.check_name == RESTIC_CHECK}
    damaged = checks[set_key("axe").to_user_string()]
    assert not damaged.passed and damaged.severity == dg.AssetCheckSeverity.ERROR
    assert f"next: restic repair packs {broken}" in damaged.description
    assert f"restic repair packs {broken}" in damaged.metadata["advice"].value
    cold_check = checks[tier_c_key("axe").to_user_string()]
    assert cold_check.passed and "nothing checked" in cold_check.description

    assert cli.main(["--config", str(site.path), "check", "--tier", "local"]) == 1
    out = capsys.readouterr().out
    assert "axe tier A: DAMAGED" in out and f"advice: restic repair packs {broken}" in out


def test_stale_locks_follow_the_one_policy_in_check_and_prune(tmp_path: Path, tier_a: Restic,
                                                               capsys):
    site = write_site(tmp_path)
    config = str(site.path)
    stale = _hold_exclusive_lock(tier_a)
    stale.kill()  # SIGKILL: restic cannot remove its lock; its PID on this host is gone
    stale.wait()
    assert len(locks(tier_a)) == 1
    assert cli.main(["--config", config, "check", "--tier", "local"]) == 0
    assert locks(tier_a) == []

    live = _hold_exclusive_lock(tier_a)
    try:
        assert cli.main(["--config", config, "prune", "--tier", "local"]) == 3
        out = capsys.readouterr().out
        assert f"locked by PID {live.pid}" in out and len(locks(tier_a)) == 1
    finally:
        os.kill(live.pid, signal.SIGCONT)
        live.wait(60)


def test_a_cold_sync_runs_the_due_retention_and_check_on_that_volume(
        tmp_path: Path, tier_a: Restic, dagster_home: Path, capsys: pytest.CaptureFixture[str]):
    # A rotated SSD is rarely mounted at Sunday 05:00/06:00: the sync does its care.
    from datetime import UTC, datetime, timedelta

    from axe_pipelines.care.stamps import last_care
    from axe_pipelines.checks.history import DagsterOpsHistory

    site = write_site(tmp_path, cold={"volumes": 1})  # one SSD: the rotation is current
    cold = cold_with_two_sets(site, tmp_path, tier_a)  # two sets; keep_last 1 on tier C
    volume = tmp_path / "vols" / "axe-cold-1"
    assert last_care(volume, "axe") == {}

    assert cli.main(["--config", str(site.path), "backup", "--cold"]) == 0
    assert runs(cold) == ["run-2026-05-21"]  # retention ran on the volume
    done = last_care(volume, "axe")
    assert set(done) == {"pruned", "checked"}
    assert datetime.now(UTC) - done["checked"] < timedelta(minutes=5)
    with DagsterOpsHistory() as history:  # the check is recorded for status and alerts
        check = history.last_check("axe", "cold", None)
    assert check is not None and check.result == "ok"

    # Not due again within 7 days: the next sync only syncs.
    back_up_history(tier_a, [date(2026, 5, 22)])
    assert cli.main(["--config", str(site.path), "backup", "--cold"]) == 0
    assert runs(cold) == ["run-2026-05-21", "run-2026-05-22"]
    assert last_care(volume, "axe") == done


def test_a_dump_meeting_a_stale_lock_clears_it_and_reads(tmp_path: Path, tier_a: Restic):
    # restic dump is a stream; the lock is met before its first byte, so it follows the same
    # policy as every other call (a stale one cleared, the dump started once more).
    snap = next(s for s in tier_a.snapshots() if s.paths and s.paths[0].endswith(".dump"))
    stale = _hold_exclusive_lock(tier_a)
    stale.kill()  # SIGKILL: its exclusive lock stays; its PID on this host is gone
    stale.wait()
    assert len(locks(tier_a)) == 1
    with tier_a.dump(snap.id, snap.paths[0]) as stream:
        data = stream.read()
    assert b" as of " in data
    assert locks(tier_a) == []

    live = _hold_exclusive_lock(tier_a)
    try:
        with pytest.raises(Exception, match=f"PID {live.pid}"):
            with tier_a.dump(snap.id, snap.paths[0]) as stream:
                stream.read()
    finally:
        os.kill(live.pid, signal.SIGCONT)
        live.wait(60)
