"""The drill's evidence beyond this machine: its kind=drill snapshot copied to tier C, read
back by `axe drill --report --from-tier cold` once the local evidence folder is gone; the
folder itself 0700; Slack found through notify.slack when drill.slack is not set."""

from __future__ import annotations

import json
import shutil

from axe_pipelines import cli
from axe_pipelines.cold import find_volumes, sync_volume
from axe_pipelines.tiers import open_tier
from tests.e2e.drill_support import SLACK_ENV, work_dir, write_config  # noqa: F401 - fixture

COLD_ENV = "AXE_TEST_DRILL_EVIDENCE_COLD_PASSWORD"


def _site(tmp_path, server_a, server_b, work, monkeypatch, **drill):
    monkeypatch.setenv(COLD_ENV, "cold-password-for-evidence")
    (tmp_path / "Volumes" / "axe-cold-1").mkdir(parents=True)
    path, config = write_config(
        tmp_path, server_a, server_b, folders={},
        databases={"frame": {"server": "frame-postgres"}},
        drill={"work_dir": str(work), **drill},
        tiers={"cold": {"password": {"env": COLD_ENV}, "accept_plain_folders": True,
                        "mount_glob": str(tmp_path / "Volumes" / "axe-cold-*")}})
    assert cli.main(["--config", str(path), "init"]) == 0
    assert cli.main(["--config", str(path), "backup", "--local", "--plain"]) == 0
    [volume] = find_volumes(config.customer("axe").tiers.cold)
    sync_volume(config, "axe", volume)
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
