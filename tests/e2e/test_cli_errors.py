"""Failures an operator can cause end as one `axe: ...` line and exit 3, never a traceback:
`axe init` with a wrong repository password, without a usable restic, or with a read-only
DAGSTER_HOME. Real restic, a real read-only file system (a tmpfs mounted read-only when we
are root); no PostgreSQL needed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

PASSWORD_ENV = "AXE_TEST_ERRORS_REPO_PASSWORD"


def write_site(root: Path) -> Path:
    """A customer with one folder and a tier-A repository under `root`."""
    (root / "files").mkdir(parents=True, exist_ok=True)
    path = root / "customers.yaml"
    path.write_text(yaml.safe_dump({"axe": {
        "folders": {"files": {"path": str(root / "files")}},
        "tiers": {"local": {"repository": str(root / "repo"),
                            "password": {"env": PASSWORD_ENV}}}}}))
    return path


def axe(config: Path, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "AXE_RESTIC"}
    full.update(AXE_CONFIG=str(config), DAGSTER_HOME=str(home), **env)
    full.setdefault(PASSWORD_ENV, "the-right-one")
    return subprocess.run([sys.executable, "-m", "axe_pipelines.cli", *args], env=full,
                          capture_output=True, text=True, timeout=120)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("axe: ")
    return line


def test_init_with_a_wrong_repository_password(tmp_path, restic_bin):
    config = write_site(tmp_path)
    assert axe(config, tmp_path / "home", "init").returncode == 0
    line = one_line(axe(config, tmp_path / "home", "init", **{PASSWORD_ENV: "not-it"}))
    assert line.startswith("axe: wrong password for tier A repository of axe")
    assert f"environment variable {PASSWORD_ENV}" in line and "not-it" not in line


@pytest.mark.parametrize("restic", ["missing", "too-old"])
def test_init_without_a_usable_restic(tmp_path, restic):
    config = write_site(tmp_path)
    binary = tmp_path / "bin" / "restic"
    if restic == "too-old":
        binary.parent.mkdir()
        binary.write_text("#!/bin/sh\necho 'restic 0.14.0 compiled with go1.19 on linux/amd64'\n")
        binary.chmod(0o755)
    line = one_line(axe(config, tmp_path / "home", "init", AXE_RESTIC=str(binary)))
    if restic == "missing":
        assert line == (f"axe: AXE_RESTIC={binary} is not an executable file; point it at "
                        f"restic 0.17+ (scripts/bootstrap-restic fetches one) or unset it")
    else:
        assert line.startswith(f"axe: restic is too old: AXE_RESTIC={binary} (0.14.0); need "
                               f">= 0.17")
    assert not (tmp_path / "repo").exists()


@pytest.fixture
def read_only_home(tmp_path) -> Iterator[Path]:
    """A DAGSTER_HOME this process cannot write: a read-only tmpfs when root (root ignores
    permission bits), a folder without write permission otherwise."""
    home = tmp_path / "ro-home"
    home.mkdir()
    if os.geteuid() != 0:
        home.chmod(0o555)
        yield home
        home.chmod(0o755)
        return
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "axe-ro", str(home)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {proc.stderr.strip()}")
    try:
        yield home
    finally:
        subprocess.run(["umount", str(home)], check=True)


def test_init_with_a_read_only_dagster_home(tmp_path, read_only_home, restic_bin):
    config = write_site(tmp_path)
    line = one_line(axe(config, read_only_home, "init"))
    assert line.startswith(f"axe: Dagster home {read_only_home} is not usable (")
    assert "point DAGSTER_HOME at a writable folder" in line
    assert not (tmp_path / "repo").exists()  # nothing started
