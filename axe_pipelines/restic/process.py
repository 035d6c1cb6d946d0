"""Finding the restic binary and running it bounded in time.

Every long restic call (backup, copy, dump) runs under a `Watchdog`: when its time is up (a
wall bound, or an idle bound: no progress for so long, so a big backup that moves is never cut
off) restic gets SIGINT, so it can remove its repository lock, and SIGKILL only if it has not
stopped 5 s later. `run_bounded` is the one spawn-stream-stop loop of the backup and copy
calls; under `axe backup`'s stop handler its child leads a process group of its own and is
stopped with it on Ctrl-C/SIGTERM (interrupt.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from axe_pipelines import interrupt
from axe_pipelines.restic.errors import ResticNotFound

MIN_VERSION = (0, 17)
_HINT = "run scripts/bootstrap-restic, or install restic 0.17+ and set AXE_RESTIC"


def restic_version(binary: str) -> tuple[int, int, int] | None:
    """Given a path, return the (major, minor, patch) `restic version` prints, or None when it
    does not run or prints no restic version. Remembered per binary (path, size, mtime) in
    this process and, with DAGSTER_HOME set, in `$DAGSTER_HOME/axe/restic-versions.json`:
    every run used to start a restic process only to ask this."""
    try:
        st = os.stat(binary)
    except OSError:
        return None
    key = f"{os.path.realpath(binary)}:{st.st_size}:{st.st_mtime_ns}"
    if key in _VERSIONS:
        return _VERSIONS[key]
    cache = _version_cache()
    known = _read_versions(cache)
    if isinstance(known.get(key), list) and len(known[key]) == 3:
        found: tuple[int, int, int] | None = tuple(known[key])  # type: ignore[assignment]
    else:
        found = _ask_version(binary)
        if found is not None and cache is not None:
            _write_versions(cache, {**known, key: list(found)})
    _VERSIONS[key] = found
    return found


_VERSIONS: dict[str, tuple[int, int, int] | None] = {}


def _ask_version(binary: str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"restic (\d+)\.(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _version_cache() -> Path | None:
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) / "axe" / "restic-versions.json" if home else None


def _read_versions(path: Path | None) -> dict[str, object]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_versions(path: Path, data: dict[str, object]) -> None:
    # A cache: a home that is not writable (yet) only means asking restic next time.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass


def _describe(binary: str, version: tuple[int, int, int] | None) -> str:
    return f"{binary} ({'.'.join(map(str, version)) if version else 'unknown version'})"


def find_restic() -> str:
    """Return the path of a restic >= 0.17: $AXE_RESTIC when set (that one or none), else the
    first good one of PATH and ./.tools/bin. Raise ResticNotFound saying how to get one."""
    chosen = os.environ.get("AXE_RESTIC")
    if chosen:
        # The operator named this binary: use it or refuse, never quietly run another one.
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise ResticNotFound(f"AXE_RESTIC={chosen} is not an executable file; point it "
                                 f"at restic 0.17+ (scripts/bootstrap-restic fetches one) or "
                                 f"unset it")
        version = restic_version(chosen)
        if version and version >= MIN_VERSION:
            return chosen
        raise ResticNotFound(f"restic is too old: AXE_RESTIC={_describe(chosen, version)}; "
                             f"need >= 0.17 for --stdin-from-command; {_HINT}")
    candidates = [shutil.which("restic"),
                  str(Path(__file__).resolve().parents[2] / ".tools" / "bin" / "restic")]
    seen_old: list[str] = []
    for c in candidates:
        if not c or not os.access(c, os.X_OK):
            continue
        version = restic_version(c)
        if version and version >= MIN_VERSION:
            return c
        seen_old.append(_describe(c, version))
    if seen_old:
        raise ResticNotFound(f"restic is too old: {', '.join(seen_old)}; need >= 0.17 for "
                             f"--stdin-from-command; {_HINT}")
    raise ResticNotFound(f"restic not found; {_HINT}")


class Watchdog:
    """Stops a child process when it is due: `wall` seconds after the start, `idle` seconds
    after the last `touch()` (the caller's sign of progress, e.g. more bytes read), or when
    `stop(reason)` is called. It sends SIGINT (to the child's process group with `group`) so
    restic removes its lock, then SIGKILL if it has not exited 5 s later. `reason` says why
    it stopped the child: "wall", "idle", the caller's reason, or "" when it did not."""

    def __init__(self, proc: subprocess.Popen, *, wall: float | None = None,
                 idle: float | None = None, group: bool = False):
        self.reason = ""
        self._proc, self._group, self._idle = proc, group, idle
        self._wall_at = time.monotonic() + wall if wall else None
        self._last = time.monotonic()
        self._done = threading.Event()
        if wall or idle:
            threading.Thread(target=self._watch, daemon=True, name="axe-watchdog").start()

    @property
    def passed(self) -> bool:
        """True when the wall or the idle bound stopped the child."""
        return self.reason in ("wall", "idle")

    def touch(self) -> None:
        """The child made progress: the idle bound starts again from now."""
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            now = time.monotonic()
            if self._wall_at is not None and now > self._wall_at:
                self.stop("wall")
            elif self._idle and now - self._last > self._idle:
                self.stop("idle")
            if self.reason:
                return

    def stop(self, reason: str) -> None:
        """Given why, stop the child now (once; the first reason is kept)."""
        if self.reason:
            return
        self.reason = reason
        threading.Thread(target=self._interrupt, daemon=True, name="axe-stop-child").start()

    def _interrupt(self) -> None:
        interrupt.send(self._proc, signal.SIGINT, group=self._group)
        for _ in range(50):
            if self._proc.poll() is not None:
                return
            time.sleep(0.1)
        interrupt.send(self._proc, signal.SIGKILL, group=self._group)

    def cancel(self) -> None:
        """The child has finished (or is about to be killed): stop watching it."""
        self._done.set()


class Touching:
    """A stream read from a watched child that tells its Watchdog each time bytes come
    through: reading is progress, so the idle bound spares a reader that keeps reading."""

    def __init__(self, stream: IO[bytes], dog: Watchdog):
        self._stream, self._dog = stream, dog

    def read(self, size: int = -1) -> bytes:
        """Given a size, read up to that much (all with -1) and count it as progress."""
        data = self._stream.read(size)
        if data:
            self._dog.touch()
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def ProcessDeadline(proc: subprocess.Popen, seconds: float | None) -> Watchdog:  # noqa: N802
    """Given a child and a wall time (None or 0: none), return a Watchdog with only that
    bound (the name the dump reader knew it by)."""
    return Watchdog(proc, wall=seconds)


@dataclass(frozen=True)
class Finished:
    """How a bounded process ended: exit status, its stderr, whether a bound (wall or idle)
    stopped it, and why it was stopped ("wall", "idle", a caller's reason, or "")."""

    code: int
    stderr: str
    timed_out: bool
    reason: str = ""


def spawn(argv: Sequence[str], env: dict[str, str], *, text: bool = True,
          group: bool = False) -> subprocess.Popen:
    """Given argv and its environment, start it with stdin closed and stdout/stderr piped;
    with `group`, leading a process group of its own: a stop (interrupt.py, Watchdog) then
    signals it and what it runs (restic's pg_dump) together, and a terminal's Ctrl-C reaches
    it only through axe, which stops it with SIGINT so restic removes its lock. Without a
    stop handler installed (interrupt.installed), the child stays in axe's group and gets a
    terminal's Ctrl-C itself, as before."""
    return subprocess.Popen(list(argv), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=text,
                            process_group=0 if group else None)


# A process already running (a warm backup, warm.py): it, whether it leads its own process
# group, and its stdout lines.
Started = tuple[subprocess.Popen, bool, Iterable[str]]


def run_bounded(argv: Sequence[str], env: dict[str, str], *, timeout: float | None,
                on_line: Callable[[str], bool | None], idle_timeout: float | None = None,
                stop_on: Callable[[str], str | None] | None = None,
                started: Started | None = None) -> Finished:
    """Given argv and its environment, run it with stdin closed, hand every stdout line to
    `on_line` as it arrives (a true return is progress: the idle bound starts again) and
    collect stderr, stopping it early when `stop_on(stderr line)` names a reason; stop it at
    `timeout` or after `idle_timeout` without progress (Watchdog), or on a stop signal
    (interrupt.py). With `started` (a process already running that argv, whether it leads
    its own process group, and its stdout lines: a warm backup, warm.py), follow that one
    instead. Return how it finished; the process is never left running, even when `on_line`
    raises."""
    if started is not None:
        proc, group, lines = started
    else:
        group = interrupt.installed()
        proc = spawn(argv, env, group=group)
        assert proc.stdout is not None
        lines = proc.stdout
    dog = Watchdog(proc, wall=timeout, idle=idle_timeout, group=group)
    stderr_lines: list[str] = []

    def read_stderr() -> None:
        # Read on the side so a chatty restic never blocks on a full pipe.
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr_lines.append(line)
            reason = stop_on(line) if stop_on else None
            if reason:
                dog.stop(reason)

    reader = threading.Thread(target=read_stderr, daemon=True, name="axe-restic-stderr")
    reader.start()
    with interrupt.watched(proc, group=group):
        try:
            for line in lines:
                if on_line(line):
                    dog.touch()
            code = proc.wait()
        finally:
            dog.cancel()
            if proc.poll() is None:  # on_line raised, or Ctrl-C without a stop handler
                interrupt_and_drain(proc, grace_s=5)
    reader.join(5)
    return Finished(code, "".join(stderr_lines), dog.passed, dog.reason)


def interrupt_and_drain(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """Given a running process whose stdout we stopped reading, stop it with SIGINT (restic
    then removes its lock) while draining its output so it is not blocked writing; kill it
    only if it has not stopped within `grace_s` seconds."""
    out = proc.stdout

    def drain() -> None:
        try:
            while out is not None and out.read(1 << 20):
                pass
        except (OSError, ValueError):
            pass

    drainer = threading.Thread(target=drain, daemon=True)
    try:
        proc.send_signal(signal.SIGINT)
    except ProcessLookupError:
        pass
    drainer.start()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    drainer.join(5)
