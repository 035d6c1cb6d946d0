"""The drill's own faults, for real: its staging server cannot start (the port is taken, the
disk is full on a tiny tmpfs), Slack answers 500 / refuses / hangs, Ctrl-C mid-drill. Each
ends with a clear line, nothing left running, no staging folder left behind."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from axe_pipelines import cli
from axe_pipelines.actions.drill import DrillOptions, finish_drill, run_drill
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.names import drill_key
from tests.e2e.drill_support import (
    SLACK_ENV,
    leftovers,
    staging_processes,
    work_dir,  # noqa: F401 - fixture
    write_config,
)
from tests.slack_catcher import SlackCatcher

FAST_SLACK = {"timeout_s": 0.5, "retries": 3, "backoff_s": 0.05}
CHECK = dg.AssetCheckKey(drill_key("axe"), "restorable_everywhere")


def _one_database(tmp_path, server_a, server_b, work: Path, **drill):
    path, config = write_config(tmp_path, server_a, server_b, folders={},
                                databases={"frame": {"server": "frame-postgres"}},
                                drill={"work_dir": str(work), **drill})
    local_restic("axe", config.customer("axe")).init()
    return path, config


def test_port_taken_is_a_clear_error_and_leaves_nothing(tmp_path, server_a, server_b,
                                                        work_dir, dagster_home, capsys):  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path, _ = _one_database(tmp_path, server_a, server_b, work_dir, staging_port=port)
        assert cli.main(["--config", str(path), "drill", "--as-of", "latest"]) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "could not run" in ln)
    assert f"PostgreSQL did not start on 127.0.0.1:{port}" in line
    assert "Address already in use" in line and "unset drill.staging_port" in line
    assert "nothing is left running" in line
    assert "restorable_everywhere: FAILED (the drill could not run" in out
    assert leftovers(work_dir) == [] and staging_processes(work_dir) == []


def test_disk_full_is_a_clear_error_and_leaves_nothing(tmp_path, server_a, server_b,
                                                       work_dir):  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "axe-drill-test",
                    str(work_dir)], check=True)
    try:
        _, config = _one_database(tmp_path, server_a, server_b, work_dir)
        report = run_drill(config, "axe", DrillOptions(as_of="latest"))
        assert report.fatal is not None and not report.ok
        assert "No space left on device" in report.fatal
        assert f"free space in {work_dir}, or point drill.work_dir" in report.fatal
        assert report.items[0].attempts[0].reason == "the staging server did not start"
        assert leftovers(work_dir) == [] and staging_processes(work_dir) == []
    finally:
        subprocess.run(["umount", str(work_dir)], check=True)


@pytest.mark.parametrize("mode", ["500", "refused", "hang"])
def test_slack_outage_never_changes_the_drill(tmp_path, server_a, server_b, work_dir,  # noqa: F811
                                              monkeypatch, caplog, mode):
    """One folder (no staging needed): the drill passes whatever Slack does; the outage is
    retried a bounded number of times, logged once and recorded in the evidence."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a\n" * 1000)
    with SlackCatcher(mode, hang_s=5) as slack:
        monkeypatch.setenv(SLACK_ENV, slack.webhook_url("T0/B0/outage"))
        _, config = write_config(tmp_path, server_a, server_b, databases={},
                                 folders={"files": {"path": str(files)}},
                                 drill={"work_dir": str(work_dir), "slack": {
                                     "webhook": {"env": SLACK_ENV}, **FAST_SLACK}})
        customer = config.customer("axe")
        local_restic("axe", customer).init()
        assert run_tier_a("axe", customer, at=_now(), run_id="run-1").ok
        report = run_drill(config, "axe", DrillOptions(as_of="latest"))
        assert report.ok
        proven = [dataclasses.asdict(i) for i in report.items]
        caplog.set_level(logging.WARNING, logger="axe_pipelines.notify.slack")
        started = time.monotonic()
        finish_drill(config, "axe", report)
        took = time.monotonic() - started
        tries = len(slack.requests)
    # finish_drill left the proof as it was, and the evidence records it as passed.
    assert [dataclasses.asdict(i) for i in report.items] == proven and report.ok
    recorded = json.loads((Path(report.evidence_dir) / "drill.json").read_text())
    assert recorded["ok"] is True and "not delivered" in recorded["slack"]
    assert "not delivered after 3 attempts" in report.slack
    assert tries == (0 if mode == "refused" else 3)
    assert took < 15  # three bounded attempts, the evidence backup included
    warnings = [r for r in caplog.records if r.name == "axe_pipelines.notify.slack"]
    assert len(warnings) == 1 and "outage" not in warnings[0].getMessage()
    assert report.evidence_snapshot  # the result is recorded either way


@pytest.mark.parametrize("mode", ["500", "refused"])
def test_axe_drill_exits_and_checks_the_same_whatever_slack_does(
        tmp_path, server_a, server_b, work_dir, dagster_home, monkeypatch, capsys,  # noqa: F811
        mode):
    """`axe drill` end to end, once with Slack answering and once with it down: the same
    exit code and the same restorable_everywhere result, recorded in the Dagster home."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a\n" * 1000)
    results = {}
    for slack_mode in ("ok", mode):
        with SlackCatcher(slack_mode) as slack:
            monkeypatch.setenv(SLACK_ENV, slack.webhook_url("T0/B0/outage"))
            path, config = write_config(tmp_path, server_a, server_b, databases={},
                                        folders={"files": {"path": str(files)}},
                                        drill={"work_dir": str(work_dir), "slack": {
                                            "webhook": {"env": SLACK_ENV}, **FAST_SLACK}})
            local_restic("axe", config.customer("axe")).init()
            assert run_tier_a("axe", config.customer("axe"), at=_now(), run_id="run-1").ok
            capsys.readouterr()
            code = cli.main(["--config", str(path), "drill", "--as-of", "latest"])
            out = capsys.readouterr().out
        check = dg.DagsterInstance.get().event_log_storage \
            .get_latest_asset_check_execution_by_key([CHECK])[CHECK]
        evaluation = check.event.dagster_event.event_specific_data
        line = next(ln for ln in out.splitlines() if "restorable_everywhere" in ln)
        slack_line = next(ln for ln in out.splitlines() if ln.startswith("  slack: "))
        results[slack_mode] = (code, line, evaluation.passed, "delivered" in slack_line
                               and "not delivered" not in slack_line)
    assert results["ok"] == (0, "check axe/drill/restore_drill:restorable_everywhere: ok",
                             True, True)
    assert results[mode][:3] == results["ok"][:3] and results[mode][3] is False


def _now():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Asia/Seoul")).replace(microsecond=0)


def test_ctrl_c_mid_drill_tears_staging_down_and_exits_130(tmp_path, server_a, server_b,
                                                           work_dir, dagster_home):  # noqa: F811
    mark = tmp_path / "check-started"
    path, config = write_config(
        tmp_path, server_a, server_b, folders={}, drill={"work_dir": str(work_dir)},
        databases={"frame": {"server": "frame-postgres", "integrity": [
            {"name": "slow", "timeout": 120,
             "command": ["sh", "-c", f"echo $PGPORT > {mark}; sleep 60"]}]}})
    customer = config.customer("axe")
    local_restic("axe", customer).init()
    assert run_tier_a("axe", customer, at=_now(), run_id="run-1").ok
    proc = subprocess.Popen([sys.executable, "-m", "axe_pipelines.cli", "--config", str(path),
                             "drill", "--as-of", "latest"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mark.exists(), proc.communicate(timeout=5)
        port = int(mark.read_text())
        assert leftovers(work_dir) and staging_processes(work_dir)  # mid-drill: it is up
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("axe: interrupted")
    assert leftovers(work_dir) == [] and staging_processes(work_dir) == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nobody listens there any more


def test_the_drills_own_staging_server_wants_its_random_password(work_dir):  # noqa: F811
    """A throwaway staging server: 0700 folder, scram over TCP with a random password (a
    wrong one is refused), and nothing of it after the block."""
    from axe_pipelines.actions.drill_staging import DrillStaging
    from axe_pipelines.config import Server
    from axe_pipelines.postgres.client import Connection, PostgresError
    from axe_pipelines.secrets import EnvSource

    with DrillStaging(parent=work_dir) as staging:
        root = staging.root
        assert root is not None and (root.stat().st_mode & 0o777) == 0o700
        assert staging.connection("postgres").psql("SELECT 1;") == [["1"]]
        port = staging.server.port
        os.environ["AXE_TEST_WRONG_PW"] = "not-the-password"
        try:
            wrong = Connection("x", Server(host="127.0.0.1", port=port, user="postgres",
                                           password=EnvSource(env="AXE_TEST_WRONG_PW")),
                               "postgres")
            with pytest.raises(PostgresError, match="password authentication failed"):
                wrong.psql("SELECT 1;")
        finally:
            del os.environ["AXE_TEST_WRONG_PW"]
    assert not root.exists() and leftovers(work_dir) == []
    assert staging_processes(work_dir) == []
