"""Damage the drill meets is recorded where `axe status` and `axe doctor` look, and said in
the Slack summary in words: tier A's pack files cut short, the drill served by tier C."""

from __future__ import annotations

import os

from axe_pipelines import cli
from axe_pipelines.damage import recorded_damage
from axe_pipelines.tiers import open_tier
from tests.e2e.drill_support import (  # noqa: F401 - work_dir is a fixture
    SLACK_ENV,
    cold_volume,
    sync_cold,
    work_dir,
    write_config,
)
from tests.slack_catcher import SlackCatcher


def test_damage_met_by_the_drill_shows_in_status_and_in_slacks_summary(
        tmp_path, server_a, server_b, work_dir, dagster_home, monkeypatch, capsys):  # noqa: F811
    with SlackCatcher("ok") as slack:
        monkeypatch.setenv(SLACK_ENV, slack.webhook_url("T0/B0/damage"))
        path, config = write_config(
            tmp_path, server_a, server_b, folders={},
            databases={"frame": {"server": "frame-postgres"}},
            drill={"work_dir": str(work_dir), "slack": {"webhook": {"env": SLACK_ENV}}},
            tiers=cold_volume(tmp_path, monkeypatch))
        axe = ["--config", str(path)]
        assert cli.main([*axe, "init"]) == 0
        assert cli.main([*axe, "backup", "--local", "--plain"]) == 0
        sync_cold(config)
        for pack in (tmp_path / "repo" / "data").rglob("*"):
            if pack.is_file():  # a disk that lost the packs' tails
                os.chmod(pack, 0o600)
                os.truncate(pack, pack.stat().st_size // 2)
        capsys.readouterr()
        assert cli.main([*axe, "drill", "--as-of", "latest"]) == 0  # served by tier C
        out = capsys.readouterr().out
        [message] = slack.wait_for(1)

    assert "damage: tier A is damaged: pack " in out
    summary = message.json["text"]
    assert "restore drill passed, but tier A is damaged: pack " in summary, summary
    location = open_tier(config, "axe", "local", None).repo.location
    assert recorded_damage(location)
    assert cli.main([*axe, "status"]) == 1
    assert "DAMAGED" in capsys.readouterr().out
