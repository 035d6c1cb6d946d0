"""Real mounts for the tests that need a disk to fill up or go away: a tmpfs mounted (as root;
CI is root) and unmounted, lazily too, the way a pulled USB disk leaves a mount point."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REFUSED = "mounting tmpfs is not permitted here"  # not a legitimate skip in CI (root there)


def mount_tmpfs(path: Path, options: str = "size=64m") -> bool:
    """Mount a tmpfs at `path`; False when this machine does not allow it (not root, no
    CAP_SYS_ADMIN in a container)."""
    if os.geteuid() != 0:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "axe-test", str(path)],
                          capture_output=True)
    return proc.returncode == 0


def require_tmpfs(path: Path, options: str = "size=64m") -> None:
    """Mount a tmpfs at `path` or skip the test (an error in CI: tests/ci_skips.py)."""
    if not mount_tmpfs(path, options):
        pytest.skip(REFUSED)


def umount(path: Path, lazy: bool = False) -> None:
    """Unmount `path`; `lazy` (umount -l) detaches it at once even while files are open."""
    subprocess.run(["umount", *(["-l"] if lazy else []), str(path)], check=True)


def umount_all(path: Path) -> None:
    """Unmount whatever is still mounted at `path` (test clean-up)."""
    while os.path.ismount(path):
        umount(path, lazy=True)
