"""Alerts and repository care, the pure pieces: what a failed run's message says and whom it
is for, where an alert goes, the retention/check settings in customers.yaml, which
repositories the weekly care looks after, the week's read-data part, the one stale-lock
decision, and `axe prune` / `axe check` argument handling."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from axe_pipelines.actions.check import week_subset
from axe_pipelines.care.repositories import tier_repositories
from axe_pipelines.cli_care import _tiers
from axe_pipelines.config import ConfigError, Site, parse_config
from axe_pipelines.config_ops import alert_destinations, webserver_base_url
from axe_pipelines.errors import UsageError
from axe_pipelines.names import customer_of_job, inbound_key
from axe_pipelines.restic import LockHolder, Repository, RepositoryLocked, Restic
from axe_pipelines.secrets import EnvSource
from axe_pipelines.sensors.alerts import FailedStep, failure_facts, key_owner, run_customer


def site(**axe: Any) -> Site:
    body = {"folders": {"f": {"path": "/srv/f"}},
            "tiers": {"local": {"repository": "/srv/repo", "password": {"env": "P"}}}}
    body.update(axe)
    return parse_config({
        "axe": body,
        "axe-b": {"folders": {"f": {"path": "/srv/g"}},
                  "tiers": {"local": {"repository": "/srv/repo-b", "password": {"env": "P"}}}},
        "realchoice": {"ring_backup": {
            "ssh_user": "r", "ssh_fqdn": "r.invalid", "receive_dir_at_peer": "/x/",
            "receive_dir_at_self": "/srv/peer"}}})


HOOK = {"webhook": {"env": "AXE_HOOK"}}


def test_a_tier_b_failure_says_the_asset_and_the_failures_own_reason():
    step = FailedStep("axe__tier_b__realchoice",
                      "tier B: cannot reach realchoice (127.0.0.1: ssh exit 255, connection "
                      "refused); local tier unaffected; retry at 03:30",
                      {"ssh_exit": 255},
                      "Exceeded max_retries of 1\n\nStack Trace:\n  File x\n")
    item, reason = failure_facts(step, ["axe/tier_b/realchoice"], "Steps failed: [...]")
    assert item == "axe/tier_b/realchoice"
    assert reason.startswith("tier B: cannot reach realchoice") and "max_retries" not in reason


def test_a_tier_a_failure_names_the_items_that_failed():
    step = FailedStep("axe_tier_a_backup", "tier A of axe: 2 of 5 item(s) failed; the others "
                      "were backed up\ndb/frame: ...",
                      {"failed": ["db/frame: pg_dump: error: connection refused",
                                  "files/files: folder /srv/f is missing"]})
    item, reason = failure_facts(step, ["axe/db/frame/dump", "axe/files/files"], None)
    assert item == "db/frame, files/files"
    assert reason == "db/frame: pg_dump: error: connection refused (and 1 more)"


def test_an_error_without_a_failure_keeps_its_cause_not_the_wrapper():
    error = ("dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred while "
             "executing op \"x\":\n\nStack Trace:\n  File \"a.py\"\n\nThe above exception was "
             "caused by the following exception:\nKeyError: 'frame'\n")
    assert failure_facts(FailedStep("x", error=error), [], None) == ("x", "KeyError: 'frame'")
    assert failure_facts(None, [], "Run was canceled")[0] is None


def test_whom_a_run_or_an_asset_is_about():
    s = site()
    assert key_owner(s, ["axe-b", "tier_a", "nightly_set"]) == "axe-b"
    assert key_owner(s, list(inbound_key("realchoice").path)) == "realchoice"
    assert key_owner(s, ["peers", "realchoice", "inbound"]) == "realchoice"  # before issue 11
    assert key_owner(s, list(inbound_key("nobody").path)) is None  # not a peer of this site
    assert key_owner(s, ["other"]) is None
    assert customer_of_job("axe_b_retention", ["axe", "axe-b"]) == "axe-b"
    assert customer_of_job("axe_tier_a", ["axe", "axe-b"]) == "axe"
    assert customer_of_job("restore", ["axe", "axe-b"]) is None
    assert run_customer(s, "__ephemeral_asset_job__", ["axe/tier_b/realchoice"], {}) == "axe"
    restore = {"ops": {"restore_op": {"config": {"customer": "axe-b", "dry_run": False}}}}
    assert run_customer(s, "restore", [], restore) == "axe-b"
    assert run_customer(s, "restore", [], {}) is None


def test_alerts_go_to_notify_else_the_drills_slack_and_site_alerts_to_every_one():
    s = site(notify={"slack": HOOK, "webserver_base_url": "http://ui:3000/"})
    [dest] = alert_destinations(s, "axe")
    assert dest.webhook == EnvSource(env="AXE_HOOK")
    assert alert_destinations(s, "axe-b") == []  # nothing configured: only logged
    assert alert_destinations(s, "realchoice") == [dest]  # a peer's: every destination
    assert webserver_base_url(s, "axe") == "http://ui:3000"
    assert webserver_base_url(s, "axe-b") == "http://ui:3000"  # one UI per site
    drill_only = site(drill={"slack": HOOK})
    assert alert_destinations(drill_only, "axe") == [drill_only.customer("axe").drill.slack]


def test_retention_and_check_parts_are_tier_settings_with_clear_errors():
    s = site(tiers={"local": {"repository": "/srv/repo", "password": {"env": "P"},
                              "retention": {"keep_daily": 7, "keep_within": "30d"},
                              "check_read_parts": 4}})
    local = s.customer("axe").tiers.local
    assert local.retention.describe() == "daily 7, within 30d" and local.check_read_parts == 4
    assert site().customer("axe").tiers.local.check_read_parts == 12
    with pytest.raises(ConfigError) as info:
        site(tiers={"local": {"repository": "/srv/repo", "password": {"env": "P"},
                              "retention": {"keep_hourly": 3}, "check_read_parts": 0}})
    text = str(info.value)
    assert "retention.keep_hourly" in text and "check_read_parts" in text
    with pytest.raises(ConfigError, match="webserver_base_url"):
        site(notify={"webserver_base_url": "dagster:3000"})


def test_the_weekly_care_looks_after_tier_a_and_mounted_cold_volumes_only(tmp_path: Path):
    vols = tmp_path / "vols"
    for n in (1, 2):
        (vols / f"axe-cold-{n}").mkdir(parents=True)
    (vols / "axe-cold-1" / "restic-repo").mkdir()
    (vols / "axe-cold-1" / "restic-repo" / "config").write_text("x")  # synced once
    s = site(tiers={"local": {"repository": "/srv/repo", "password": {"env": "P"}},
                    "cold": {"password": {"env": "C"}, "mount_glob": str(vols / "axe-cold-*"),
                             "accept_plain_folders": True, "check_read_parts": 3}})
    repos = tier_repositories(s, "axe")
    assert [r.label for r in repos] == ["axe tier A", "axe tier C on axe-cold-1"]
    assert [r.policy for r in repos] == [None, None]
    assert tier_repositories(s, "axe", ["cold"])[0].open().repo.location.endswith(
        "axe-cold-1/restic-repo")
    # The part read turns with the customer's week: three weeks read all three parts.
    weeks = [datetime(2026, 5, d, 12, tzinfo=UTC) for d in (18, 25)] + [
        datetime(2026, 6, 1, 12, tzinfo=UTC)]
    assert sorted(week_subset(repos[1], w) for w in weeks) == ["1/3", "2/3", "3/3"]


def test_axe_prune_and_check_take_the_operators_tier_words():
    assert _tiers(None) == ["local", "ring", "cold"]
    assert _tiers(["c", "A"]) == ["local", "cold"]
    with pytest.raises(UsageError, match="unknown tier 'd'"):
        _tiers(["d"])


class _Recorder(Restic):
    """A Restic whose calls are recorded instead of run (the decision is what is tested)."""

    def __init__(self) -> None:
        super().__init__(Repository("/nowhere", EnvSource(env="P"), "test repo"),
                         binary="/bin/false")
        self.calls: list[list[str]] = []

    def run(self, args, **kwargs) -> str:  # type: ignore[override]
        self.calls.append(list(args))
        return ""


def test_one_stale_lock_policy_only_a_dead_process_on_this_host():
    gone = subprocess.Popen(["true"])
    gone.wait()
    here = socket.gethostname()
    restic = _Recorder()

    def met(holder: LockHolder | None) -> RepositoryLocked:
        return RepositoryLocked("locked", holder=holder)

    assert restic.clear_stale_locks(met(LockHolder(os.getpid(), here, "u", "t"))) == []
    assert restic.clear_stale_locks(met(LockHolder(gone.pid, "elsewhere", "u", "t"))) == []
    assert restic.clear_stale_locks(met(None)) == []
    assert restic.calls == []  # a live, foreign or unknown holder: nothing removed
    stale = LockHolder(gone.pid, here, "u", "t")
    assert restic.clear_stale_locks(met(stale)) == [stale]
    assert restic.calls == [["unlock"]]  # restic's unlock: stale locks only, no --remove-all
