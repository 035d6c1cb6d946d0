"""actions/backup.py with a stand-in runner: what the CLI prints and which exit code it
gives, decided without Dagster, servers or restic (actions/status.py: test_status.py)."""

from __future__ import annotations

from pathlib import Path

from axe_pipelines.actions.backup import (
    CheckOutcome,
    CopyOutcome,
    LocalOutcome,
    RunOutcome,
    backup_cold,
    backup_ring,
)
from axe_pipelines.backup import Item, ItemResult
from axe_pipelines.config import parse_config

LOCAL = {"repository": "/r", "password": {"env": "X"}}
META = {"snapshots_copied": 3, "snapshots_already_present": 4, "bytes_copied": 3 << 20,
        "duration_s": 1.5, "host": "realchoice.invalid", "peer_free_gib": 42.0}


class Runner:
    """Answers every run with `outcome` and remembers what it was asked."""

    def __init__(self, outcome: RunOutcome):
        self.outcome, self.asked = outcome, []

    def tier_a(self, site, customer_name, *, reporter, skip_restore_check):
        raise AssertionError("not used here")

    def tier_b(self, site, customer_name, peer, *, retry_left=False):
        self.asked.append((customer_name, peer))
        return self.outcome

    def tier_c(self, site, customer_name, volume):
        self.asked.append((customer_name, volume.name))
        return self.outcome


def test_check_lines_and_which_failures_count():
    ok = CheckOutcome("axe/tier_a/local", "coverage", True, False, "complete")
    warn = CheckOutcome("axe/tier_c/cold", "rotation", False, True, "expects #2")
    bad = CheckOutcome("axe/tier_c/cold", "volumes_current", False, False, "overdue: #3")
    assert ok.line == "check axe/tier_a/local:coverage: ok"
    assert warn.line == "check axe/tier_c/cold:rotation: WARN (expects #2)"
    assert bad.line == "check axe/tier_c/cold:volumes_current: FAILED (overdue: #3)"
    assert RunOutcome("r", True, checks=[ok, warn]).checks_ok
    assert not RunOutcome("r", True, checks=[ok, bad]).checks_ok


def test_local_outcome_lines_and_exit_codes():
    items = [Item("pgdump", "frame", "pg"), Item("files", "files")]
    done = [ItemResult(items[0], ok=True), ItemResult(items[1], ok=False, error="gone")]
    failed = LocalOutcome("axe", items, done, 1.0, RunOutcome("run12345xyz", False))
    assert failed.errors == ["axe files/files: gone"] and failed.exit_code == 1
    died = LocalOutcome("axe", items, done[:1], 1.0, RunOutcome("run12345xyz", False))
    assert died.errors == ["tier A of axe: run run12345 failed before finishing; see `dagster` "
                           "run logs"] and died.exit_code == 1
    fine = LocalOutcome("axe", items[:1], done[:1], 1.0, RunOutcome("r", True))
    assert fine.errors == [] and fine.exit_code == 0
    locked = LocalOutcome("axe", unusable="tier A repository of axe is locked by PID 1")
    assert locked.errors == ["tier A of axe: tier A repository of axe is locked by PID 1"]
    assert locked.exit_code == 3


def test_backup_ring_one_run_per_peer_with_its_summary():
    peer = {"ssh_user": "u", "ssh_fqdn": "p.invalid", "receive_dir_at_peer": "/in/",
            "receive_dir_at_self": "/srv/in"}
    site = parse_config({"axe": {"tiers": {"local": LOCAL, "ring": {}}},
                         "realchoice": {"ring_backup": peer}})
    said: list[str] = []
    runner = Runner(RunOutcome("r", True, metadata=META))
    (outcome,) = backup_ring(site, ["axe"], runner, say=said.append)
    assert said == ["tier B of axe: latest set to realchoice"]
    assert outcome.summary == ("tier B axe -> realchoice (realchoice.invalid): 3 copied, 4 "
                               "already there, 3.0 MiB, 1.5 s; peer free 42.0 GiB")
    assert outcome.exit_code == 0 and runner.asked == [("axe", "realchoice")]
    (unknown,) = backup_ring(site, ["axe"], runner, peer="nope", say=said.append)
    assert unknown.exit_code == 2 and "nope has no ring_backup block" in unknown.errors[0]


def test_backup_cold_per_mounted_volume(tmp_path: Path):
    cold = {"password": {"file": "/p"}, "accept_plain_folders": True,
            "mount_glob": str(tmp_path / "axe-cold-*")}
    site = parse_config({"axe": {"tiers": {"local": LOCAL, "cold": cold}},
                         "bare": {"tiers": {"local": {**LOCAL, "repository": "/b"}}}})
    runner = Runner(RunOutcome("r", True, checks=[
        CheckOutcome("axe/tier_c/cold", "rotation", False, True, "expects #2"),
        CheckOutcome("axe/tier_c/cold", "rotation", True, True)], metadata=META))
    (nothing,) = backup_cold(site, ["axe"], runner)
    assert nothing.exit_code == 1 and "no cold volume is mounted" in nothing.errors[0]
    (bare,) = backup_cold(site, ["bare"], runner)
    assert bare.exit_code == 2 and bare.errors == ["tier C of bare: no tiers.cold in "
                                                   "customers.yaml"]
    (tmp_path / "axe-cold-1").mkdir()
    (tmp_path / "axe-cold-2").mkdir()
    synced = list(backup_cold(site, ["axe"], runner))
    assert runner.asked == [("axe", "axe-cold-1"), ("axe", "axe-cold-2")]
    assert synced[0].summary == "tier C axe -> axe-cold-1: 3 copied, 4 already there, 3.0 MiB, " \
                                "1.5 s"
    assert [c.name for c in synced[0].shown_checks] == ["rotation"]  # only what did not pass
    assert synced[0].exit_code == 0  # a WARN keeps 0


def test_a_failed_copy_run_shows_its_failure_and_no_checks():
    run = RunOutcome("r", False, "tier B: cannot reach realchoice", [
        CheckOutcome("axe/tier_b/realchoice", "reachable", False, False, "down")])
    outcome = CopyOutcome("B", "axe", "realchoice", run)
    assert outcome.errors == ["tier B: cannot reach realchoice"]
    assert outcome.shown_checks == [] and outcome.exit_code == 1
