"""Typed adapter over the restic CLI (>= 0.17): `--json` output in, exceptions with operator
messages out.

    model.py    Repository, Snapshot, BackupSummary (plain data)
    errors.py   restic's exit codes as exceptions (1 ResticFatal, 3 BackupIncomplete,
                10 RepositoryMissing, 11 RepositoryLocked, 12 WrongPassword), stale locks
    process.py  finding the binary; running it bounded in time (ProcessDeadline)
    client.py   Restic: one repository, every call we make

Passwords reach restic only through its environment (see secrets.py), never argv.
"""

# The exports load on first use (PEP 562): a warm backup's gate (gate.py), one process per
# item, imports this package and must start in milliseconds, without loading the client.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "Restic": "client",
    **dict.fromkeys(["BackupIncomplete", "LockHolder", "RepositoryDamaged", "RepositoryLocked",
                     "RepositoryMissing", "ResticError", "ResticFatal", "ResticNotFound",
                     "ResticTimeout", "WrongPassword"], "errors"),
    **dict.fromkeys(["BackupSummary", "Repository", "Snapshot"], "model"),
    **dict.fromkeys(["MIN_VERSION", "find_restic", "restic_version"], "process"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


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
