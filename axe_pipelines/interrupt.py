"""Stopping a run on Ctrl-C or SIGTERM within seconds, children and all.

`axe backup` runs each Dagster run in a worker thread (instance/guard.py), so this process's
main thread keeps the handlers `install` sets: Dagster's executor, on the main thread, would
take SIGINT and SIGTERM over and act on them only between steps (a night of several
databases is one step). On a signal `stop` records it, and every child process registered
here (`watched`) is sent its stop signal at once: restic SIGINT to its whole process group
(restic removes its lock and stops the pg_dump it runs), psql SIGTERM; what still runs
GRACE_S later gets SIGKILL. Work in progress fails with restic's "interrupted"; the lanes
check `requested` before each next item; the CLI ends with `axe: interrupted` and 130 / 143.
Plain: no Dagster here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from axe_pipelines.errors import EXIT_SIGINT, EXIT_SIGTERM, AxeError

GRACE_S = 5.0  # restic needs a moment to remove its lock; then whatever is left is killed
_EXIT = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}


class Interrupted(AxeError):
    """The operator (Ctrl-C) or the service manager (SIGTERM) stopped the command; its
    `exit_code` is 130 for SIGINT and 143 for SIGTERM."""

    def __init__(self, signum: int):
        super().__init__("interrupted")
        self.signum = signum
        self.exit_code = _EXIT.get(signal.Signals(signum), 128 + signum)


@dataclass(frozen=True)
class _Child:
    proc: subprocess.Popen
    sig: int
    group: bool  # the child leads its own process group: signal the whole group


_lock = threading.Lock()
_children: dict[int, _Child] = {}
_signum: list[int] = []  # the first stop signal received, if any
_stopped = threading.Event()
_installed = threading.Event()


def requested() -> int | None:
    """Return the signal that asked this process to stop, or None."""
    return _signum[0] if _signum else None


def raise_if_requested() -> None:
    """Raise Interrupted when a stop signal has been received."""
    if _signum:
        raise Interrupted(_signum[0])


def wait(seconds: float) -> bool:
    """Given a time, sleep that long or until a stop is requested; return True if it was."""
    return _stopped.wait(seconds)


def send(proc: subprocess.Popen, sig: int, *, group: bool) -> None:
    """Given a child, send it `sig` (its whole process group with `group`); a child that is
    already gone is left alone."""
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(child: _Child, sig: int) -> None:
    send(child.proc, sig, group=child.group)


def _kill_leftovers(after_s: float) -> None:
    time.sleep(after_s)
    with _lock:
        left = [c for c in _children.values() if c.proc.poll() is None]
    for child in left:
        _signal(child, signal.SIGKILL)


def stop(signum: int) -> None:
    """Given a signal number, record that this process must stop and send every watched
    child its stop signal now (SIGKILL to what still runs GRACE_S later; at once on a second
    signal)."""
    again = bool(_signum)
    if not again:
        _signum.append(signum)
    _stopped.set()
    with _lock:
        children = list(_children.values())
    for child in children:
        _signal(child, signal.SIGKILL if again else child.sig)
    if not again:
        threading.Thread(target=_kill_leftovers, args=(GRACE_S,), daemon=True,
                         name="axe-stop").start()


def install() -> None:
    """On the main thread, make SIGINT and SIGTERM call `stop` for the rest of this process
    (a command that runs backups calls it first); from then on restic starts in a process
    group of its own (restic/process.spawn), stopped by `stop`."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop(signum))
    _installed.set()


def installed() -> bool:
    """True once `install` has run in this process."""
    return _installed.is_set()


def adopt(proc: subprocess.Popen, *, sig: int = signal.SIGINT, group: bool = False) -> None:
    """Given a running child, its stop signal and whether it leads its own process group
    (spawned with process_group=0), put it on the list `stop` signals until `forget`; a stop
    already requested signals it at once."""
    child = _Child(proc, sig, group)
    with _lock:
        _children[proc.pid] = child
    if _signum:
        _signal(child, sig)


def forget(proc: subprocess.Popen) -> None:
    """Given a child that `adopt` listed, take it off the list."""
    with _lock:
        _children.pop(proc.pid, None)


@contextmanager
def watched(proc: subprocess.Popen, *, sig: int = signal.SIGINT,
            group: bool = False) -> Iterator[subprocess.Popen]:
    """Given a running child, its stop signal and whether it leads its own process group,
    keep it on the list `stop` signals while the block runs (adopt, then forget)."""
    adopt(proc, sig=sig, group=group)
    try:
        yield proc
    finally:
        forget(proc)


def reset() -> None:
    """Forget a received stop (tests that stop a run and go on in the same process)."""
    _signum.clear()
    _stopped.clear()
