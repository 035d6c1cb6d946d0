"""Backups started warm, ahead of their items (restic/warm.py, restic/gate.py), against the real
restic: a claimed one stores exactly its item's bytes under its own tags and time; one never
claimed, or whose axe process is killed, stores nothing and leaves no lock or process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.restic import Repository, Restic
from axe_pipelines.restic.warm import WarmKey, WarmPool
from axe_pipelines.secrets import EnvSource

from .test_cli_backup import counting_restic, run_axe

AT = datetime(2026, 5, 20, 3, 0, tzinfo=ZoneInfo("Asia/Seoul"))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Restic:
    monkeypatch.setenv("AXE_T_PW", "correct horse")
    restic = Restic(Repository(str(tmp_path / "repo"), EnvSource(env="AXE_T_PW"), "test repo"),
                    timezone="Asia/Seoul", timeout=60, idle_timeout=30)
    assert restic.init() is True
    return restic


def locks(restic: Restic) -> list[str]:
    return restic.run(["list", "locks", "--no-lock"], what="listing locks").split()


def gates(owner: int) -> list[int]:
    """The pids of the gates (a warm restic's waiting command) that `owner` started."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"axe_pipelines.restic.gate"] and argv[4:5] == [
                str(owner).encode()]:
            found.append(int(pid))
    return found


def restics_on(folder: Path) -> list[int]:
    """The pids of restic processes whose environment names `folder` (this test's)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if argv0.endswith(b"restic") and str(folder).encode() in environ:
            found.append(int(pid))
    return found


def test_claimed_backup_stores_its_command_and_the_rest_store_nothing(repo, tmp_path):
    keys = [WarmKey("a.pgdump", ("customer=axe", "database=a")),
            WarmKey("b.pgdump", ("customer=axe", "database=b")),
            WarmKey("c.pgdump", ("customer=axe", "database=c"))]
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    pool = WarmPool(repo, run, repo.time_args(AT), keys, depth=2)
    repo.warm = pool
    # Its secret comes through the FIFO, never in an argv.
    summary = repo.backup_command(["sh", "-c", 'printf "%s" "$AXE_T_BYTES"'],
                                  filename="a.pgdump", tags=["customer=axe", "database=a"],
                                  at=AT, env_extra={"AXE_T_BYTES": "dump-of-a"})
    assert pool.claimed == 1
    # Not what a warm backup was started with (another time): started cold, also stored.
    other = repo.backup_command(["echo", "late"], filename="b.pgdump",
                                tags=["customer=axe", "database=b"],
                                at=AT.replace(hour=4))
    assert pool.claimed == 1
    pool.close()  # b and c (started when a was claimed) were never claimed
    snaps = repo.snapshots()
    assert sorted(s.id for s in snaps) == sorted([summary.snapshot_id, other.snapshot_id])
    stored = next(s for s in snaps if s.id == summary.snapshot_id)
    assert set(stored.tags) == {"customer=axe", "database=a"} and stored.time == AT
    with repo.dump(summary.snapshot_id, "/a.pgdump") as stream:
        assert stream.read() == b"dump-of-a"
    assert locks(repo) == []
    assert gates(os.getpid()) == [] and list(run.iterdir()) == []


def test_a_warm_backup_whose_command_fails_stores_nothing(repo, tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    pool = WarmPool(repo, run, repo.time_args(AT),
                    [WarmKey("a.pgdump", ("database=a",))], depth=1)
    repo.warm = pool
    with pytest.raises(Exception) as failed:
        repo.backup_command(["sh", "-c", "echo half; exit 3"], filename="a.pgdump",
                            tags=["database=a"], at=AT)
    assert pool.claimed == 1 and "a.pgdump" in str(failed.value)
    pool.close()
    assert repo.snapshots() == [] and locks(repo) == []


def test_kill_9_of_axe_while_backups_wait_leaves_no_lock_and_no_process(make_config, tmp_path,
                                                                       restic_bin):
    """`axe backup` killed (-9) while its warm backups wait for Dagster: each gate sees axe
    gone within half a second and ends, restic stores nothing and removes its lock."""
    path, config = make_config()
    home = tmp_path / "home"
    env, log = counting_restic(tmp_path, restic_bin)
    assert run_axe(path, home, "init", env=env).returncode == 0
    full_env = dict(os.environ, AXE_CONFIG=str(path), DAGSTER_HOME=str(home), **env)
    proc = subprocess.Popen([sys.executable, "-m", "axe_pipelines.cli", "backup", "--local",
                             "--plain"], env=full_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not gates(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert gates(proc.pid), "no backup was started warm"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 20
    while gates(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gates(proc.pid) == [], "a gate kept waiting after axe was killed"
    restic = Restic(Repository(str(tmp_path / "repo"),
                               config.customer("axe").tiers.local.password, "repo"))
    assert [s for s in restic.snapshots() if s.tag("kind") == "pgdump"] == []
    assert "axe_pipelines.restic.gate" in log.read_text()  # the backups were the warm ones
    # restic wrote to a pipe whose reader (axe) is gone, so it died without removing its lock,
    # as a cold backup killed with axe does: the lock's process is gone, the next run clears it.
    deadline = time.monotonic() + 20
    while restics_on(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert restics_on(tmp_path) == []
    again = run_axe(path, home, "backup", "--local", "--plain", env=env)
    assert again.returncode == 0, again.stderr
    assert "removed a stale lock" in again.stderr
    assert locks(restic) == []


def test_beside_a_live_lock_the_backups_start_cold(make_config, tmp_path, restic_bin):
    """A lock some live process holds (a prune or check could be running): nothing starts
    warm; the run's backups start cold once the run is under way, and succeed."""
    path, config = make_config()
    home = tmp_path / "home"
    env, log = counting_restic(tmp_path, restic_bin)
    assert run_axe(path, home, "init", env=env).returncode == 0
    password = config.customer("axe").tiers.local.password
    holder_env = dict(os.environ, RESTIC_REPOSITORY=str(tmp_path / "repo"),
                      **password.restic_env())
    holder = subprocess.Popen([restic_bin, "backup", "--stdin-filename", "hold",
                               "--stdin-from-command", "--", "sleep", "60"], env=holder_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not any((tmp_path / "repo" / "locks").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc = run_axe(path, home, "backup", "--local", "--plain", env=env)
    finally:
        holder.send_signal(signal.SIGINT)
        holder.wait(30)
    assert proc.returncode == 0, proc.stderr
    assert "axe_pipelines.restic.gate" not in log.read_text()


def test_a_long_wait_does_not_block_restic_on_its_own_output(repo, tmp_path, monkeypatch):
    """While a warm backup waits, restic keeps printing status lines; they are read (and
    dropped), so a restic that waited long still stops at once on SIGINT, removing its lock,
    and a claimed one still stores its item."""
    real_env = Restic.env
    monkeypatch.setattr(Restic, "env", lambda self, extra=None: {
        **real_env(self, extra), "RESTIC_PROGRESS_FPS": "60"})  # 64 KiB of status in ~5 s
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    keys = [WarmKey("a.pgdump", ("database=a",)), WarmKey("b.pgdump", ("database=b",))]
    pool = WarmPool(repo, run, repo.time_args(AT), keys, depth=2)
    time.sleep(12)
    waiting = pool._waiting[keys[1]]
    os.kill(waiting.proc.pid, signal.SIGINT)
    try:
        waiting.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("a warm restic that waited long did not stop on SIGINT")
    repo.warm = pool
    summary = repo.backup_command(["echo", "a"], filename="a.pgdump", tags=["database=a"],
                                  at=AT)
    pool.close()
    assert [s.id for s in repo.snapshots()] == [summary.snapshot_id]
    assert locks(repo) == []
