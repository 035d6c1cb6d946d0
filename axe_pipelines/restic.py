"""Typed adapter over the restic CLI (>= 0.17): `--json` output in, exceptions with operator
messages out.

restic's documented exit codes become distinct exceptions: 1 ResticFatal, 3 BackupIncomplete,
10 RepositoryMissing, 11 RepositoryLocked, 12 WrongPassword. Passwords reach restic only through
its environment (see secrets.py), never argv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from axe_pipelines.errors import Unusable
from axe_pipelines.secrets import SecretError, SecretSource

MIN_VERSION = (0, 17)
RESTIC_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class ResticError(Unusable):
    """A restic call failed. `restic_exit` is restic's own exit status (None when restic never
    ran); the message says what to do next. Reaching `main`, it ends `axe` with exit 3."""

    def __init__(self, message: str, *, restic_exit: int | None = None, detail: str = ""):
        super().__init__(message)
        self.restic_exit = restic_exit
        self.detail = detail


class ResticNotFound(ResticError):
    pass


class ResticFatal(ResticError):
    pass


class BackupIncomplete(ResticError):
    """Exit 3: a snapshot was written but some source files could not be read."""

    def __init__(self, message: str, *, snapshot_id: str | None, detail: str = ""):
        super().__init__(message, restic_exit=3, detail=detail)
        self.snapshot_id = snapshot_id


class RepositoryMissing(ResticError):
    pass


class RepositoryLocked(ResticError):
    def __init__(self, message: str, *, holder: LockHolder | None, detail: str = ""):
        super().__init__(message, restic_exit=11, detail=detail)
        self.holder = holder


class WrongPassword(ResticError):
    pass


class ResticTimeout(ResticError):
    pass


@dataclass(frozen=True)
class LockHolder:
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


@dataclass(frozen=True)
class Repository:
    """Where a repository is and how to open it. `label` names it in messages
    ("tier A repository /x")."""

    location: str
    password: SecretSource
    label: str
    extra_args: tuple[str, ...] = ()  # e.g. ("-o", "sftp.args=...") for the sftp backend


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    tags: tuple[str, ...]
    paths: tuple[str, ...]
    hostname: str
    original: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def tag(self, key: str) -> str | None:
        """Value of a `key=value` tag, or None."""
        prefix = key + "="
        for t in self.tags:
            if t.startswith(prefix):
                return t[len(prefix):]
        return None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            id=data["id"],
            short_id=data.get("short_id", data["id"][:8]),
            time=_parse_time(data["time"]),
            tags=tuple(data.get("tags") or ()),
            paths=tuple(data.get("paths") or ()),
            hostname=data.get("hostname", ""),
            original=data.get("original"),
            summary=data.get("summary") or {},
        )


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    bytes_read: int
    bytes_added: int
    bytes_stored: int
    duration_s: float
    files: int


def _parse_time(text: str) -> datetime:
    # restic prints nanoseconds; Python takes microseconds.
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return datetime.fromisoformat(text)
    frac = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}{frac}{zone}")


def find_restic(explicit: str | None = None) -> str:
    """Returns the path of a restic >= 0.17 ($AXE_RESTIC, PATH, ./.tools/bin) or raises
    ResticNotFound saying how to get one."""
    candidates = [explicit, os.environ.get("AXE_RESTIC"), shutil.which("restic")]
    candidates.append(str(Path(__file__).resolve().parent.parent / ".tools" / "bin" / "restic"))
    seen_old: list[str] = []
    for c in candidates:
        if not c or not os.access(c, os.X_OK):
            continue
        version = restic_version(c)
        if version and version >= MIN_VERSION:
            return c
        seen_old.append(f"{c} ({'.'.join(map(str, version)) if version else 'unknown version'})")
    hint = "run scripts/bootstrap-restic, or install restic 0.17+ and set AXE_RESTIC"
    if seen_old:
        raise ResticNotFound(f"restic is too old: {', '.join(seen_old)}; need >= 0.17 for "
                             f"--stdin-from-command; {hint}")
    raise ResticNotFound(f"restic not found; {hint}")


def restic_version(binary: str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"restic (\d+)\.(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


_LOCK_RE = re.compile(
    r"locked (?:exclusively )?by PID (\d+) on (\S+) by (\S+).*?lock was created at ([^\n(]+)",
    re.S,
)


def _exit_message(stderr: str) -> str:
    """restic's own message: the `exit_error` JSON line's text, else the last stderr lines."""
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


class Restic:
    """One repository, driven through the restic binary."""

    def __init__(self, repo: Repository, *, binary: str | None = None,
                 timezone: str | None = None, timeout: float | None = None):
        self.repo = repo
        self.binary = binary or find_restic()
        self.timezone = timezone
        self.timeout = timeout

    # --- plumbing ----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The child environment: repository, password source, zone for `--time`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        try:
            env.update(self.repo.password.restic_env())
        except SecretError as exc:
            raise ResticError(f"{self.repo.label}: password source failed: {exc}") from None
        env["RESTIC_REPOSITORY"] = self.repo.location
        env["RESTIC_PROGRESS_FPS"] = "2"
        if self.timezone:
            env["TZ"] = self.timezone
        return env

    def _argv(self, args: Sequence[str]) -> list[str]:
        return [self.binary, *self.repo.extra_args, *args]

    def _raise_for(self, code: int, stderr: str, what: str) -> None:
        msg = _exit_message(stderr)
        # Lines that are not restic's JSON come from the child command (pg_dump's errors).
        child = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("{")]
        if child:
            msg = msg + "\n" + "\n".join(child[-20:])
        label = self.repo.label
        if code == 10:
            raise RepositoryMissing(
                f"{label} does not exist at {self.repo.location}; create it with "
                f"`axe init` (or check that its disk is mounted)", restic_exit=10, detail=msg)
        if code == 11:
            m = _LOCK_RE.search(msg)
            holder = LockHolder(int(m[1]), m[2], m[3], m[4].strip()) if m else None
            who = (f"PID {holder.pid} on {holder.host} since {holder.created}"
                   if holder else "another process")
            raise RepositoryLocked(
                f"{label} is locked by {who}; wait for it to finish, or if that process is gone "
                f"run `restic unlock` on the repository", holder=holder, detail=msg)
        if code == 12:
            raise WrongPassword(
                f"wrong password for {label} ({self.repo.password.describe()}); check that "
                f"source, the repository was not re-keyed", restic_exit=12, detail=msg)
        if code == 130:
            raise ResticFatal(f"{label}: {what} was interrupted", restic_exit=code, detail=msg)
        first = msg.splitlines()[0] if msg else f"restic exited {code}"
        raise ResticFatal(f"{label}: {what} failed: {first}", restic_exit=code, detail=msg)

    def run(self, args: Sequence[str], *, what: str, timeout: float | None = None,
            retry_stale_lock: bool = True) -> str:
        """Runs restic with `args`; returns stdout or raises the mapped exception."""
        deadline = timeout if timeout is not None else self.timeout
        try:
            proc = subprocess.run(self._argv(args), env=self.env(), capture_output=True,
                                  text=True, timeout=deadline, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ResticTimeout(f"{self.repo.label}: {what} did not finish within "
                                f"{deadline:.0f} s; it was stopped") from None
        if proc.returncode == 0:
            return proc.stdout
        try:
            self._raise_for(proc.returncode, proc.stderr, what)
        except RepositoryLocked as exc:
            if retry_stale_lock and self.clear_stale_lock(exc):
                return self.run(args, what=what, timeout=timeout, retry_stale_lock=False)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def clear_stale_lock(self, exc: RepositoryLocked) -> bool:
        """Removes the lock only when it is provably stale (its process on this host is gone);
        returns True when it did."""
        if exc.holder is None or not exc.holder.provably_stale:
            return False
        # `restic unlock` without --remove-all removes stale locks only.
        self.run(["unlock"], what="removing a stale lock", retry_stale_lock=False)
        return True

    # --- repository --------------------------------------------------------------------------

    def probe(self) -> None:
        """Opens the repository the way a backup would (password, then a lock); raises the
        mapped error (missing, wrong password, locked) without writing anything."""
        self.run(["cat", "config"], what="opening the repository")

    def exists(self) -> bool:
        """True when the repository exists and opens with its password."""
        try:
            self.run(["cat", "config", "--no-lock"], what="opening the repository")
        except RepositoryMissing:
            return False
        return True

    def init(self, *, copy_chunker_params_from: Repository | None = None) -> bool:
        """Creates the repository unless it exists (idempotent); True when it was created."""
        if self.exists():
            return False
        args = ["init", "--json"]
        env_extra: dict[str, str] = {}
        if copy_chunker_params_from is not None:
            args += ["--copy-chunker-params", "--from-repo", copy_chunker_params_from.location]
            env_extra = _from_repo_env(copy_chunker_params_from)
        self._run_with_env(args, env_extra, what="creating the repository")
        return True

    def _run_with_env(self, args: Sequence[str], env_extra: dict[str, str], *, what: str) -> str:
        env = self.env()
        env.update(env_extra)
        try:
            proc = subprocess.run(self._argv(args), env=env, capture_output=True, text=True,
                                  timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ResticTimeout(f"{self.repo.label}: {what} did not finish within "
                                f"{self.timeout:.0f} s; it was stopped (a password command "
                                f"waiting for input, or a slow or vanished disk or link)") from None
        if proc.returncode != 0:
            self._raise_for(proc.returncode, proc.stderr, what)
        return proc.stdout

    def snapshots(self, *, tags: Sequence[str] = (), host: str | None = None,
                  path: str | None = None) -> list[Snapshot]:
        """Snapshots carrying all of `tags` (and host/path when given), oldest first."""
        args = ["snapshots", "--json"]
        if tags:
            args += ["--tag", ",".join(tags)]
        if host:
            args += ["--host", host]
        if path:
            args += ["--path", path]
        out = self.run(args, what="listing snapshots")
        snaps = [Snapshot.from_json(s) for s in json.loads(out or "[]")]
        return sorted(snaps, key=lambda s: s.time)

    def stats(self, mode: str = "raw-data") -> dict[str, Any]:
        return json.loads(self.run(["stats", "--json", "--mode", mode], what="reading stats"))

    def tag(self, snapshot_id: str, add: Sequence[str]) -> None:
        self.run(["tag", "--add", ",".join(add), snapshot_id], what="tagging a snapshot")

    # --- backup ------------------------------------------------------------------------------

    def backup_command(self, command: Sequence[str], *, filename: str, tags: Sequence[str],
                       at: datetime, on_progress: Callable[[int], None] | None = None,
                       env_extra: dict[str, str] | None = None) -> BackupSummary:
        """Streams `command`'s stdout into a new snapshot (`--stdin-from-command`). When the
        command exits non-zero restic writes no snapshot and this raises ResticFatal."""
        args = ["backup", "--json", "--stdin-filename", filename, *self._common(tags, at),
                "--stdin-from-command", "--", *command]
        return self._backup(args, on_progress, env_extra or {}, what=f"backup of {filename}")

    def backup_paths(self, paths: Sequence[str | Path], *, tags: Sequence[str], at: datetime,
                     exclude_file: Path | None = None,
                     on_progress: Callable[[int], None] | None = None) -> BackupSummary:
        """Backs up folders; raises BackupIncomplete (with the snapshot id) on exit 3."""
        args = ["backup", "--json", *self._common(tags, at)]
        if exclude_file is not None:
            args += ["--exclude-file", str(exclude_file)]
        args += ["--", *map(str, paths)]
        return self._backup(args, on_progress, {}, what="backup of " + ", ".join(map(str, paths)))

    @staticmethod
    def _common(tags: Sequence[str], at: datetime) -> list[str]:
        return ["--tag", ",".join(tags), "--time", at.strftime(RESTIC_TIME_FORMAT)]

    def _backup(self, args: list[str], on_progress: Callable[[int], None] | None,
                env_extra: dict[str, str], *, what: str, _retried: bool = False) -> BackupSummary:
        env = self.env()
        env.update(env_extra)
        proc = subprocess.Popen(self._argv(args), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        stderr_chunks: list[str] = []
        reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()),
                                  daemon=True)
        reader.start()
        timer = _kill_after(proc, self.timeout)
        summary: dict[str, Any] | None = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith("{"):
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                kind = msg.get("message_type")
                if kind == "status" and on_progress is not None:
                    on_progress(int(msg.get("bytes_done") or 0))
                elif kind == "summary":
                    summary = msg
            code = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(5)
        stderr = "".join(stderr_chunks)
        if timer and timer.fired:
            raise ResticTimeout(f"{self.repo.label}: {what} did not finish within "
                                f"{self.timeout:.0f} s; it was stopped (no snapshot written)")
        if code == 3:
            snap = summary.get("snapshot_id") if summary else None
            errors = [ln for ln in stderr.splitlines() if '"error"' in ln][:3]
            raise BackupIncomplete(f"{self.repo.label}: {what}: some files could not be read; "
                                   f"snapshot {str(snap)[:8]} is incomplete",
                                   snapshot_id=snap, detail="\n".join(errors))
        if code != 0:
            try:
                self._raise_for(code, stderr, what)
            except RepositoryLocked as exc:
                if not _retried and self.clear_stale_lock(exc):
                    return self._backup(args, on_progress, env_extra, what=what, _retried=True)
                raise
        if not summary or not summary.get("snapshot_id"):
            raise ResticFatal(f"{self.repo.label}: {what}: restic reported no snapshot")
        return BackupSummary(
            snapshot_id=summary["snapshot_id"],
            bytes_read=int(summary.get("total_bytes_processed") or 0),
            bytes_added=int(summary.get("data_added") or 0),
            bytes_stored=int(summary.get("data_added_packed") or 0),
            duration_s=float(summary.get("total_duration") or 0.0),
            files=int(summary.get("total_files_processed") or 0),
        )

    # --- copying between repositories (tiers B and C) ----------------------------------------

    def copy(self, source: Repository, snapshot_ids: Sequence[str], *,
             timeout: float | None = None, _retried: bool = False) -> str:
        """Copies `snapshot_ids` of `source` into this repository (`restic copy --from-repo`).

        restic skips snapshots already here (it matches their `original` id) and ignores ids
        it cannot find, so callers verify the result by listing snapshots. On timeout restic
        gets SIGINT (so it can remove its lock), then SIGKILL, and this raises ResticTimeout.
        Returns restic's output; raises the mapped ResticError otherwise.
        """
        deadline = timeout if timeout is not None else self.timeout
        env = self.env()
        env.update(_from_repo_env(source))
        args = ["copy", "--from-repo", source.location, "--", *snapshot_ids]
        proc = subprocess.Popen(self._argv(args), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        timer = _kill_after(proc, deadline)
        try:
            out, err = proc.communicate()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if timer and timer.fired:
            raise ResticTimeout(f"{self.repo.label}: copying {len(snapshot_ids)} snapshot(s) "
                                f"did not finish within {deadline:.0f} s; it was stopped",
                                detail=err[-2000:])
        if proc.returncode != 0:
            try:
                self._raise_for(proc.returncode, err,
                                f"copying {len(snapshot_ids)} snapshot(s) from {source.label}")
            except RepositoryLocked as exc:
                if not _retried and self.clear_stale_lock(exc):
                    return self.copy(source, snapshot_ids, timeout=timeout, _retried=True)
                raise
        return out

    def locks(self) -> list[LockHolder]:
        """The locks in the repository now (read without taking a lock)."""
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

    def clear_stale_locks(self) -> list[LockHolder]:
        """Runs `restic unlock` (stale locks only) when at least one lock is provably stale
        (taken on this host by a process that is gone); returns those locks."""
        stale = [h for h in self.locks() if h.provably_stale]
        if stale:
            self.run(["unlock"], what="removing stale locks", retry_stale_lock=False)
        return stale

    # --- reading back ------------------------------------------------------------------------

    @contextmanager
    def dump(self, snapshot_id: str, path: str) -> Iterator[IO[bytes]]:
        """Yields a binary stream of one file of a snapshot.

        The caller may stop reading early: on leaving the block the rest is drained, so restic
        ends normally and removes its lock (a reader that just closes the pipe kills restic with
        SIGPIPE and leaves a stale lock behind). Raises the mapped error when restic fails.
        """
        proc = subprocess.Popen(self._argv(["dump", snapshot_id, path]), env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        stderr_chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()),
                                  daemon=True)
        reader.start()
        timer = _kill_after(proc, self.timeout)
        assert proc.stdout is not None
        try:
            yield proc.stdout
            while proc.stdout.read(1 << 20):
                pass
            code = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                # The reader raised: stop restic with SIGINT (it then removes its lock) while
                # draining its output, so it is not blocked writing; kill it only if it does
                # not stop within 30 s.
                out = proc.stdout

                def drain() -> None:
                    try:
                        while out.read(1 << 20):
                            pass
                    except (OSError, ValueError):
                        pass

                drainer = threading.Thread(target=drain, daemon=True)
                try:
                    proc.send_signal(2)  # SIGINT
                except ProcessLookupError:
                    pass
                drainer.start()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                drainer.join(5)
        reader.join(5)
        if timer and timer.fired:
            raise ResticTimeout(f"{self.repo.label}: reading {path} from {snapshot_id[:8]} did "
                                f"not finish within {self.timeout:.0f} s")
        if code != 0:
            self._raise_for(code, b"".join(stderr_chunks).decode(errors="replace"),
                            f"reading {path} from snapshot {snapshot_id[:8]}")


class _Timer:
    def __init__(self, proc: subprocess.Popen, seconds: float):
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire, args=(proc,))
        self._timer.daemon = True
        self._timer.start()

    def _fire(self, proc: subprocess.Popen) -> None:
        self.fired = True
        # SIGINT first: restic then removes its lock; kill if it does not stop.
        try:
            proc.send_signal(2)
            for _ in range(50):
                if proc.poll() is not None:
                    return
                time.sleep(0.1)
            proc.kill()
        except ProcessLookupError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def _kill_after(proc: subprocess.Popen, seconds: float | None) -> _Timer | None:
    return _Timer(proc, seconds) if seconds else None


def _from_repo_env(repo: Repository) -> dict[str, str]:
    """Environment naming `repo` as restic's source repository (`--from-repo`)."""
    env = {}
    for key, value in repo.password.restic_env().items():
        env[key.replace("RESTIC_", "RESTIC_FROM_", 1)] = value
    return env
