"""restic's exit codes as exceptions with operator messages.

restic documents 0 ok, 1 fatal, 3 backup incomplete (some source files unreadable), 10
repository does not exist, 11 repository locked, 12 wrong password; 130 is SIGINT.
`raise_for` is the one place that turns an exit status and restic's stderr into one of these.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from axe_pipelines.errors import Unusable
from axe_pipelines.instance.owner import ProcessRecord
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


class RepositoryDamaged(ResticFatal):
    """restic read a pack file whose contents are not what the index says (bytes flipped,
    cut short, gone): the repository is damaged. `pack` is the pack's id (as restic printed
    it, 8+ hex digits), `cause` restic's own words."""

    def __init__(self, message: str, *, pack: str, cause: str, detail: str = ""):
        super().__init__(message, restic_exit=1, detail=detail)
        self.pack = pack
        self.cause = cause


class RepositoryFull(ResticFatal):
    """The disk under the repository is full (ENOSPC): restic was stopped, as it would
    otherwise wait for ever with its source (pg_dump) blocked on the pipe."""


_ENOSPC = "no space left on device"


def disk_full(text: str) -> bool:
    """Given a line (or all) of restic's stderr, return True when it reports ENOSPC."""
    return _ENOSPC in text.lower()


def free_space(location: str) -> str:
    """Given a repository location, return its disk's free space (`1.4 GiB free`), or
    `free space unknown` for a remote one or one that cannot be read."""
    if re.match(r"^[a-z0-9]+:", location) and not location.startswith("local:"):
        return "free space unknown"
    path = Path(location.removeprefix("local:")).expanduser()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "free space unknown"
    # Below 0.1 GiB "0.0 GiB" would hide whether anything is left at all.
    return f"{free / 1024 ** 3:.1f} GiB free" if free >= 1024 ** 3 / 10 else \
        f"{free / 1024 ** 2:.1f} MiB free"


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
        return ProcessRecord(self.host, self.pid).gone


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


# restic 0.18's words when a pack file does not hold what the index says: a blob that does not
# decrypt, decompress or hash right ("decrypting blob <data/8436277e> from 9687b8c3 failed:
# ciphertext verification failed"), or a pack that cannot be read in full
# ("ReadFull(<data/9687b8c3f8>): file is too short", "Load(<data/…>, …) failed: … no such file").
_DAMAGE = (
    re.compile(r"(?:decrypting|decompressing|read) blob <(?:data|tree)/[0-9a-f]+> from "
               r"(?:pack )?([0-9a-f]{8,64})(?: failed)?: (.+)"),
    re.compile(r"(?:ReadFull|Load)\(<data/([0-9a-f]{8,64})>[^)]*\)(?: failed)?: (.+)"),
)


def damage_in(stderr: str) -> tuple[str, str] | None:
    """Given restic's stderr, return (pack id, restic's reason) when it says a pack file is
    damaged (see _DAMAGE), else None."""
    for line in stderr.splitlines():
        text = line
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            text = str((data.get("error") or {}).get("message") or data.get("message") or "")
        for pattern in _DAMAGE:
            if m := pattern.search(text):
                return m[1], m[2].strip()
    return None


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
    if disk_full(stderr):
        # Before 130: a backup stopped because its disk is full was stopped with SIGINT.
        raise RepositoryFull(
            f"{label}: {what} failed: no space left on device at {repo.location} "
            f"({free_space(repo.location)}); free space there or move the repository, then "
            f"run it again", restic_exit=code, detail=msg)
    if code == 130:
        raise ResticFatal(f"{label}: {what} was interrupted", restic_exit=code, detail=msg)
    if code == 1 and (damage := damage_in(stderr)):
        pack, cause = damage
        raise RepositoryDamaged(
            f"pack {pack[:8]} of {label} is damaged ({cause}): run `restic check --read-data` "
            f"on it (`axe check --read-data`)", pack=pack, cause=cause, detail=msg)
    first = msg.splitlines()[0] if msg else f"restic exited {code}"
    raise ResticFatal(f"{label}: {what} failed: {first}", restic_exit=code, detail=msg)
