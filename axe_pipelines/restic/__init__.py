"""Typed adapter over the restic CLI (>= 0.17): `--json` output in, exceptions with operator
messages out.

    model.py    Repository, Snapshot, BackupSummary (plain data)
    errors.py   restic's exit codes as exceptions (1 ResticFatal, 3 BackupIncomplete,
                10 RepositoryMissing, 11 RepositoryLocked, 12 WrongPassword), stale locks
    process.py  finding the binary; running it bounded in time (ProcessDeadline)
    client.py   Restic: one repository, every call we make

Passwords reach restic only through its environment (see secrets.py), never argv.
"""

from axe_pipelines.restic.client import Restic
from axe_pipelines.restic.errors import (
    BackupIncomplete,
    LockHolder,
    RepositoryDamaged,
    RepositoryLocked,
    RepositoryMissing,
    ResticError,
    ResticFatal,
    ResticNotFound,
    ResticTimeout,
    WrongPassword,
)
from axe_pipelines.restic.model import BackupSummary, Repository, Snapshot
from axe_pipelines.restic.process import MIN_VERSION, find_restic, restic_version

__all__ = [
    "MIN_VERSION",
    "BackupIncomplete",
    "BackupSummary",
    "LockHolder",
    "Repository",
    "RepositoryDamaged",
    "RepositoryLocked",
    "RepositoryMissing",
    "Restic",
    "ResticError",
    "ResticFatal",
    "ResticNotFound",
    "ResticTimeout",
    "Snapshot",
    "WrongPassword",
    "find_restic",
    "restic_version",
]
