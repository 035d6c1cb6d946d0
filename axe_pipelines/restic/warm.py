"""restic backups started ahead of their items, so that opening the repository is not on the
night's critical path (issue 12).

Every restic process that opens a repository first derives its key (about half a second of
CPU, calibrated at `restic init`) and loads the index before it starts its
`--stdin-from-command`. `axe backup --local` starts the first items' backups while Dagster
imports and opens its instance: each runs gate.py as its command, which waits for the item's
real command (the dump under its verifier) and becomes it. When an item is claimed, the next
one in plan order is started warm, so the lanes keep `depth` backups ready ahead.

A warm backup is only used for exactly the arguments it was started with (file name, tags,
logical time); one never claimed is aborted at the end — its gate exits 1 and restic stores
nothing, removing its lock — and a gate whose axe process is gone (kill -9) ends itself within
half a second. Runs a dagster-daemon launches have no pool: their backups start cold.
Plain: no Dagster here.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from axe_pipelines import interrupt
from axe_pipelines.restic.gate import up_path

if TYPE_CHECKING:
    from axe_pipelines.restic.client import Restic

_UP_POLL_S = 0.01  # how often wait_open looks for the first gate's up mark
WAIT_BOUND_S = 6 * 3600.0  # a gate gives up after this long without its order (axe alive)


@dataclass(frozen=True)
class WarmKey:
    """What a warm backup was started with: the stdin file name and the tags (the run's id
    among them); the logical time is the pool's."""

    filename: str
    tags: tuple[str, ...]


class Warm:
    """One restic backup waiting at its gate: the process (restic, leading its own process
    group when a stop handler is installed), the FIFO its gate reads, and a thread reading
    restic's output from the start (its status lines while it waits are dropped: a pipe
    nobody reads fills in minutes, and a restic blocked on it ignores SIGINT)."""

    def __init__(self, key: WarmKey, proc: subprocess.Popen, fifo: Path, group: bool,
                 fd: int):
        self.key, self.proc, self.fifo, self.group = key, proc, fifo, group
        self.fd = fd  # our end of the FIFO, open from its creation: an order written before
        # restic has started the gate waits in the pipe (a FIFO nobody holds drops its data)
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._claimed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True, name="axe-warm-out")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                if self._claimed.is_set() or '"message_type":"status"' not in line:
                    self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._lines.put(None)

    def lines(self) -> Iterator[str]:
        """Return restic's stdout lines from now on (the caller follows the claimed backup)."""
        self._claimed.set()

        def follow() -> Iterator[str]:
            while (line := self._lines.get()) is not None:
                yield line
        return follow()

    def send(self, order: dict[str, object]) -> bool:
        """Given the order (the command and its environment, or an abort), put it in the
        gate's FIFO whole; False when it could not be (our end is closed, the pipe full)."""
        data = (json.dumps(order) + "\n").encode()
        try:
            return os.write(self.fd, data) == len(data)
        except OSError:
            return False

    def release(self) -> None:
        """Close our end of the FIFO once restic has ended (its gate read the order or is
        gone); the FIFO itself is removed."""
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fifo.unlink(missing_ok=True)

    def abort(self, why: str) -> None:
        """Tell the gate to end without output (restic stores nothing and removes its lock),
        and wait for restic to end: SIGINT after 10 s, SIGKILL after 20 s; then release."""
        self.stop(why)
        self.reap()

    def stop(self, why: str, *, now: bool = False) -> None:
        """Ask it to end: through the gate, or with SIGINT when there is no gate to tell or
        `now` (its gate never started: restic removes its lock on SIGINT)."""
        if now or not self.send({"abort": why}):
            interrupt.send(self.proc, signal.SIGINT, group=self.group)

    def reap(self) -> None:
        """Wait for a stopped restic to end: SIGINT after 10 s, SIGKILL after 20 s; then
        release."""
        for sig in (signal.SIGINT, signal.SIGKILL):
            try:
                self.proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                interrupt.send(self.proc, sig, group=self.group)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # SIGKILLed: the kernel ends it; nothing more to wait for here
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        interrupt.forget(self.proc)
        self.release()


class WarmPool:
    """The warm backups of one tier-A run: started in plan order, at most `depth` waiting at a
    time; `claim` hands one over and starts the next. Thread-safe (the lanes claim). A warm
    backup that cannot be started (no FIFO, no process, the password source failing) is left
    out: its item starts cold."""

    def __init__(self, restic: Restic, run_dir: Path, at_args: Sequence[str],
                 keys: Sequence[WarmKey], *, depth: int):
        self._restic = restic
        self._dir = run_dir
        self._at_args = list(at_args)  # restic's --time for the run's logical time
        self._todo = list(keys)
        self._depth = max(1, depth)
        self._waiting: dict[WarmKey, Warm] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._started = 0
        self.claimed = 0
        self._first: Warm | None = None  # the first one started: the night's probe
        with self._lock:
            self._fill()

    def _start(self, key: WarmKey) -> Warm | None:
        from axe_pipelines.restic.errors import ResticError
        from axe_pipelines.restic.process import spawn

        self._started += 1
        fifo = self._dir / f"gate-{os.getpid()}-{self._started}.fifo"
        group = interrupt.installed()
        gate = [sys.executable, "-m", "axe_pipelines.restic.gate", str(fifo), str(os.getpid()),
                str(self._restic.timeout or WAIT_BOUND_S)]
        args = self._restic.stdin_backup_args(gate, filename=key.filename, tags=key.tags,
                                              time_args=self._at_args)
        fd = -1
        try:
            os.mkfifo(fifo, 0o600)
            fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
            proc = spawn(self._restic._argv(args), self._restic.env(), group=group)
        except (OSError, ResticError):
            if fd >= 0:
                os.close(fd)
            fifo.unlink(missing_ok=True)
            return None
        interrupt.adopt(proc, group=group)
        return Warm(key, proc, fifo, group, fd)

    def _fill(self) -> None:
        while not self._closed and self._todo and len(self._waiting) < self._depth:
            key = self._todo.pop(0)
            warm = self._start(key)
            if warm is not None:
                self._waiting[key] = warm
                self._first = self._first or warm

    def wait_open(self, timeout_s: float) -> bool | None:
        """Wait for the first warm backup's gate (gate.py's up mark): restic opened the
        repository with its password and holds a backup's lock, which is all a probe asks.
        Return True then; False when that backup ended first or none was started (the caller
        probes to learn why); None when `timeout_s` ran out or a stop signal came."""
        first = self._first
        if first is None:
            return False
        up = Path(up_path(str(first.fifo)))
        deadline = time.monotonic() + timeout_s
        while not up.exists():
            if first.proc.poll() is not None:
                return False
            if time.monotonic() > deadline or interrupt.wait(_UP_POLL_S):
                return None
        return True

    def claim(self, filename: str, tags: Sequence[str], at_args: Sequence[str]) -> Warm | None:
        """Given a backup's file name, tags and --time arguments, return its warm backup, or
        None when none was started with exactly those (the caller starts one cold)."""
        key = WarmKey(filename, tuple(tags))
        with self._lock:
            if self._closed or list(at_args) != self._at_args:
                return None
            if key in self._todo:  # its turn came before it was started: start it now
                self._todo.remove(key)
                warm = self._start(key)
            else:
                warm = self._waiting.pop(key, None)
            if warm is not None and warm.proc.poll() is not None:
                # It ended before its turn (a lock taken after the probe, say): of no use;
                # the caller starts one cold, as it would have.
                warm.abort("ended before its turn")
                warm = None
            if warm is not None:
                self.claimed += 1
            self._fill()
            return warm

    def give_back(self, warm: Warm) -> None:
        """Given a claimed warm backup whose order could not be sent, abort it (its item then
        starts cold)."""
        self.claimed -= 1
        warm.abort("its order could not be sent")

    def close(self, *, now: bool = False) -> None:
        """Abort every backup still waiting (no snapshot, no lock left) and start no more; all
        are asked at once, then waited for. `now`: with SIGINT, not through their gates
        (the repository never opened: no gate may have started)."""
        with self._lock:
            self._closed = True
            left, self._waiting = list(self._waiting.values()), {}
        for warm in left:
            warm.stop("its item did not run", now=now)
        for warm in left:
            warm.reap()


def take(pool: WarmPool | None, filename: str, tags: Sequence[str], at_args: Sequence[str],
         command: Sequence[str], env: dict[str, str]) -> Warm | None:
    """Given the run's pool (None: a daemon's run), a backup's file name, tags and --time
    arguments, its command and the command's environment, claim its warm backup and send it
    the command; return it, or None when the backup must start cold."""
    warm = pool.claim(filename, tags, at_args) if pool is not None else None
    if warm is None:
        return None
    if not warm.send({"argv": list(command), "env": env}):
        pool.give_back(warm)  # its gate would wait for ever: this one starts cold
        return None
    return warm


_pools: dict[str, WarmPool] = {}
_pools_lock = threading.Lock()


def register(run_id: str, pool: WarmPool) -> None:
    """Given the run id a pool was started for, let that run's tier A find it."""
    with _pools_lock:
        _pools[run_id] = pool


def pool_for(run_id: str) -> WarmPool | None:
    """Given a run id, return the pool `axe` started for it, or None (a daemon's run)."""
    with _pools_lock:
        return _pools.get(run_id)


def unregister(run_id: str) -> WarmPool | None:
    """Given a run id, forget its pool and return it."""
    with _pools_lock:
        return _pools.pop(run_id, None)
