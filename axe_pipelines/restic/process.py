"""Finding the restic binary and running it bounded in time.

Every long restic call (backup, copy, dump) runs under a `ProcessDeadline`: when its time is up
restic gets SIGINT, so it can remove its repository lock, and SIGKILL only if it has not
stopped 5 s later. `run_bounded` is the one spawn-stream-stop loop of the backup and copy calls.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from axe_pipelines.restic.errors import ResticNotFound

MIN_VERSION = (0, 17)
_HINT = "run scripts/bootstrap-restic, or install restic 0.17+ and set AXE_RESTIC"


def restic_version(binary: str) -> tuple[int, int, int] | None:
    """Given a path, return the (major, minor, patch) `restic version` prints, or None when it
    does not run or prints no restic version."""
    try:
        out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"restic (\d+)\.(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


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


class ProcessDeadline:
    """A timer that stops a child process when its time is up: SIGINT first (restic then
    removes its lock), SIGKILL when it has not exited 5 s later. Without `seconds` (None or
    0) it never fires. `passed` says afterwards whether it had to stop the process."""

    def __init__(self, proc: subprocess.Popen, seconds: float | None):
        self.passed = False
        self._timer = threading.Timer(seconds, self._stop, args=(proc,)) if seconds else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def _stop(self, proc: subprocess.Popen) -> None:
        self.passed = True
        try:
            proc.send_signal(signal.SIGINT)
            for _ in range(50):
                if proc.poll() is not None:
                    return
                time.sleep(0.1)
            proc.kill()
        except ProcessLookupError:
            pass

    def cancel(self) -> None:
        """Given a process that has finished (or is about to be killed), stop the timer."""
        if self._timer is not None:
            self._timer.cancel()


@dataclass(frozen=True)
class Finished:
    """How a bounded process ended: exit status, its stderr, whether the deadline stopped it."""

    code: int
    stderr: str
    timed_out: bool


def run_bounded(argv: Sequence[str], env: dict[str, str], *, timeout: float | None,
                on_line: Callable[[str], None]) -> Finished:
    """Given argv and its environment, run it with stdin closed, hand every stdout line to
    `on_line` as it arrives and collect stderr; stop it at `timeout` (ProcessDeadline).
    Return how it finished; the process is never left running, even when `on_line` raises."""
    proc = subprocess.Popen(list(argv), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    stderr_chunks: list[str] = []
    # stderr is read on the side so a chatty restic never blocks on a full pipe.
    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()),
                              daemon=True)
    reader.start()
    deadline = ProcessDeadline(proc, timeout)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line)
        code = proc.wait()
    finally:
        deadline.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    return Finished(code, "".join(stderr_chunks), deadline.passed)


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
