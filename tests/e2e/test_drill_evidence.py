"""The drill's evidence beyond this machine: its kind=drill snapshot copied to tier C, read
back by `axe drill --report --from-tier cold` once the local evidence folder is gone; the
folder itself 0700; Slack found through notify.slack when drill.slack is not set."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import yaml

from axe_pipelines import cli
from axe_pipelines.actions.drill import DrillOptions, finish_drill, run_drill
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.config import load_config
from axe_pipelines.tiers import open_tier
from tests.e2e.drill_support import (  # noqa: F401 - work_dir is a fixture
    SLACK_ENV,
    cold_volume,
    sync_cold,
    work_dir,
    write_config,
)
from tests.e2e.test_drill_faults import _now
from tests.slack_catcher import SlackCatcher


def _site(tmp_path, server_a, server_b, work, monkeypatch, **drill):
    path, config = write_config(
        tmp_path, server_a, server_b, folders={},
        databases={"frame": {"server": "frame-postgres"}},
        drill={"work_dir": str(work), **drill},
        tiers=cold_volume(tmp_path, monkeypatch))
    assert cli.main(["--config", str(path), "init"]) == 0
    assert cli.main(["--config", str(path), "backup", "--local", "--plain"]) == 0
    sync_cold(config)
    return path, config


def test_evidence_reaches_tier_c_and_is_read_back_from_it(
        tmp_path, server_a, server_b, work_dir, dagster_home, monkeypatch, capsys):  # noqa: F811
    path, config = _site(tmp_path, server_a, server_b, work_dir, monkeypatch)
    capsys.readouterr()
    assert cli.main(["--config", str(path), "drill", "--as-of", "latest"]) == 0
    out = capsys.readouterr().out
    assert "evidence in cold: copied" in out
    [folder] = list((tmp_path / "evidence" / "axe").iterdir())
    evidence_id = json.loads((folder / "drill.json").read_text())["evidence_snapshot"]
    cold = open_tier(config, "axe", "cold", None)
    [copy] = cold.snapshots(tags=["customer=axe", "kind=drill"])
    assert copy.original == evidence_id

    shutil.rmtree(tmp_path / "evidence")  # this machine's evidence folder is gone
    assert cli.main(["--config", str(path), "drill", "--report"]) == 0
    assert "no drill recorded" in capsys.readouterr().out
    assert cli.main(["--config", str(path), "drill", "--report", "--from-tier", "cold"]) == 0
    past = capsys.readouterr().out
    assert past.count("drill of axe at ") == 1 and "db/frame" in past and "passed" in past


def _folder_only(tmp_path, server_a, server_b, work, **extra):
    """One folder (no staging server needed), backed up into tier A; `extra` is merged into
    the customer's customers.yaml entry."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a\n" * 1000)
    path, _ = write_config(tmp_path, server_a, server_b, databases={},
                           folders={"files": {"path": str(files)}},
                           drill={"work_dir": str(work)})
    data = yaml.safe_load(path.read_text())
    data["axe"].update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(path)
    local_restic("axe", config.customer("axe")).init()
    assert run_tier_a("axe", config.customer("axe"), at=_now(), run_id="run-1").ok
    return config


def test_without_drill_slack_the_report_goes_to_notify_slack(
        tmp_path, server_a, server_b, work_dir, monkeypatch):  # noqa: F811
    with SlackCatcher("ok") as slack:
        monkeypatch.setenv(SLACK_ENV, slack.webhook_url("T0/B0/notify"))
        config = _folder_only(tmp_path, server_a, server_b, work_dir,
                              notify={"slack": {"webhook": {"env": SLACK_ENV}}})
        assert config.customer("axe").drill.slack is None
        report = finish_drill(config, "axe", run_drill(config, "axe",
                                                       DrillOptions(as_of="latest")))
        [message] = slack.wait_for(1)
    assert "restore drill passed" in message.json["text"]
    assert "delivered" in report.slack and "not sent" not in report.slack


def test_the_evidence_folder_is_0700_whatever_the_umask(
        tmp_path, server_a, server_b, work_dir):  # noqa: F811
    config = _folder_only(tmp_path, server_a, server_b, work_dir)
    old = os.umask(0o022)
    try:
        report = finish_drill(config, "axe", run_drill(config, "axe",
                                                       DrillOptions(as_of="latest")))
    finally:
        os.umask(old)
    folder = Path(report.evidence_dir)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700  # evidence_dir/<customer>
    assert (folder / "drill.json").is_file() and report.evidence_snapshot
