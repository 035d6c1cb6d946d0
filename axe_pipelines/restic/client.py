"""`Restic`: one repository, driven through the restic binary (argument lists, `--json` out).

Passwords reach restic only through its environment (see secrets.py), never argv.

Stale locks, for every tier (A's backups, B's pushes at the peer, C's volumes, the weekly
forget/prune and check), follow one policy: `Restic.clear_stale_locks`. A lock is removed only
when it is provably stale, taken on this host by a process that is gone (a killed run, a link
that dropped mid-copy: restic over sftp writes our host and PID into the peer's lock), and
only with `restic unlock`, which removes stale locks alone. A live lock, or one from another
host, is never removed: the call fails with RepositoryLocked naming its holder. Every call
that meets a lock clears a stale one and tries once more; the tier B push and the tier C sync
also look before they start.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from axe_pipelines import interrupt
from axe_pipelines.restic.errors import (
    BackupIncomplete,
    LockHolder,
    RepositoryLocked,
    RepositoryMissing,
    ResticError,
    ResticFatal,
    ResticTimeout,
    disk_full,
    raise_for,
)
from axe_pipelines.restic.model import (
    RESTIC_TIME_FORMAT,
    BackupSummary,
    Repository,
    Snapshot,
    from_repo_env,
)
from axe_pipelines.restic.process import Finished, Started, find_restic, run_bounded
from axe_pipelines.restic.warm import take
from axe_pipelines.secrets import SecretError

if TYPE_CHECKING:
    from axe_pipelines.restic.warm import WarmPool

T = TypeVar("T")

# Calls that read only the repository's metadata: a few seconds even on a big repository
# (unlike restore, prune or forget), so call_timeout bounds them.
_METADATA_CALLS = frozenset({"cat", "list", "snapshots", "tag", "unlock", "version"})
_SLOW = "(a password command waiting for input, or a slow or vanished disk or link)"


class Restic:
    """One repository, driven through the restic binary."""

    def __init__(self, repo: Repository, *, binary: str | None = None,
                 timezone: str | None = None, timeout: float | None = None,
                 idle_timeout: float | None = None, call_timeout: float | None = None):
        self.repo = repo
        self.binary = binary or find_restic()
        self.timezone = timezone
        self.timeout = timeout  # wall bound of one call
        # A streaming call (backup, dump) that shows no progress for this long is stopped.
        self.idle_timeout = idle_timeout
        self.call_timeout = call_timeout  # bound of a call without a stream (default: timeout)
        self.warm: WarmPool | None = None  # backups started ahead of their items (warm.py)

    # --- plumbing ----------------------------------------------------------------------------

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Return the child environment: repository, password source, zone for `--time`, plus
        `extra`. Raise ResticError when the password source fails."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        try:
            env.update(self.repo.password.restic_env())
        except SecretError as exc:
            raise ResticError(f"{self.repo.label}: password source failed: {exc}") from None
        env["RESTIC_REPOSITORY"] = self.repo.location
        env["RESTIC_PROGRESS_FPS"] = "2"
        if self.timezone:
            env["TZ"] = self.timezone
        env.update(extra or {})
        return env

    def _argv(self, args: Sequence[str]) -> list[str]:
        return [self.binary, *self.repo.extra_args, *args]

    def _clearing_stale_lock(self, call: Callable[[], T]) -> T:
        """Run `call`; when it meets a provably stale lock, clear it and run `call` once more."""
        try:
            return call()
        except RepositoryLocked as exc:
            if not self.clear_stale_locks(exc):
                raise
        return call()

    def run(self, args: Sequence[str], *, what: str, timeout: float | None = None,
            retry_stale_lock: bool = True, env_extra: dict[str, str] | None = None) -> str:
        """Given restic arguments, run them and return stdout. Raise ResticTimeout after
        `timeout` (default: this repository's call_timeout for a call that only reads the
        repository's metadata, else its timeout), else the mapped ResticError."""
        deadline = timeout if timeout is not None else (
            self.call_timeout if self.call_timeout and args[:1] and args[0] in _METADATA_CALLS
            else self.timeout)

        def once() -> str:
            try:
                proc = subprocess.run(self._argv(args), env=self.env(env_extra),
                                      capture_output=True, text=True, timeout=deadline,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise ResticTimeout(f"{self.repo.label}: {what} did not finish within "
                                    f"{deadline:.0f} s; it was stopped {_SLOW}") from None
            if proc.returncode != 0:
                raise_for(proc.returncode, proc.stderr, self.repo, what)
            return proc.stdout

        return self._clearing_stale_lock(once) if retry_stale_lock else once()

    # --- repository --------------------------------------------------------------------------

    def probe(self) -> None:
        """Open the repository the way a backup would (password, then a lock), writing
        nothing. Raise the mapped error (missing, wrong password, locked)."""
        self.run(["cat", "config"], what="opening the repository")

    def exists(self) -> bool:
        """Return True when the repository exists and opens with its password, False when it
        does not exist. Raise the mapped error otherwise (wrong password, ...)."""
        try:
            self.run(["cat", "config", "--no-lock"], what="opening the repository")
        except RepositoryMissing:
            return False
        return True

    def init(self, *, copy_chunker_params_from: Repository | None = None) -> bool:
        """Create the repository unless it exists (idempotent), with the chunker parameters
        of `copy_chunker_params_from` when given; return True when it was created."""
        if self.exists():
            return False
        args = ["init", "--json"]
        env_extra: dict[str, str] = {}
        if copy_chunker_params_from is not None:
            args += ["--copy-chunker-params", "--from-repo", copy_chunker_params_from.location]
            env_extra = from_repo_env(copy_chunker_params_from)
        self.run(args, what="creating the repository", retry_stale_lock=False,
                 env_extra=env_extra)
        return True

    def snapshots(self, *, tags: Sequence[str] = (), lock: bool = True) -> list[Snapshot]:
        """Return the snapshots carrying all of `tags`, oldest first. `lock=False` reads them
        without taking a lock (over sftp, writing and removing the lock file is a fifth of
        the call)."""
        args = ["snapshots", "--json"]
        if tags:
            args += ["--tag", ",".join(tags)]
        if not lock:
            args.append("--no-lock")
        out = self.run(args, what="listing snapshots")
        snaps = [Snapshot.from_json(s) for s in json.loads(out or "[]")]
        return sorted(snaps, key=lambda s: s.time)

    def tag(self, snapshot_id: str, add: Sequence[str]) -> None:
        """Add tags to one snapshot."""
        self.run(["tag", "--add", ",".join(add), snapshot_id], what="tagging a snapshot")

    # --- backup ------------------------------------------------------------------------------

    def backup_command(self, command: Sequence[str], *, filename: str, tags: Sequence[str],
                       at: datetime, on_progress: Callable[[int], None] | None = None,
                       env_extra: dict[str, str] | None = None) -> BackupSummary:
        """Stream `command`'s stdout into a new snapshot (`--stdin-from-command`) and return
        its summary. When the command exits non-zero restic writes no snapshot and this
        raises ResticFatal."""
        when = self.time_args(at)
        args = self.stdin_backup_args(command, filename=filename, tags=tags, time_args=when)
        pool, claimed = self.warm, []

        def claim() -> Started | None:
            warm = take(pool, filename, tags, when, command, env_extra or {})
            if warm is None:
                return None
            claimed.append(warm)
            return warm.proc, warm.group, warm.lines()

        try:
            return self._backup(args, on_progress, env_extra or {},
                                what=f"backup of {filename}", claim=claim)
        finally:
            for warm in claimed:
                warm.release()

    def backup_paths(self, paths: Sequence[str | Path], *, tags: Sequence[str], at: datetime,
                     exclude_file: Path | None = None,
                     on_progress: Callable[[int], None] | None = None) -> BackupSummary:
        """Back up folders and return the summary; raise BackupIncomplete (with the snapshot
        id) when some files could not be read."""
        args = ["backup", "--json", *self._common(tags, at)]
        if exclude_file is not None:
            args += ["--exclude-file", str(exclude_file)]
        args += ["--", *map(str, paths)]
        return self._backup(args, on_progress, {}, what="backup of " + ", ".join(map(str, paths)))

    @staticmethod
    def stdin_backup_args(command: Sequence[str], *, filename: str, tags: Sequence[str],
                          time_args: Sequence[str]) -> list[str]:
        """Return `backup --stdin-from-command` of `command` (warm.py starts with these)."""
        return ["backup", "--json", "--stdin-filename", filename, "--tag", ",".join(tags),
                *time_args, "--stdin-from-command", "--", *command]

    def _common(self, tags: Sequence[str], at: datetime) -> list[str]:
        """Given the tags and the logical time, return restic's --tag/--time arguments.

        restic reads --time as a wall-clock time in its own TZ (set to self.timezone in env()),
        so an aware time is first turned into that zone: a UTC 18:00 is 03:00 in Seoul, not
        18:00 there."""
        return ["--tag", ",".join(tags), *self.time_args(at)]

    def time_args(self, at: datetime) -> list[str]:
        """Given a logical time, return restic's `--time` arguments for it (see _common)."""
        if at.tzinfo is not None:
            at = at.astimezone(ZoneInfo(self.timezone)) if self.timezone else at.astimezone()
        return ["--time", at.strftime(RESTIC_TIME_FORMAT)]

    def _backup(self, args: list[str], on_progress: Callable[[int], None] | None,
                env_extra: dict[str, str], *, what: str,
                claim: Callable[[], Started | None] | None = None) -> BackupSummary:
        summary: dict[str, Any] = {}

        done_so_far = [-1]

        def on_line(line: str) -> bool:
            """Progress is more bytes read (a stalled pg_dump or a full disk shows none)."""
            if not line.startswith("{"):
                return False
            try:
                msg = json.loads(line)
            except ValueError:
                return False
            kind = msg.get("message_type")
            if kind == "status":
                n = int(msg.get("bytes_done") or 0)
                if on_progress is not None:
                    on_progress(n)
                moved, done_so_far[0] = n > done_so_far[0], max(n, done_so_far[0])
                return moved
            if kind == "summary":
                summary.update(msg)
            return True

        done = self.stream(args, what=what, on_line=on_line, env_extra=env_extra, ok=(0, 3),
                           after_timeout=" (no snapshot written)", progress=True, claim=claim)
        if done.code == 3:
            snap = summary.get("snapshot_id")
            errors = [ln for ln in done.stderr.splitlines() if '"error"' in ln][:3]
            raise BackupIncomplete(f"{self.repo.label}: {what}: some files could not be read; "
                                   f"snapshot {str(snap)[:8]} is incomplete",
                                   snapshot_id=snap, detail="\n".join(errors))
        if not summary.get("snapshot_id"):
            raise ResticFatal(f"{self.repo.label}: {what}: restic reported no snapshot")
        return BackupSummary.from_json(summary)

    def stream(self, args: Sequence[str], *, what: str,
               on_line: Callable[[str], bool | None],
               env_extra: dict[str, str] | None = None, ok: Sequence[int] = (0,),
               after_timeout: str = "", progress: bool = False,
               claim: Callable[[], Started | None] | None = None) -> Finished:
        """Given restic arguments, run them bounded by this repository's timeout and, with
        `progress` (`on_line` returns True for a line that shows some), by its idle_timeout
        (SIGINT, then SIGKILL); handing every stdout line to `on_line`, and
        return how restic ended when its exit status is one of `ok`. restic is stopped at
        once when its disk is full (it would wait for ever). A provably stale lock is cleared
        once. `claim` may hand over a warm backup already running these arguments for the
        first attempt (warm.py). Raise ResticTimeout (its message ending in `after_timeout`),
        RepositoryFull, else the mapped ResticError."""
        claims = [claim] if claim is not None else []

        def once() -> Finished:
            started = claims.pop()() if claims else None  # a retry always starts cold
            done = run_bounded(self._argv(args), self.env(env_extra), timeout=self.timeout,
                               on_line=on_line,
                               idle_timeout=self.idle_timeout if progress else None,
                               stop_on=lambda ln: "full" if disk_full(ln) else None,
                               started=started)
            if done.reason == "idle":
                raise ResticTimeout(f"{self.repo.label}: {what} moved no data for "
                                    f"{self.idle_timeout:.0f} s {_SLOW}; it was stopped"
                                    f"{after_timeout}", detail=done.stderr[-2000:])
            if done.timed_out:
                raise ResticTimeout(f"{self.repo.label}: {what} did not finish within "
                                    f"{self.timeout:.0f} s; it was stopped{after_timeout}",
                                    detail=done.stderr[-2000:])
            if done.code not in ok and interrupt.requested() and not disk_full(done.stderr):
                # Stopped by Ctrl-C/SIGTERM: restic's own words would be "context canceled".
                raise ResticFatal(f"{self.repo.label}: {what} was interrupted{after_timeout}",
                                  restic_exit=done.code, detail=done.stderr[-2000:])
            if done.code not in ok or done.reason:
                raise_for(done.code or 1, done.stderr, self.repo, what)
            return done

        return self._clearing_stale_lock(once)

    # --- copying between repositories (tiers B and C) ----------------------------------------

    def copy(self, source: Repository, snapshot_ids: Sequence[str],
             on_line: Callable[[str], None] = lambda _line: None) -> None:
        """Copy `snapshot_ids` of `source` here (`restic copy -v --from-repo`), each
        line of its report to `on_line`. restic skips snapshots already here (by `original`
        id) and ignores ids it cannot find, so callers confirm the result (copying.copy_set).
        Raise ResticTimeout after this repository's timeout, else the mapped ResticError.
        """
        self.stream(["copy", "-v", "--from-repo", source.location, "--", *snapshot_ids],
                    what=f"copying {len(snapshot_ids)} snapshot(s) from {source.label}",
                    on_line=on_line, env_extra=from_repo_env(source))

    # --- locks -------------------------------------------------------------------------------

    def locks(self) -> list[LockHolder]:
        """Return the locks in the repository now (read without taking a lock)."""
        holders = []
        for lock_id in self.run(["list", "locks", "--no-lock"], what="listing locks").split():
            try:
                data = json.loads(self.run(["cat", "lock", lock_id, "--no-lock"],
                                           what="reading a lock"))
            except (ResticFatal, ValueError):
                continue  # removed between list and cat: its holder finished
            holders.append(LockHolder(int(data.get("pid", 0)), str(data.get("hostname", "")),
                                      str(data.get("username", "")), str(data.get("time", ""))))
        return holders

    def may_hold_locks(self) -> bool:
        """Return False when the repository is a local folder whose `locks/` holds no file (no
        restic process needed to know there is nothing to clear), else True."""
        if self.repo.extra_args or ":" in self.repo.location.split("/", 1)[0]:
            return True  # a backend (sftp:, s3:, …): only restic can tell
        try:
            return any(os.scandir(Path(self.repo.location) / "locks"))
        except OSError:
            return True

    def clear_stale_locks(self, met: RepositoryLocked | None = None) -> list[LockHolder]:
        """The stale-lock policy of every tier (module docstring). Given the RepositoryLocked
        a call met (None: look at the repository's locks first), run `restic unlock` (stale
        locks only) when a lock is provably stale (taken on this host by a process that is
        gone) and return those locks; return [] and remove nothing otherwise. Raise the
        mapped ResticError when the locks cannot be listed or removed."""
        if met is not None:
            holder = met.holder
            stale = [holder] if holder is not None and holder.provably_stale else []
        else:
            stale = [h for h in self.locks() if h.provably_stale]
        if stale:
            self.run(["unlock"], what="removing stale locks", retry_stale_lock=False)
        return stale

    # --- repository care (care/: the weekly forget/prune and check) --------------------------

    def forget(self, snapshot_ids: Sequence[str], *, what: str) -> None:
        """Given snapshot ids, remove those snapshots (`restic forget <ids>`, never a
        `--keep-*` rule: care/ decides what goes). restic exits 0 on an id it cannot find, so
        callers list afterwards. Raise the mapped ResticError."""
        self.run(["forget", "--", *snapshot_ids], what=what)

    def prune(self) -> str:
        """Remove the data no snapshot references (`restic prune`) and return restic's text
        report (0.18 prints no JSON for prune). Raise ResticTimeout past this repository's
        timeout, else the mapped ResticError."""
        return self.run(["prune"], what="pruning unreferenced data")

    def check(self, args: Sequence[str], *, what: str) -> tuple[Finished, list[str]]:
        """Given `restic check` arguments (`check --json ...`), run them bounded like `stream`
        and return how restic ended (exit 0, or 1 when it found damage or failed) with its
        stdout lines; the caller reads the findings. Raise ResticTimeout past this
        repository's timeout, else the mapped ResticError for any other exit status."""
        lines: list[str] = []

        def on_line(line: str) -> None:
            lines.append(line)

        done = self.stream(args, what=what, on_line=on_line, ok=(0, 1),
                           after_timeout="; try a smaller --read-data-subset")
        return done, lines

    # --- reading back ------------------------------------------------------------------------

    def dump(self, snapshot_id: str, path: str) -> AbstractContextManager[IO[bytes]]:
        """Given a snapshot and a file in it, return a context manager yielding a binary
        stream of that file (restic/dump.py: drained on leaving, a stale lock met before the
        first byte cleared and tried once more). Raise the mapped error when restic fails."""
        from axe_pipelines.restic.dump import dump

        return dump(self, snapshot_id, path)
