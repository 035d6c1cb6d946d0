"""Deduplication survives a machine rebuild (issue 8 item 6): on a "new machine" (tier A
deleted) `axe init` creates tier A with the chunker parameters of the existing cold volume or
ring peer (real sshd on loopback) — named with --chunker-from, or found on its own, and says
so — so the next copy adds only what is new; a tier A made without them is caught by
`axe doctor`."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from axe_pipelines import cli
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.cold import find_volumes, sync_volume
from axe_pipelines.config import load_config
from axe_pipelines.restic import Repository, Restic
from axe_pipelines.ring import push_set
from axe_pipelines.secrets import EnvSource
from tests.conftest import REPO_PASSWORD_ENV
from tests.sshd import have_sshd, make_server

RING_PW, COLD_PW = "AXE_TEST_CHUNKER_RING_PW", "AXE_TEST_CHUNKER_COLD_PW"


def polynomial(repo: Path, env: str) -> str:
    restic = Restic(Repository(str(repo), EnvSource(env=env), "direct"), timeout=60)
    return json.loads(restic.run(["cat", "config", "--no-lock"], what="config"))[
        "chunker_polynomial"]


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture
def site(tmp_path: Path, dagster_home, monkeypatch):
    monkeypatch.setenv(RING_PW, "ring-" + uuid.uuid4().hex)
    monkeypatch.setenv(COLD_PW, "cold-" + uuid.uuid4().hex)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "scan.bin").write_bytes(os.urandom(4 << 20))
    (tmp_path / "Volumes" / "axe-cold-1").mkdir(parents=True)

    def write(ring: dict[str, Any] | None = None, peer: dict[str, Any] | None = None):
        tiers: dict[str, Any] = {
            "local": {"repository": str(tmp_path / "repo"),
                      "password": {"env": REPO_PASSWORD_ENV}},
            "cold": {"password": {"env": COLD_PW}, "accept_plain_folders": True,
                     "mount_glob": str(tmp_path / "Volumes" / "axe-cold-*"), "timeout_s": 60}}
        data: dict[str, Any] = {"axe": {"folders": {"files": {"path": str(tmp_path / "files")}},
                                        "tiers": {**tiers, **({"ring": ring} if ring else {})}}}
        if peer:
            data["realchoice"] = {"ring_backup": peer}
        (tmp_path / "customers.yaml").write_text(yaml.safe_dump(data))
        return load_config(tmp_path / "customers.yaml")

    return tmp_path, write


def axe(root: Path, *args: str) -> int:
    return cli.main(["--config", str(root / "customers.yaml"), *args])


def test_new_machine_takes_the_cold_volumes_chunker_parameters(site, capsys):
    root, write = site
    config = write()
    assert axe(root, "init") == 0
    assert "created with new chunker parameters (no copy to take them from: tier C: " in \
        capsys.readouterr().out
    assert run_tier_a("axe", config.customer("axe"), at=datetime(2026, 5, 20, tzinfo=UTC),
                      run_id="run-1").ok
    (volume,) = find_volumes(config.customer("axe").tiers.cold)
    sync_volume(config, "axe", volume)
    cold_repo = volume.repo_path
    old_machine = polynomial(root / "repo", REPO_PASSWORD_ENV)
    assert polynomial(cold_repo, COLD_PW) == old_machine

    for args in (["--chunker-from", "cold"], []):  # named, then found on its own
        shutil.rmtree(root / "repo")  # the new machine
        assert axe(root, "init", *args) == 0
        out = capsys.readouterr().out
        assert (f"tier A repository of axe ({root / 'repo'}): created with the chunker "
                f"parameters of tier C repository on cold volume axe-cold-1") in out
        assert polynomial(root / "repo", REPO_PASSWORD_ENV) == old_machine

    assert axe(root, "init", "--chunker-from", "cold") == 0
    assert "exists already (its chunker parameters are kept" in capsys.readouterr().out
    assert axe(root, "init", "--chunker-from", "local") == 2
    assert "that is tier A itself; name ring, cold or a peer" in capsys.readouterr().err

    # Without them (what init did before): doctor catches the mismatch.
    shutil.rmtree(root / "repo")
    local_restic("axe", config.customer("axe")).init()
    assert polynomial(root / "repo", REPO_PASSWORD_ENV) != old_machine
    assert axe(root, "doctor") == 1
    assert "chunker parameters differ from tier A's" in capsys.readouterr().out

    shutil.rmtree(root / "repo")
    shutil.rmtree(volume.path)  # the volume is not mounted: the named source cannot be read
    assert axe(root, "init", "--chunker-from", "cold") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "axe init --chunker-from cold: " in err[0]
    assert "nothing was created" in err[0] and not (root / "repo").exists()


@pytest.mark.skipif(not have_sshd(), reason="openssh-server is not installed")
def test_new_machine_takes_the_ring_peers_chunker_parameters_and_keeps_deduplicating(
        site, capsys):
    root, write = site
    sshd = make_server(root / "sshd").start()
    try:
        peer_dir = root / "peer-disk" / "axe"
        peer_dir.parent.mkdir()
        config = write(
            ring={"connect_timeout_s": 3, "timeout_s": 60, "retries": 0,
                  "password": {"env": RING_PW}},
            peer={"ssh_user": sshd.user, "ssh_fqdn": "localhost", "ssh_port": sshd.port,
                  "ssh_key": str(sshd.user_key), "known_hosts": str(sshd.known_hosts),
                  "receive_dir_at_peer": str(peer_dir) + "/",
                  "receive_dir_at_self": str(root / "inbound")})
        local_restic("axe", config.customer("axe")).init()
        at = datetime(2026, 5, 20, tzinfo=UTC)
        assert run_tier_a("axe", config.customer("axe"), at=at, run_id="run-1").ok
        push_set(config, "axe", "realchoice")
        at_peer = folder_size(peer_dir)

        shutil.rmtree(root / "repo")  # the rebuilt machine, same data
        assert axe(root, "init", "--chunker-from", "realchoice") == 0
        assert "created with the chunker parameters of tier B repository of axe at " \
               "realchoice" in capsys.readouterr().out
        assert polynomial(root / "repo", REPO_PASSWORD_ENV) == polynomial(peer_dir, RING_PW)
        assert run_tier_a("axe", config.customer("axe"), at=at.replace(day=21),
                          run_id="run-2").ok
        push_set(config, "axe", "realchoice")
        # The 4 MiB folder is not stored again at the peer: only metadata is added.
        assert folder_size(peer_dir) - at_peer < 1 << 20
    finally:
        sshd.stop()
