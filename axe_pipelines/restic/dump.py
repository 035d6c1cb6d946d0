"""`restic dump` as a stream (Restic.dump): one file of a snapshot read without a spool.

The reader may stop early: on leaving the block the rest is drained, so restic ends normally
and removes its lock (closing the pipe would kill restic with SIGPIPE and leave a stale lock).
restic takes its lock before it writes the first byte, so a provably stale lock it meets is
seen before the caller reads anything (the first byte is peeked, not taken): it is cleared
and the dump started once more, the one stale-lock policy of every call (client.py).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from axe_pipelines import interrupt
from axe_pipelines.restic.client import _SLOW, Restic  # client.py imports this one on use
from axe_pipelines.restic.errors import RepositoryLocked, ResticTimeout, raise_for
from axe_pipelines.restic.process import Touching, Watchdog, interrupt_and_drain, spawn


@contextmanager
def dump(restic: Restic, snapshot_id: str, path: str) -> Iterator[IO[bytes]]:
    """Yield a binary stream of one file of a snapshot.

    Given the Restic, a snapshot and a file in it: the rest is drained on leaving the block,
    and a provably stale lock met before the first byte is cleared and the dump started once
    more (module docstring). Raise the mapped error when restic fails.
    """
    group = interrupt.installed()
    what = f"reading {path} from snapshot {snapshot_id[:8]}"
    for first_try in (True, False):
        # --quiet: restic says "repo already locked, waiting ..." on stdout, in the data.
        proc = spawn(restic._argv(["dump", "--quiet", snapshot_id, path]), restic.env(),
                     text=False, group=group)
        stderr_chunks: list[bytes] = []
        reader = threading.Thread(
            target=lambda proc=proc, out=stderr_chunks: out.append(proc.stderr.read()),
            daemon=True)
        reader.start()
        deadline = Watchdog(proc, wall=restic.timeout, idle=restic.idle_timeout, group=group)
        assert proc.stdout is not None
        if not first_try or not _locked_before_output(restic, proc, reader, stderr_chunks,
                                                      deadline, what, group=group):
            break
    with interrupt.watched(proc, group=group):
        try:
            yield Touching(proc.stdout, deadline)  # type: ignore[misc]
            while proc.stdout.read(1 << 20):
                pass
            code = proc.wait()
        finally:
            deadline.cancel()
            if proc.poll() is None:
                interrupt_and_drain(proc)  # the reader raised: stop restic, let it unlock
    reader.join(5)
    if deadline.reason == "idle":
        raise ResticTimeout(f"{restic.repo.label}: reading {path} from {snapshot_id[:8]} "
                            f"moved no data for {restic.idle_timeout:.0f} s {_SLOW}")
    if deadline.passed:
        raise ResticTimeout(f"{restic.repo.label}: reading {path} from {snapshot_id[:8]} did "
                            f"not finish within {restic.timeout:.0f} s")
    if code != 0:
        raise_for(code, b"".join(stderr_chunks).decode(errors="replace"), restic.repo, what)


def _locked_before_output(restic: Restic, proc: subprocess.Popen, reader: threading.Thread,
                          stderr_chunks: list[bytes], deadline: Watchdog, what: str, *,
                          group: bool) -> bool:
    """Given a dump just started, wait for its first byte without taking it (peek). Return
    True when restic ended before any output because of a lock that was provably stale
    and is now cleared (try again); False when output comes or restic ended well. Raise
    the mapped error when restic ended early for another reason or a live lock."""
    assert proc.stdout is not None
    with interrupt.watched(proc, group=group):
        if proc.stdout.peek(1):  # type: ignore[attr-defined]
            return False
        code = proc.wait()
    if code == 0:
        return False  # an empty file
    deadline.cancel()
    reader.join(5)
    try:
        raise_for(code, b"".join(stderr_chunks).decode(errors="replace"), restic.repo, what)
    except RepositoryLocked as exc:
        if not restic.clear_stale_locks(exc):
            raise
    return True
