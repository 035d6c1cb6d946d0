"""The alert sensors against a real Dagster instance (SQLite in a DAGSTER_HOME of the test),
real runs of the code location's jobs, the real restic binary and the local Slack stand-in
(tests/slack_catcher.py): a failing tier-B run (the peer's port refuses ssh), a failed
coverage check (a required folder missing) and a tier gone stale (the freshness daemon's own
evaluation, 30 h later) each reach Slack as exactly one message, and a second tick sends
nothing more. A Slack that is down costs a bounded wait, is logged and fails nothing."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from axe_pipelines.config import Site, load_config
from axe_pipelines.definitions import build_definitions
from axe_pipelines.names import (
    ALERT_SENSOR,
    RUN_FAILURE_SENSOR,
    location_name,
    set_key,
    tier_a_job,
    tier_b_job,
)
from axe_pipelines.postgres.cluster import free_port
from tests.conftest import REPO_PASSWORD_ENV
from tests.slack_catcher import SlackCatcher

HOOK_ENV = "AXE_TEST_ALERT_WEBHOOK"
UI = "http://dagster.test:3000"


def write_site(root: Path, *, slack: dict[str, Any] | None = None) -> Site:
    """A customer with one required folder (no database: no server needed), tier A, and a
    ring peer whose ssh port refuses connections."""
    files = root / "files"
    files.mkdir(exist_ok=True)
    (files / "contract.txt").write_text("contract\n" * 50)
    notify: dict[str, Any] = {"webserver_base_url": UI}
    if slack is not None:
        notify["slack"] = slack
    data = {
        "axe": {
            "folders": {"files": {"path": str(files), "required": True}},
            "tiers": {"local": {"repository": str(root / "repo"),
                                "password": {"env": REPO_PASSWORD_ENV}},
                      "ring": {"connect_timeout_s": 2, "retries": 1, "retry_delay_s": 0}},
            "notify": notify,
        },
        "realchoice": {"ring_backup": {
            "ssh_user": "realchoice", "ssh_fqdn": "realchoice.invalid",
            "ssh_ip": "127.0.0.1", "ssh_port": free_port(),
            "receive_dir_at_peer": "/Users/realchoice/peer-backups/axe/",
            "receive_dir_at_self": str(root / "inbound" / "realchoice")}},
    }
    path = root / "customers.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackCatcher]:
    with SlackCatcher("ok") as catcher:
        monkeypatch.setenv(HOOK_ENV, catcher.webhook_url("T0AXE/B0AXE/alertsecret"))
        yield catcher


@pytest.fixture
def world(tmp_path: Path, slack: SlackCatcher, dagster_home: Path,
          restic_bin: str) -> tuple[Site, dg.Definitions, dg.DagsterInstance]:
    site = write_site(tmp_path, slack={"webhook": {"env": HOOK_ENV}, "timeout_s": 5,
                                       "retries": 2, "backoff_s": 0})
    from axe_pipelines.backup import local_restic

    local_restic("axe", site.customer("axe")).init()
    return site, build_definitions(site), dg.DagsterInstance.get()


def tick(defs: dg.Definitions, name: str, instance: dg.DagsterInstance,
         cursor: str | None) -> str | None:
    """One evaluation of a sensor as the daemon makes it, from inside the code location (its
    origin and repository name set: a run-status sensor compares them with each run's
    origin); return the cursor it leaves."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(
        module_name="axe_pipelines.definitions", attribute="defs"),
        location_name=location_name())
    context = dg.SensorEvaluationContext(instance_ref=None, cursor=cursor,
                                         repository_name="__repository__", instance=instance,
                                         definitions=defs, code_location_origin=origin)
    return defs.resolve_sensor_def(name).evaluate_tick(context).cursor


def run_job(defs: dg.Definitions, name: str,
            instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False)


def texts(slack: SlackCatcher) -> list[str]:
    return [json.dumps(c.json) for c in slack.requests]


def test_a_failing_tier_b_run_is_one_message_with_its_reason_and_link(world, slack):
    site, defs, instance = world
    assert run_job(defs, tier_a_job("axe"), instance).success
    cursor = tick(defs, RUN_FAILURE_SENSOR, instance, None)  # starts after what ran before
    assert slack.requests == []

    failed = run_job(defs, tier_b_job("axe"), instance)
    assert not failed.success
    cursor = tick(defs, RUN_FAILURE_SENSOR, instance, cursor)
    cursor = tick(defs, RUN_FAILURE_SENSOR, instance, cursor)  # the same failure: no repeat
    tick(defs, RUN_FAILURE_SENSOR, instance, cursor)

    assert len(slack.requests) == 1
    (text,) = texts(slack)
    assert "axe: axe_tier_b failed at axe/tier_b/realchoice" in text
    assert "cannot reach realchoice" in text and "ssh exit 255" in text
    assert "max_retries" not in text and "Traceback" not in text and "Stack" not in text
    assert f"{UI}/runs/{failed.run_id}" in text
    assert "alertsecret" not in text


def test_a_failing_cli_backup_is_one_message_and_the_sensor_adds_none(world, slack, capsys):
    # `axe backup` runs in-process (no code location origin): a daemon's sensor would skip
    # it, and a cron-only site runs no sensor; the command posts it itself, once, after
    # tiers.ring.retries (1 here) attempts.
    from axe_pipelines.cli import main

    site, defs, instance = world
    assert main(["--config", str(site.path), "backup", "--local"]) == 0
    cursor = tick(defs, RUN_FAILURE_SENSOR, instance, None)
    assert main(["--config", str(site.path), "backup", "--ring"]) == 1
    assert len(slack.requests) == 1
    (text,) = texts(slack)
    assert "axe: axe_tier_b failed at axe/tier_b/realchoice" in text
    assert "cannot reach realchoice" in text and "alertsecret" not in text
    runs = instance.get_runs(dg.RunsFilter(job_name=tier_b_job("axe")))
    assert len(runs) == 2 and f"/runs/{runs[0].run_id}" in text  # the last attempt's

    cursor = tick(defs, RUN_FAILURE_SENSOR, instance, cursor)  # sees both failed runs
    tick(defs, RUN_FAILURE_SENSOR, instance, cursor)
    assert len(slack.requests) == 1


def test_a_failed_cli_drill_run_is_one_message(world, slack, monkeypatch):
    # A drill run fails only when it cannot run at all: here a tier word that the CLI's own
    # validation would refuse first, let through to reach the run.
    from axe_pipelines import cli_drill
    from axe_pipelines.cli import main

    site, defs, instance = world
    cursor = tick(defs, RUN_FAILURE_SENSOR, instance, None)
    monkeypatch.setattr(cli_drill, "_validate", lambda *args: None)
    assert main(["--config", str(site.path), "drill", "--tier", "nosuch"]) == 1
    assert len(slack.requests) == 1
    (text,) = texts(slack)
    # The drill runs as its named job (issue 11), so the message names it.
    assert "axe: axe_restore_drill failed at axe/drill/restore_drill" in text
    assert "nosuch" in text
    tick(defs, RUN_FAILURE_SENSOR, instance, cursor)
    assert len(slack.requests) == 1


def test_a_failed_coverage_check_is_one_message(world, slack, tmp_path: Path):
    site, defs, instance = world
    shutil.rmtree(tmp_path / "files")  # the required folder is gone: a coverage gap
    result = run_job(defs, tier_a_job("axe"), instance)
    assert not result.success
    [coverage] = [c for c in result.get_asset_check_evaluations() if c.check_name == "coverage"]
    assert not coverage.passed

    cursor = tick(defs, ALERT_SENSOR, instance, None)
    tick(defs, ALERT_SENSOR, instance, cursor)

    assert len(slack.requests) == 1
    (text,) = texts(slack)
    key = set_key("axe").to_user_string()
    assert f"axe: check coverage ERROR on {key}" in text and "files" in text
    assert f"{UI}/assets/{key}?view=checks" in text


def _evaluate_freshness(instance: dg.DagsterInstance, at: datetime) -> None:
    """One iteration of Dagster's freshness daemon over this code location, at time `at`."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.freshness import FreshnessDaemon

    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(
        module_name="axe_pipelines.definitions", attribute="defs"))
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([origin])) as ctx, \
            freeze_time(at):
        list(FreshnessDaemon().run_iteration(ctx))


def test_a_stale_tier_is_one_message(world, slack, monkeypatch):
    site, defs, instance = world
    monkeypatch.setenv("AXE_CONFIG", str(site.path))
    assert run_job(defs, tier_a_job("axe"), instance).success
    _evaluate_freshness(instance, datetime.now(UTC))
    cursor = tick(defs, ALERT_SENSOR, instance, None)
    assert slack.requests == []  # fresh: nothing to say

    _evaluate_freshness(instance, datetime.now(UTC) + timedelta(hours=30))
    cursor = tick(defs, ALERT_SENSOR, instance, cursor)
    _evaluate_freshness(instance, datetime.now(UTC) + timedelta(hours=31))  # still stale
    tick(defs, ALERT_SENSOR, instance, cursor)

    assert len(slack.requests) == 1  # the tier, not each of its items
    (text,) = texts(slack)
    assert f"axe: {set_key('axe').to_user_string()} freshness FAIL" in text
    assert "last updated" in text


def test_slack_down_is_bounded_logged_and_fails_nothing(tmp_path, dagster_home, restic_bin,
                                                         monkeypatch, caplog):
    with SlackCatcher("500") as down:
        monkeypatch.setenv(HOOK_ENV, down.webhook_url("T0AXE/B0AXE/alertsecret"))
        site = write_site(tmp_path, slack={"webhook": {"env": HOOK_ENV}, "timeout_s": 2,
                                           "retries": 2, "backoff_s": 0})
        defs, instance = build_definitions(site), dg.DagsterInstance.get()
        shutil.rmtree(tmp_path / "files")
        from axe_pipelines.backup import local_restic

        local_restic("axe", site.customer("axe")).init()
        run_job(defs, tier_a_job("axe"), instance)
        caplog.set_level(logging.INFO)
        cursor = tick(defs, ALERT_SENSOR, instance, None)  # does not raise
        tick(defs, ALERT_SENSOR, instance, cursor)
        assert len(down.requests) == 2  # two attempts, then given up; not again next tick
        assert "not delivered after 2 attempts: HTTP 500" in caplog.text
        assert "alertsecret" not in caplog.text


def test_once_a_destination_failed_in_a_tick_the_rest_wait_for_the_next(tmp_path, monkeypatch):
    from axe_pipelines.notify import Message
    from axe_pipelines.sensors.alerts import Alert, alert_tick

    with SlackCatcher("500") as flaky:
        monkeypatch.setenv(HOOK_ENV, flaky.webhook_url("T0AXE/B0AXE/alertsecret"))
        site = write_site(tmp_path, slack={"webhook": {"env": HOOK_ENV}, "timeout_s": 2,
                                           "retries": 2, "backoff_s": 0})
        alerts = [Alert(f"check:{n}", "axe", Message(summary=f"alert {n}", ok=False))
                  for n in (1, 2)]
        lines: list[str] = []
        handled, cursor = alert_tick(site, alerts, None, lines.append)
        assert handled == 1 and len(flaky.requests) == 2  # alert 1 given up; 2 not tried
        flaky.mode = "ok"
        handled, cursor = alert_tick(site, alerts, cursor, lines.append)
        assert handled == 1 and len(flaky.requests) == 3  # alert 2 now; alert 1 not again
        assert "alert 2" in json.dumps(flaky.requests[-1].json)
        assert alert_tick(site, alerts, cursor, lines.append)[0] == 0
        assert any("not delivered after 2 attempts" in line for line in lines)
