"""What a tier-A run asks restic before it starts: its version once per binary, not once per
run; the locks only when the repository's locks/ folder holds any."""

from __future__ import annotations

import os
from pathlib import Path

from axe_pipelines.restic import process


def fake_restic(tmp_path: Path, version: str) -> tuple[Path, Path]:
    log = tmp_path / "calls"
    binary = tmp_path / "restic"
    binary.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\necho 'restic {version} compiled'\n")
    binary.chmod(0o755)
    return binary, log


def calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_the_version_is_asked_once_per_binary_across_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(process, "_VERSIONS", {})
    binary, log = fake_restic(tmp_path, "0.18.1")
    assert process.restic_version(str(binary)) == (0, 18, 1)
    assert process.restic_version(str(binary)) == (0, 18, 1)
    assert calls(log) == 1
    monkeypatch.setattr(process, "_VERSIONS", {})  # a new process: the home remembers it
    assert process.restic_version(str(binary)) == (0, 18, 1)
    assert calls(log) == 1
    assert (tmp_path / "home" / "axe" / "restic-versions.json").exists()


def test_a_replaced_binary_is_asked_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(process, "_VERSIONS", {})
    binary, log = fake_restic(tmp_path, "0.16.4")
    assert process.restic_version(str(binary)) == (0, 16, 4)
    binary.write_text(binary.read_text().replace("0.16.4", "0.17.3"))  # upgraded in place
    stat = binary.stat()
    os.utime(binary, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    monkeypatch.setattr(process, "_VERSIONS", {})
    assert process.restic_version(str(binary)) == (0, 17, 3)
    assert calls(log) == 2


def test_without_a_home_it_is_remembered_in_the_process_only(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setattr(process, "_VERSIONS", {})
    binary, log = fake_restic(tmp_path, "0.18.0")
    assert process.restic_version(str(binary)) == process.restic_version(str(binary))
    assert calls(log) == 1
    assert process.restic_version(str(tmp_path / "missing")) is None


def test_locks_are_looked_for_only_when_the_locks_folder_holds_any(tmp_path):
    from axe_pipelines.restic import Repository, Restic
    from axe_pipelines.secrets import EnvSource

    password = EnvSource(env="X")
    local = Restic(Repository(str(tmp_path / "repo"), password, "repo"), binary="restic")
    assert local.may_hold_locks()  # no locks/ folder: cannot tell
    (tmp_path / "repo" / "locks").mkdir(parents=True)
    assert not local.may_hold_locks()
    (tmp_path / "repo" / "locks" / "ab12").write_text("{}")
    assert local.may_hold_locks()
    remote = Restic(Repository("sftp:peer:/srv/repo", password, "peer"), binary="restic")
    assert remote.may_hold_locks()
