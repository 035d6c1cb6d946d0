"""What the drill tests share: a customers.yaml with a `drill:` block, a work folder the
staging server (the postgres user, as root) can reach, and looks at what a drill leaves."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from axe_pipelines.config import Site, load_config
from axe_pipelines.postgres.cluster import LocalCluster
from tests.conftest import REPO_PASSWORD_ENV, server_entry

SLACK_ENV = "AXE_TEST_DRILL_SLACK"
COLD_ENV = "AXE_TEST_DRILL_COLD_VOLUME_PASSWORD"


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """drill.work_dir: outside pytest's 0700 basetemp (as root the staging server runs as
    the postgres user, which must reach it)."""
    path = Path(tempfile.mkdtemp(prefix="axe-test-drill-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_config(root: Path, server_a: LocalCluster, server_b: LocalCluster, *,
                 databases: dict[str, Any], drill: dict[str, Any],
                 folders: dict[str, Any] | None = None,
                 tiers: dict[str, Any] | None = None,
                 peer: dict[str, Any] | None = None) -> tuple[Path, Site]:
    """Write root/customers.yaml for customer `axe` and return (its path, the Site)."""
    if folders is None:
        files = root / "files"
        (files / "scans").mkdir(parents=True, exist_ok=True)
        (files / "contract.txt").write_text("signed contract\n" * 300)
        (files / "scans" / "page1.bin").write_bytes(os.urandom(300_000))
        folders = {"files": {"path": str(files)}}
    data: dict[str, Any] = {"axe": {
        "servers": {"frame-postgres": server_entry(server_a),
                    "index-postgres": server_entry(server_b)},
        "databases": databases, "folders": folders,
        "tiers": {"local": {"repository": str(root / "repo"),
                            "password": {"env": REPO_PASSWORD_ENV}}, **(tiers or {})},
        "drill": {"evidence_dir": str(root / "evidence"), **drill}}}
    if peer is not None:
        data["realchoice"] = {"ring_backup": peer}
    path = root / "customers.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, load_config(path)


def cold_volume(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A cold volume (a real folder, root/Volumes/axe-cold-1) and its password: the `tiers:`
    entry for write_config."""
    monkeypatch.setenv(COLD_ENV, "cold-" + os.urandom(8).hex())
    (root / "Volumes" / "axe-cold-1").mkdir(parents=True)
    return {"cold": {"password": {"env": COLD_ENV}, "accept_plain_folders": True,
                     "mount_glob": str(root / "Volumes" / "axe-cold-*")}}


def sync_cold(config: Site) -> None:
    """Copy customer axe's newest tier-A set to its one mounted cold volume (tier C)."""
    from axe_pipelines.cold import find_volumes, sync_volume

    [volume] = find_volumes(config.customer("axe").tiers.cold)
    sync_volume(config, "axe", volume)


def leftovers(work: Path) -> list[str]:
    """What a drill left in its work folder (staging servers, fetched copies)."""
    return sorted(p.name for p in work.iterdir()) if work.exists() else []


def staging_processes(work: Path) -> list[str]:
    """Command lines of PostgreSQL servers still running out of `work`."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(work) in line and "postgres" in line]
