"""The restic adapter against the real restic binary: exit codes become operator errors."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.restic import (
    Repository,
    RepositoryLocked,
    RepositoryMissing,
    Restic,
    ResticFatal,
    ResticNotFound,
    WrongPassword,
    find_restic,
)
from axe_pipelines.secrets import CommandSource, EnvSource, FileSource

AT = datetime(2026, 5, 20, 3, 0, tzinfo=ZoneInfo("Asia/Seoul"))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Restic:
    monkeypatch.setenv("AXE_T_PW", "correct horse")
    restic = Restic(Repository(str(tmp_path / "repo"), EnvSource(env="AXE_T_PW"), "test repo"),
                    timezone="Asia/Seoul")
    assert restic.init() is True
    return restic


def locks(restic: Restic) -> list[str]:
    return restic.run(["list", "locks", "--no-lock"], what="listing locks").split()


def test_init_is_idempotent(repo: Restic):
    assert repo.init() is False
    assert repo.exists()


def test_stdin_command_backup_carries_tags_and_logical_time(repo: Restic):
    summary = repo.backup_command(["sh", "-c", "echo dump-bytes"], filename="frame.pgdump",
                                  tags=["customer=axe", "database=frame"], at=AT)
    (snap,) = repo.snapshots(tags=["customer=axe"])
    assert snap.id == summary.snapshot_id and summary.bytes_read == len("dump-bytes\n")
    assert snap.time == AT and snap.tag("database") == "frame"
    assert snap.paths == ("/frame.pgdump",)


def test_failed_command_leaves_no_snapshot(repo: Restic):
    # A command that streams data and then dies: a plain pipe would store the partial stream.
    with pytest.raises(ResticFatal) as info:
        repo.backup_command(["sh", "-c", "head -c 300000 /dev/urandom; exit 3"],
                            filename="x.pgdump", tags=["customer=axe"], at=AT)
    assert "exit status 3" in str(info.value)
    assert repo.snapshots() == []


def test_wrong_password_says_which_source(repo: Restic, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AXE_T_PW", "wrong")
    with pytest.raises(WrongPassword) as info:
        repo.snapshots()
    assert str(info.value).startswith("wrong password for test repo (environment variable "
                                      "AXE_T_PW)")
    assert "wrong" not in str(info.value).replace("wrong password", "")


def test_missing_repository_says_how_to_create_it(tmp_path: Path):
    restic = Restic(Repository(str(tmp_path / "none"), EnvSource(env="PATH"), "tier A repo"))
    with pytest.raises(RepositoryMissing) as info:
        restic.snapshots()
    assert "does not exist" in str(info.value) and "axe init" in str(info.value)
    assert restic.exists() is False


def test_password_file_and_command_sources(tmp_path: Path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    by_file = Restic(Repository(str(tmp_path / "r"), FileSource(file=pw), "r"))
    by_file.init()
    by_command = Restic(Repository(str(tmp_path / "r"), CommandSource(command=["cat", str(pw)]),
                                   "r"))
    assert by_command.snapshots() == []


def test_a_multi_line_password_source_means_its_first_line_to_restic_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """README: a file or command source's password is its first line. restic reads the whole
    trimmed output of RESTIC_PASSWORD_FILE/_COMMAND (0.18: "s3cret\\nrotated ..." is another
    password, exit 12), so axe hands restic the value it resolved itself: a repository
    initialised from a two-line file opens with its first line, by hand and by every source."""
    pw = tmp_path / "pw"
    pw.write_text("  s3cret  \nrotated 2026-05-20 by kim; the old one was in the safe\n")
    repo = str(tmp_path / "r")
    assert Restic(Repository(repo, FileSource(file=pw), "r")).init() is True
    by_hand = subprocess.run([find_restic(), "-r", repo, "cat", "config", "--no-lock"],
                             env={**os.environ, "RESTIC_PASSWORD": "s3cret"},
                             capture_output=True, text=True, timeout=60)
    assert by_hand.returncode == 0, by_hand.stderr
    monkeypatch.setenv("AXE_T_FIRST_LINE", "s3cret")
    script = "printf 's3cret\\nsecond line\\n'"
    for source in (FileSource(file=pw), CommandSource(command=["cat", str(pw)]),
                   CommandSource(command=["sh", "-c", script]), EnvSource(env="AXE_T_FIRST_LINE")):
        assert source.resolve() == "s3cret"
        assert Restic(Repository(repo, source, "r")).snapshots() == []  # opens, not exit 12
    # The value reaches restic through its environment only: nothing in argv names it.
    restic = Restic(Repository(repo, FileSource(file=pw), "r"))
    assert restic.env()["RESTIC_PASSWORD"] == "s3cret"
    assert not {k for k in restic.env() if k.startswith(("RESTIC_PASSWORD_", "RESTIC_FROM"))}
    assert "s3cret" not in " ".join(restic._argv(["snapshots"]))


def _hold_exclusive_lock(restic: Restic) -> subprocess.Popen:
    """Starts `forget --prune` (exclusive lock) and freezes it once its lock file exists."""
    for i in range(3):
        restic.backup_command(["head", "-c", "2000000", "/dev/urandom"], filename=f"f{i}",
                              tags=["t"], at=AT)
    lock_dir = Path(restic.repo.location) / "locks"
    before = set(os.listdir(lock_dir))
    proc = subprocess.Popen([restic.binary, "forget", "--keep-last", "1", "--prune", "-q"],
                            env=restic.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if {n for n in os.listdir(lock_dir) if "-tmp-" not in n} - before:
            os.kill(proc.pid, signal.SIGSTOP)
            return proc
    proc.kill()
    pytest.fail("restic forget never created a lock")


def test_live_exclusive_lock_is_reported_not_removed(repo: Restic):
    holder = _hold_exclusive_lock(repo)
    try:
        with pytest.raises(RepositoryLocked) as info:
            repo.backup_command(["echo", "x"], filename="y", tags=["t"], at=AT)
        assert info.value.holder is not None and info.value.holder.pid == holder.pid
        assert f"locked by PID {holder.pid}" in str(info.value)
        assert len(locks(repo)) == 1  # a live holder's lock is left alone
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.wait(60)


def test_stale_lock_of_a_dead_process_is_cleared_and_backup_proceeds(repo: Restic):
    holder = _hold_exclusive_lock(repo)
    holder.kill()  # SIGKILL: restic cannot remove its lock
    holder.wait()
    assert len(locks(repo)) == 1
    summary = repo.backup_command(["echo", "after"], filename="z", tags=["t"], at=AT)
    assert summary.snapshot_id
    assert locks(repo) == []


def test_reader_stopping_early_leaves_no_lock(repo: Restic):
    summary = repo.backup_command(["head", "-c", "5000000", "/dev/urandom"], filename="big",
                                  tags=["t"], at=AT)
    with repo.dump(summary.snapshot_id, "/big") as stream:
        assert len(stream.read(10)) == 10  # then stop reading, as `pg_restore -l` would
    assert locks(repo) == []


def test_too_old_restic_is_refused_with_the_way_out(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    old = tmp_path / "restic"
    old.write_text("#!/bin/sh\necho 'restic 0.14.0 compiled with go1.19 on linux/amd64'\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("AXE_RESTIC", raising=False)
    monkeypatch.setattr("axe_pipelines.restic.process.Path.resolve",
                        lambda self: tmp_path / "x" / "y" / "z")
    with pytest.raises(ResticNotFound) as info:
        find_restic()
    assert "too old" in str(info.value) and "0.14.0" in str(info.value)
    assert "bootstrap-restic" in str(info.value)
