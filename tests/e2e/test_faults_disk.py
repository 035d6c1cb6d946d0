"""Issue 8 item 2: a full repository disk (a real 12 MiB tmpfs) fails the dump within a minute
with "no space left on device at <repository> (N MiB free)" instead of hanging for ever with
pg_dump blocked on the pipe and its REPEATABLE READ snapshot "idle in transaction" on the
server; no snapshot is stored for it; `axe doctor` warns when a repository's free space is
below three nights of the last set's additions. The idle bound with a real restic: a command
that sends nothing is stopped, one that keeps sending is never cut off."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from axe_pipelines.restic import Repository, Restic, ResticTimeout
from axe_pipelines.secrets import EnvSource
from tests.conftest import REPO_PASSWORD_ENV
from tests.e2e.faults_support import (
    BULK_DB,
    backends,
    bulk_config,
    restic_json,
    run_axe,
)


def _tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A real file system of `size` (tmpfs) at `mount`, unmounted afterwards."""
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A real 40 MiB file system (tmpfs), unmounted afterwards."""
    yield from _tmpfs(tmp_path / "small-disk", "40m")


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 12 MiB file system (tmpfs): the bulk dump (~32 MiB stored) cannot fit."""
    yield from _tmpfs(tmp_path / "tiny-disk", "12m")


def test_a_full_repository_disk_fails_the_dump_fast_and_closes_its_snapshot(
        make_config, server_a, tmp_path, tiny_disk, restic_bin):
    repo = tiny_disk / "repo"
    path, _ = bulk_config(make_config, server_a, repository=str(repo))
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    started = time.monotonic()
    done = run_axe(path, home, "backup", "--local", "--plain", timeout=240)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 180  # roles, the failed dump, the checks, no hang
    row = [ln.split() for ln in done.stdout.splitlines() if ln.split()[:1] == [f"db/{BULK_DB}"]]
    assert row and row[0][1] == "FAILED" and float(row[0][-1]) < 60
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith(f"axe: axe db/{BULK_DB}:")]
    assert f"no space left on device at {repo} (" in line and "iB free)" in line
    assert not [b for b in backends(server_a, BULK_DB) if b[1] == "idle in transaction"]
    assert f"database={BULK_DB}" not in restic_json(restic_bin, repo, "snapshots", "--json")
    assert restic_json(restic_bin, repo, "list", "locks", "--no-lock") == ""


def test_doctor_warns_when_three_nights_of_additions_do_not_fit(make_config, tmp_path,
                                                                 small_disk, restic_bin):
    files = tmp_path / "data"
    files.mkdir()
    (files / "blob.bin").write_bytes(os.urandom(15 << 20))  # ~15 MiB added, ~25 MiB left
    path, _ = make_config(databases={}, servers={}, folders={"data": {"path": str(files)}},
                          local={"repository": str(small_disk / "repo")})
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    assert run_axe(path, home, "backup", "--local", "--plain").returncode == 0
    done = run_axe(path, home, "doctor")
    (line,) = [ln for ln in done.stdout.splitlines() if "free;" in ln and "repository" in ln]
    assert line.startswith("warn") and "three nights" in line, done.stdout


def _restic(repo: Path, idle: float) -> Restic:
    restic = Restic(Repository(str(repo), EnvSource(env=REPO_PASSWORD_ENV), "test repository"),
                    idle_timeout=idle)
    restic.init()
    return restic


def test_the_idle_bound_stops_a_silent_source_and_spares_a_moving_one(tmp_path, restic_bin):
    restic = _restic(tmp_path / "repo", idle=3)
    at = datetime.now(UTC)
    started = time.monotonic()
    with pytest.raises(ResticTimeout) as err:
        restic.backup_command(["sh", "-c", "sleep 60"], filename="silent", tags=["t"], at=at)
    assert time.monotonic() - started < 20
    assert "moved no data for 3 s" in str(err.value) and "no snapshot written" in str(err.value)
    # Eight seconds in all, more than twice the idle bound, but 2 MiB every half second
    # (restic counts bytes as its chunks of 0.5 to 8 MiB complete).
    moving = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do head -c 2097152 " \
             "/dev/urandom; sleep 0.5; done"
    summary = restic.backup_command(["sh", "-c", moving], filename="moving", tags=["t"], at=at)
    assert summary.snapshot_id
    assert [s.paths for s in restic.snapshots(tags=["t"])] == [("/moving",)]
