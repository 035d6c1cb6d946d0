"""customers.yaml: the runbook's shape parses; every kind of bad input names its field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from axe_pipelines.cli import main
from axe_pipelines.config import ConfigError, load_config

SEED_RING_BLOCK = """
realchoice:
  ring_backup:
    ssh_user: "realchoice"
    ssh_fqdn: "realchoice-macmini.tail090015.ts.net"
    ssh_ip: "100.114.161.51"
    receive_dir_at_peer: "/Users/realchoice/peer-backups/axe/"
    receive_dir_at_self: "/Users/axe/.axe/backups/peer/realchoice/"
    restic_version: "0.18.1"
    disk_available_gib: 43
    bidirectional_ssh: true
"""

GOOD = """
axe:
  timezone: Asia/Seoul
  servers:
    frame-postgres:
      exec: [docker, exec, -i, -e, PGPASSWORD, frame-postgres]
      user: frame
      password: {keychain: axe.frame.db}
    index-postgres: {host: /var/run/postgresql, port: 5433, user: index}
  databases:
    frame: {server: frame-postgres}
    index: {server: index-postgres, format: plain}
  folders:
    files:
      path: /Users/axe/.local/files
      excludes_file: /Users/axe/.axe/bin/restic-excludes
      required: true
  tiers:
    local:
      repository: /Users/axe/.axe/backups/local/
      password: {keychain: axe.backup.restic.local}
""" + SEED_RING_BLOCK


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "customers.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value.problems


def test_runbook_shape_parses_with_the_ring_block_verbatim(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    axe = config.customer("axe")
    assert axe.tiers.local.schedule == "0 3 * * *"
    assert axe.servers["frame-postgres"].exec[:2] == ["docker", "exec"]
    assert axe.databases["index"].format == "plain"
    ring = config.peers()["realchoice"]
    assert (ring.ssh_fqdn, ring.ssh_ip, ring.disk_available_gib) == (
        "realchoice-macmini.tail090015.ts.net", "100.114.161.51", 43)
    assert ring.bidirectional_ssh is True
    assert config.backed_up_customers() == ["axe"]


def test_broken_yaml_names_line_and_column(tmp_path):
    found = problems(tmp_path, "axe:\n  servers: [unclosed\n  databases: {}\n")
    assert len(found) == 1 and "not valid YAML at line" in found[0]


def test_unknown_key_is_an_error_with_its_path(tmp_path):
    found = problems(tmp_path, GOOD.replace("format: plain", "fromat: plain"))
    assert found == ["axe.databases.index.fromat: unknown key (check the spelling; see README "
                     "'customers.yaml')"]


def test_missing_required_field(tmp_path):
    found = problems(tmp_path, GOOD.replace("      repository: /Users/axe/.axe/backups/local/\n",
                                            ""))
    assert found == ["axe.tiers.local.repository: required field is missing"]


def test_bad_timezone_and_bad_cron_are_both_reported(tmp_path):
    text = GOOD.replace("timezone: Asia/Seoul", "timezone: Asia/Sooul").replace(
        "password: {keychain: axe.backup.restic.local}",
        "password: {keychain: axe.backup.restic.local}\n      schedule: '0 27 * * *'")
    found = problems(tmp_path, text)
    assert any(p.startswith("axe.timezone: unknown time zone 'Asia/Sooul'") for p in found)
    assert any(p.startswith("axe.tiers.local.schedule: cron '0 27 * * *': '27' is outside 0-23")
               for p in found)


def test_cron_with_wrong_field_count(tmp_path):
    text = GOOD.replace("password: {keychain: axe.backup.restic.local}",
                        "password: {keychain: axe.backup.restic.local}\n      schedule: '0 3 *'")
    assert any("must have 5 fields" in p for p in problems(tmp_path, text))


def test_database_on_unknown_server_lists_known_servers(tmp_path):
    found = problems(tmp_path, GOOD.replace("frame: {server: frame-postgres}",
                                            "frame: {server: frame-pg}"))
    assert any("unknown server 'frame-pg' (servers: frame-postgres, index-postgres)" in p
               for p in found)


def test_password_source_must_be_exactly_one_kind(tmp_path):
    found = problems(tmp_path, GOOD.replace("password: {keychain: axe.backup.restic.local}",
                                            "password: {env: X, file: /tmp/x}"))
    assert found and all(p.startswith("axe.tiers.local.password") for p in found)


def test_ring_block_rejects_unknown_keys_too(tmp_path):
    found = problems(tmp_path, GOOD.replace("bidirectional_ssh: true",
                                            "bidirectional_ssh: true\n    ssh_pasword: x"))
    assert found == ["realchoice.ring_backup.ssh_pasword: unknown key (check the spelling; see "
                     "README 'customers.yaml')"]


def test_cli_validate_exit_codes(tmp_path, capsys):
    good = write(tmp_path, GOOD)
    assert main(["--config", str(good), "config", "validate"]) == 0
    assert "valid (1 customer(s) backed up: axe; ring peers: realchoice)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("required: true", "required: maybe"))
    assert main(["--config", str(bad), "config", "validate"]) == 2
    err = capsys.readouterr().err
    assert "axe.folders.files.required" in err and "Traceback" not in err


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml"), "config", "validate"]) == 2
    assert "no customers.yaml found" in capsys.readouterr().err
