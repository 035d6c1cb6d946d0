"""restic's exit codes as exceptions with operator messages.

restic documents 0 ok, 1 fatal, 3 backup incomplete (some source files unreadable), 10
repository does not exist, 11 repository locked, 12 wrong password; 130 is SIGINT.
`raise_for` is the one place that turns an exit status and restic's stderr into one of these.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from typing import NoReturn

from axe_pipelines.errors import Unusable
from axe_pipelines.restic.model import Repository


class ResticError(Unusable):
    """A restic call failed. `restic_exit` is restic's own exit status (None when restic never
    ran); the message says what to do next. Reaching `main`, it ends `axe` with exit 3."""

    def __init__(self, message: str, *, restic_exit: int | None = None, detail: str = ""):
        super().__init__(message)
        self.restic_exit = restic_exit
        self.detail = detail


class ResticNotFound(ResticError):
    """No usable restic binary (missing, not executable, or older than 0.17)."""


class ResticFatal(ResticError):
    """restic failed for a reason without an exit code of its own (exit 1, or 130)."""


class BackupIncomplete(ResticError):
    """Exit 3: a snapshot was written but some source files could not be read."""

    def __init__(self, message: str, *, snapshot_id: str | None, detail: str = ""):
        super().__init__(message, restic_exit=3, detail=detail)
        self.snapshot_id = snapshot_id


class RepositoryMissing(ResticError):
    """Exit 10: there is no repository at the location."""


class RepositoryLocked(ResticError):
    """Exit 11: another process holds a lock; `holder` says who, when restic said so."""

    def __init__(self, message: str, *, holder: LockHolder | None, detail: str = ""):
        super().__init__(message, restic_exit=11, detail=detail)
        self.holder = holder


class WrongPassword(ResticError):
    """Exit 12: the password source gave a password that opens no key of the repository."""


class ResticTimeout(ResticError):
    """A restic call did not finish within its bound and was stopped."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a repository lock, as restic records it in the lock file."""

    pid: int
    host: str
    user: str
    created: str

    @property
    def provably_stale(self) -> bool:
        """True when the lock was taken on this host by a process that no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


_LOCK_RE = re.compile(
    r"locked (?:exclusively )?by PID (\d+) on (\S+) by (\S+).*?lock was created at ([^\n(]+)",
    re.S,
)


def exit_message(stderr: str) -> str:
    """Given restic's stderr, return restic's own message: the `exit_error` JSON line's text,
    else the last three non-empty lines."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if data.get("message_type") == "exit_error":
                return str(data.get("message", "")).strip()
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return "\n".join(lines[-3:])


def lock_holder(message: str) -> LockHolder | None:
    """Given restic's "repository is already locked" message, return who holds the lock, or
    None when the message does not say."""
    m = _LOCK_RE.search(message)
    return LockHolder(int(m[1]), m[2], m[3], m[4].strip()) if m else None


def raise_for(code: int, stderr: str, repo: Repository, what: str) -> NoReturn:
    """Given restic's non-zero exit status and stderr for `what` on `repo`, raise the mapped
    ResticError (RepositoryMissing, RepositoryLocked, WrongPassword, else ResticFatal) whose
    message names the repository and the next step; `detail` keeps restic's own words."""
    msg = exit_message(stderr)
    # Lines that are not restic's JSON come from the child command (pg_dump's errors).
    child = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("{")]
    if child:
        msg = msg + "\n" + "\n".join(child[-20:])
    label = repo.label
    if code == 10:
        raise RepositoryMissing(
            f"{label} does not exist at {repo.location}; create it with "
            f"`axe init` (or check that its disk is mounted)", restic_exit=10, detail=msg)
    if code == 11:
        holder = lock_holder(msg)
        who = (f"PID {holder.pid} on {holder.host} since {holder.created}"
               if holder else "another process")
        raise RepositoryLocked(
            f"{label} is locked by {who}; wait for it to finish, or if that process is gone "
            f"run `restic unlock` on the repository", holder=holder, detail=msg)
    if code == 12:
        raise WrongPassword(
            f"wrong password for {label} ({repo.password.describe()}); check that "
            f"source, the repository was not re-keyed", restic_exit=12, detail=msg)
    if code == 130:
        raise ResticFatal(f"{label}: {what} was interrupted", restic_exit=code, detail=msg)
    first = msg.splitlines()[0] if msg else f"restic exited {code}"
    raise ResticFatal(f"{label}: {what} failed: {first}", restic_exit=code, detail=msg)
