"""restic/errors.py, model.py and process.py without a repository: exit codes and stderr as
restic writes them become the operator's messages; finding the binary."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from axe_pipelines.restic import (
    Repository,
    RepositoryLocked,
    RepositoryMissing,
    ResticFatal,
    ResticNotFound,
    WrongPassword,
    find_restic,
)
from axe_pipelines.restic.errors import LockHolder, exit_message, lock_holder, raise_for
from axe_pipelines.restic.model import parse_time
from axe_pipelines.secrets import EnvSource

REPO = Repository("/srv/repo", EnvSource(env="AXE_PW"), "tier A repository of axe (/srv/repo)")
LOCKED = ("repo already locked, waiting up to 0s for the lock\n"
          "unable to create lock in backend: repository is already locked exclusively by PID "
          "4242 on backup-host by axe (UID 501, GID 20)\nlock was created at 2026-05-20 "
          "03:00:01 (1m2s ago)\nstorage ID 1a2b3c4d\n")


def exit_error(message: str, code: int) -> str:
    return json.dumps({"message_type": "exit_error", "code": code, "message": message})


def test_exit_10_says_how_to_create_the_repository():
    with pytest.raises(RepositoryMissing) as info:
        raise_for(10, exit_error("Fatal: repository does not exist: unable to open config "
                                 "file", 10), REPO, "listing snapshots")
    assert str(info.value) == ("tier A repository of axe (/srv/repo) does not exist at /srv/repo;"
                               " create it with `axe init` (or check that its disk is mounted)")
    assert info.value.restic_exit == 10 and info.value.exit_code == 3
    assert "unable to open config file" in info.value.detail


def test_exit_11_names_the_lock_holder():
    with pytest.raises(RepositoryLocked) as info:
        raise_for(11, LOCKED, REPO, "backup of frame.pgdump")
    assert info.value.holder == LockHolder(4242, "backup-host", "axe", "2026-05-20 03:00:01")
    assert "is locked by PID 4242 on backup-host since 2026-05-20 03:00:01; wait for it" in \
        str(info.value)
    with pytest.raises(RepositoryLocked, match="is locked by another process"):
        raise_for(11, "repository is locked", REPO, "x")


def test_exit_12_names_the_password_source_never_the_password():
    with pytest.raises(WrongPassword) as info:
        raise_for(12, exit_error("Fatal: wrong password or no key found", 12), REPO, "x")
    assert str(info.value).startswith("wrong password for tier A repository of axe (/srv/repo) "
                                      "(environment variable AXE_PW)")


def test_other_failures_carry_restic_words_and_the_child_commands_stderr():
    stderr = ("pg_dump: error: connection to server failed: Connection refused\n"
              + exit_error("Fatal: unable to save snapshot: command failed: exit status 1", 1))
    with pytest.raises(ResticFatal) as info:
        raise_for(1, stderr, REPO, "backup of frame.pgdump")
    assert str(info.value) == ("tier A repository of axe (/srv/repo): backup of frame.pgdump "
                               "failed: Fatal: unable to save snapshot: command failed: exit "
                               "status 1")
    assert "pg_dump: error: connection to server failed" in info.value.detail
    with pytest.raises(ResticFatal, match="backup of x was interrupted"):
        raise_for(130, "", REPO, "backup of x")
    with pytest.raises(ResticFatal, match="x failed: restic exited 7"):
        raise_for(7, "", REPO, "x")


def test_exit_message_prefers_restics_json_then_the_last_lines():
    assert exit_message("noise\n" + exit_error("Fatal: boom", 1) + "\n") == "Fatal: boom"
    assert exit_message("a\n\nb\nc\nd\n") == "b\nc\nd"
    assert lock_holder("nothing about locks") is None


def test_a_lock_is_provably_stale_only_for_a_gone_process_on_this_host():
    here = socket.gethostname()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert LockHolder(gone.pid, here, "u", "t").provably_stale
    assert not LockHolder(os.getpid(), here, "u", "t").provably_stale
    assert not LockHolder(gone.pid, "another-host", "u", "t").provably_stale


def test_restic_times_with_nanoseconds():
    assert parse_time("2026-05-19T18:00:00.123456789Z") == datetime(2026, 5, 19, 18, 0, 0,
                                                                    123456, tzinfo=UTC)
    assert parse_time("2026-05-20T03:00:00+09:00").utcoffset().total_seconds() == 9 * 3600


def test_axe_restic_is_used_or_refused_never_replaced(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AXE_RESTIC", str(tmp_path / "nowhere"))
    with pytest.raises(ResticNotFound, match="is not an executable file; point it at restic"):
        find_restic()
    fake = tmp_path / "restic"
    fake.write_text("#!/bin/sh\necho 'restic 0.16.4 compiled with go1.21 on linux/amd64'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("AXE_RESTIC", str(fake))
    with pytest.raises(ResticNotFound, match=r"too old: AXE_RESTIC=.*restic \(0\.16\.4\)"):
        find_restic()
    fake.write_text("#!/bin/sh\necho 'restic 0.18.1 compiled with go1.24 on linux/amd64'\n")
    assert find_restic() == str(fake)
