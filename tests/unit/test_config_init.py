"""customers.example.yaml is a valid starting config, and `axe config init` writes it (0600)
where asked, never over an existing file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from axe_pipelines import cli
from axe_pipelines.cli_config import EXAMPLE
from axe_pipelines.config import load_config
from axe_pipelines.definitions import build_definitions


def test_the_example_is_valid_and_shows_every_tier():
    site = load_config(EXAMPLE)
    assert site.backed_up_customers() == ["axe"] and sorted(site.peers()) == ["realchoice"]
    axe = site.customer("axe")
    assert axe.tiers.ring is not None and axe.tiers.cold is not None
    assert set(axe.databases) == {"frame", "hive", "blueprint", "index"}
    build_definitions(site)  # the code location it makes loads (every tier, the drill)
    text = EXAMPLE.read_text()
    assert text.count("\n#") > 10  # it explains itself


def test_config_init_writes_the_example_once(tmp_path: Path, capsys):
    target = tmp_path / "site" / "customers.yaml"
    assert cli.main(["config", "init", str(target)]) == 0
    assert target.read_text() == EXAMPLE.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert f"axe --config {target} config validate" in capsys.readouterr().out
    target.write_text("axe: {}  # the operator's edits\n")
    assert cli.main(["config", "init", str(target)]) == 2
    assert "already exists; axe config init never overwrites" in capsys.readouterr().err
    assert target.read_text() == "axe: {}  # the operator's edits\n"


@pytest.mark.parametrize("how", ["config", "env"])
def test_config_init_defaults_to_where_axe_reads(tmp_path: Path, monkeypatch, how: str):
    target = tmp_path / "from-" / f"{how}.yaml"
    monkeypatch.delenv("AXE_CONFIG", raising=False)
    if how == "config":
        argv = ["--config", str(target), "config", "init"]
    else:
        monkeypatch.setenv("AXE_CONFIG", str(target))
        argv = ["config", "init"]
    assert cli.main(argv) == 0 and target.is_file()
    assert cli.main([*argv[:2], "config", "validate"] if how == "config"
                    else ["config", "validate"]) == 0
