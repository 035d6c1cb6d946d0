"""scripts/bootstrap-restic: finds a good restic, or fetches Debian trixie's without touching
the system's apt sources."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bootstrap-restic"


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_prefers_a_good_restic_already_there(tmp_path, restic_bin):
    proc = run(dict(os.environ, AXE_RESTIC=restic_bin, AXE_TOOLS_DIR=str(tmp_path)))
    assert proc.returncode == 0 and proc.stdout.strip() == restic_bin
    assert not (tmp_path / "bin").exists()


@pytest.mark.skipif(shutil.which("apt-get") is None or os.geteuid() != 0,
                    reason="the download path needs Debian's apt-get, as root")
def test_fetches_restic_when_only_an_old_one_is_on_path(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "restic").write_text("#!/bin/sh\necho 'restic 0.14.0 compiled with go1.19'\n")
    (old / "restic").chmod(0o755)
    sources = b"".join(p.read_bytes() for p in sorted(Path("/etc/apt").rglob("*"))
                       if p.is_file() and "sources" in p.name)
    env = dict(os.environ, PATH=f"{old}:/usr/sbin:/usr/bin:/sbin:/bin",
               AXE_TOOLS_DIR=str(tmp_path / "tools"))
    env.pop("AXE_RESTIC", None)
    proc = run(env)
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / "tools" / "bin" / "restic"
    assert proc.stdout.strip() == str(installed)
    version = subprocess.run([str(installed), "version"], capture_output=True, text=True).stdout
    major, minor = version.split()[1].split(".")[:2]
    assert (int(major), int(minor)) >= (0, 17)
    after = b"".join(p.read_bytes() for p in sorted(Path("/etc/apt").rglob("*"))
                     if p.is_file() and "sources" in p.name)
    assert hashlib.sha256(after).digest() == hashlib.sha256(sources).digest()
