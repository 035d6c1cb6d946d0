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
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from axe_pipelines import interrupt

if TYPE_CHECKING:
    from axe_pipelines.restic.client import Restic

WAIT_BOUND_S = 6 * 3600.0  # a gate gives up after this long without its order (axe alive)


@dataclass(frozen=True)
class WarmKey:
    """What a warm backup was started with: the stdin file name and the tags (the run's id
    among them); the logical time is the pool's."""

    filename: str
    tags: tuple[str, ...]


@dataclass
class Warm:
    """One restic backup waiting at its gate: the process (restic, leading its own process
    group when a stop handler is installed) and the FIFO its gate reads."""

    key: WarmKey
    proc: subprocess.Popen
    fifo: Path
    group: bool
    fd: int  # our end of the FIFO, open from its creation: an order written before restic
    # has started the gate waits in the pipe (a FIFO no process holds open drops its data)
    args: list[str] = field(default_factory=list)

    def send(self, order: dict[str, object]) -> bool:
        """Given the order (the command and its environment, or an abort), put it in the
        gate's FIFO; False when it could not be (our end is closed, or the pipe is full)."""
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
        and wait for restic to end: SIGINT after 10 s, SIGKILL after 20 s."""
        if not self.send({"abort": why}):  # no gate to tell: stop restic itself
            interrupt.send(self.proc, 2, group=self.group)
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            interrupt.send(self.proc, 2, group=self.group)
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                interrupt.send(self.proc, 9, group=self.group)
                self.proc.communicate()


class WarmPool:
    """The warm backups of one tier-A run: started in plan order, at most `depth` waiting at a
    time; `claim` hands one over and starts the next. Thread-safe (the lanes claim)."""

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
        with self._lock:
            self._fill()

    def _start(self, key: WarmKey) -> Warm | None:
        self._started += 1
        fifo = self._dir / f"gate-{os.getpid()}-{self._started}.fifo"
        os.mkfifo(fifo, 0o600)
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        group = interrupt.installed()
        args = ["backup", "--json", "--stdin-filename", key.filename, "--tag",
                ",".join(key.tags), *self._at_args, "--stdin-from-command", "--",
                sys.executable, "-m", "axe_pipelines.restic.gate", str(fifo), str(os.getpid()),
                str(self._restic.timeout or WAIT_BOUND_S)]
        try:
            proc = subprocess.Popen(
                self._restic._argv(args), env=self._restic.env(), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                process_group=0 if group else None)
        except OSError:
            os.close(fd)
            fifo.unlink(missing_ok=True)
            return None
        interrupt.adopt(proc, group=group)
        return Warm(key, proc, fifo, group, fd, args)

    def _fill(self) -> None:
        while not self._closed and self._todo and len(self._waiting) < self._depth:
            key = self._todo.pop(0)
            warm = self._start(key)
            if warm is not None:
                self._waiting[key] = warm

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
                warm.proc.communicate()
                interrupt.forget(warm.proc)
                warm.release()
                warm = None
            if warm is not None:
                self.claimed += 1
            self._fill()
            return warm

    def close(self) -> None:
        """Abort every backup still waiting (no snapshot, no lock left) and start no more."""
        with self._lock:
            self._closed = True
            left, self._waiting = list(self._waiting.values()), {}
        for warm in left:
            warm.abort("its item did not run")
            interrupt.forget(warm.proc)
            warm.release()


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
