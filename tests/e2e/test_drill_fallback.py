"""The drill's fallback with real tiers: tier A a real restic repository (its pack files
truncated, then removed), tier C a cold volume (a real folder), tier B the peer's repository
over sftp on a real sshd on loopback; each tier's reason is named, and with no tier left the
drill fails loudly."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from axe_pipelines import cli
from axe_pipelines.cold import find_volumes, sync_volume
from axe_pipelines.ring import push_set
from tests.e2e.drill_support import leftovers, work_dir, write_config  # noqa: F401
from tests.e2e.test_tier_b import RESTIC_VERSION, tier_a_template  # noqa: F401 - fixture
from tests.sshd import have_sshd, make_server

pytestmark = pytest.mark.skipif(not have_sshd(), reason="openssh-server is not installed")

RING_ENV = "AXE_TEST_DRILL_RING_PASSWORD"
COLD_ENV = "AXE_TEST_DRILL_COLD_PASSWORD"


@pytest.fixture
def site(tmp_path, tier_a_template, server_a, server_b, work_dir, monkeypatch):  # noqa: F811
    """Tier A copied from the session template, pushed to the peer (tier B) and synced to a
    cold volume (tier C): the same set in all three tiers."""
    monkeypatch.setenv(RING_ENV, "ring-" + uuid.uuid4().hex)
    monkeypatch.setenv(COLD_ENV, "cold-" + uuid.uuid4().hex)
    shutil.copytree(tier_a_template / "repo", tmp_path / "repo")
    sshd = make_server(tmp_path / "sshd").start()
    peer_dir = tmp_path / "peer-disk" / "axe"
    peer_dir.parent.mkdir()
    volumes = tmp_path / "Volumes"
    (volumes / "axe-cold-1").mkdir(parents=True)
    peer = {"ssh_user": sshd.user, "ssh_fqdn": "localhost", "ssh_ip": "127.0.0.1",
            "receive_dir_at_peer": str(peer_dir) + "/",
            "receive_dir_at_self": str(tmp_path / "inbound"), "restic_version": RESTIC_VERSION,
            "ssh_port": sshd.port, "ssh_key": str(sshd.user_key),
            "known_hosts": str(sshd.known_hosts)}
    tiers = {"ring": {"connect_timeout_s": 3, "alive_interval_s": 1, "alive_count_max": 2,
                      "timeout_s": 120, "password": {"env": RING_ENV}},
             "cold": {"password": {"env": COLD_ENV}, "mount_glob": str(volumes / "axe-cold-*"),
                      "accept_plain_folders": True, "timeout_s": 120}}
    path, config = write_config(
        tmp_path, server_a, server_b, tiers=tiers, peer=peer, drill={"work_dir": str(work_dir)},
        databases={"frame": {"server": "frame-postgres"}, "index": {"server": "index-postgres"}},
        folders={"files": {"path": str(tier_a_template / "files")}})
    push_set(config, "axe", "realchoice")
    [volume] = find_volumes(config.customer("axe").tiers.cold)
    sync_volume(config, "axe", volume)
    yield path, tmp_path, sshd, volumes
    sshd.stop()


def _drill(path: Path, capsys) -> tuple[int, str, dict]:
    code = cli.main(["--config", str(path), "drill", "--as-of", "2026-05-20"])
    out = capsys.readouterr().out
    folder = sorted((path.parent / "evidence" / "axe").iterdir())[-1]
    return code, out, json.loads((folder / "drill.json").read_text())


def _served(report: dict) -> dict[str, str | None]:
    return {i["name"]: next((a["tier"] for a in i["attempts"] if a["ok"]), None)
            for i in report["items"]}


def test_damaged_then_missing_tiers_fall_back_to_c_then_b_then_fail_loudly(
        site, work_dir, dagster_home, capsys):  # noqa: F811
    path, root, sshd, volumes = site
    # Tier A's pack files cut short (a disk that lost their tails).
    for pack in (root / "repo" / "data").rglob("*"):
        if pack.is_file():
            os.chmod(pack, 0o600)
            os.truncate(pack, pack.stat().st_size // 2)
    code, out, report = _drill(path, capsys)
    assert code == 0, out
    assert _served(report) == {"frame": "cold", "index": "cold", "files": "cold"}
    frame = next(i for i in report["items"] if i["name"] == "frame")
    reason = frame["attempts"][0]["reason"]
    assert reason.startswith("pack ") and "of the local repository is damaged" in reason
    assert "restic check --read-data" in reason
    assert "fallback: db/frame: local failed (pack " in out and "served by cold" in out

    # The volume is unmounted and tier A's repository is gone: tier B serves.
    (volumes / "axe-cold-1").rename(volumes / "elsewhere")
    (root / "repo").rename(root / "repo-lost")
    code, out, report = _drill(path, capsys)
    assert code == 0, out
    assert _served(report) == {"frame": "ring (realchoice)", "index": "ring (realchoice)",
                               "files": "ring (realchoice)"}
    local, cold, ring = report["items"][0]["attempts"]
    assert "does not exist" in local["reason"] and "no cold volume" in cold["reason"]
    assert ring["ok"] and ring["original_id"]  # a copy, traced to its tier-A snapshot
    assert "not backed up into tier A" in report["evidence_error"]  # tier A is gone

    # The peer goes away too: nothing can prove anything, and the drill says so per tier.
    sshd.stop()
    code, out, report = _drill(path, capsys)
    assert code == 1
    assert _served(report) == {"frame": None, "index": None, "files": None}
    local, cold, ring = (a["reason"] for a in report["items"][0]["attempts"])
    assert "does not exist" in local and "no cold volume" in cold and "ssh exit 255" in ring
    assert "NOT PROVEN by any tier" in out and "restorable_everywhere: FAILED" in out
    assert leftovers(work_dir) == []
