"""The pusher: the spool of one server into tier A, in batches, surviving kill -9 anywhere.

One batch is one snapshot (tags `axe-pipelines customer=C kind=wal server=S batch=<id>
first=<segment> last=<segment> archived=<when its newest file arrived>`, no `run=`: it is
no night's set). Its steps:

1. make `spool/pushing/<id>/` and rename up to `batch_files` WAL files into it (each rename
   is atomic; a kill between two leaves some files in the batch, the rest in the spool:
   each is in exactly one place);
2. `restic backup` of that folder (its logical time: the newest file's archive time);
3. read the snapshot back (`restic ls`: every file of the batch with its size) and only then
   remove the folder.

On every start, before new files, each leftover `pushing/<id>/` is settled: when a snapshot
tagged `batch=<id>` holds all of its files it is removed (the kill came after step 2);
otherwise it is pushed now (the kill came before), unless a process still works on it (a
restic the killed pusher left running), which it waits for until the next push. So a segment
is never lost (nothing is removed before the repository holds it) and never stored twice (a
batch is backed up again only when no snapshot of it is complete). One pusher per spool at a
time (a lock file; a second one returns at once).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from axe_pipelines.backup import TAG_TOOL
from axe_pipelines.errors import ItemFailed
from axe_pipelines.restic import Restic, ResticError, Snapshot
from axe_pipelines.safe_paths import remove_tree
from axe_pipelines.wal.archive import PUSHING, fsync_dir
from axe_pipelines.wal.segments import file_kind, find_gaps, segments_of

Say = Callable[[str], None]
WAL_KIND = "wal"
PAUSE_ENV = "AXE_TEST_WAL_PUSH_PAUSE"  # tests only: stop (SIGSTOP) after this step
_TEMP = re.compile(r"^\..+\.\d+\.tmp$")  # archive.py's temp files
_STALE_TEMP_S = 3600


class PushFailed(ItemFailed):
    """A batch could not be pushed; its files stay in the spool for the next push."""


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Batch:
    """One pushed batch: its id, files (sorted) and snapshot."""

    id: str
    files: tuple[str, ...]
    snapshot_id: str
    bytes: int

    @property
    def first(self) -> str:
        """Return the batch's first file name."""
        return self.files[0]

    @property
    def last(self) -> str:
        """Return the batch's last file name."""
        return self.files[-1]


@dataclass
class PushResult:
    """What one push of a spool did: batches pushed, leftovers settled, why it did nothing."""

    server: str
    spool: Path
    pushed: list[Batch] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)  # one line per leftover batch
    busy: str | None = None  # another pusher holds the spool

    @property
    def files(self) -> int:
        """Return how many WAL files this push put into the repository."""
        return sum(len(b.files) for b in self.pushed)


def wal_tags(customer_name: str, server_name: str, batch_id: str | None = None) -> list[str]:
    """Given the customer and server (and a batch id), return the tags of WAL snapshots (the
    batch's when `batch_id` is given: the tags that find it)."""
    tags = [TAG_TOOL, f"customer={customer_name}", f"kind={WAL_KIND}", f"server={server_name}"]
    return tags + ([f"batch={batch_id}"] if batch_id else [])


def batch_tags(batch_id: str, names: list[str]) -> list[str]:
    """Given a batch and its file names, return its own tags: `batch=<id>`, its first and last
    segment (`first=`, `last=`: the catalog checks the sequence across batches by these) and,
    when segments are missing inside it, `missing=<first>..<last>` of the first hole."""
    tags = [f"batch={batch_id}"]
    segments = segments_of(names)
    if segments:
        tags += [f"first={segments[0].name}", f"last={segments[-1].name}"]
    if gaps := find_gaps(names):
        tags.append(f"missing={gaps[0].first.name}..{gaps[0].last.name}")
    return tags


def ready_files(spool: Path) -> list[Path]:
    """Given a spool folder, return its WAL files (whole: archive.py names a file only once it
    is on disk), sorted by name."""
    return sorted(p for p in spool.iterdir() if file_kind(p.name) and p.is_file())


def _pause(step: str) -> None:
    """The test hook: stop this process right after `step` so a test can kill it there."""
    if os.environ.get(PAUSE_ENV) == step:
        print(f"axe wal push: paused after {step} (pid {os.getpid()})", file=sys.stderr,
              flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)


@contextmanager
def _spool_lock(pushing: Path) -> Iterator[bool]:
    """Hold the spool's pusher lock; yield False when another pusher holds it."""
    fd = os.open(pushing / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock (and a kill -9 does too)


def _snapshot_files(restic: Restic, snap: Snapshot) -> dict[str, int]:
    """The files directly in the snapshot's batch folder, name -> size (`restic ls`)."""
    out = restic.run(["ls", "--json", snap.id], what=f"listing WAL snapshot {snap.short_id}")
    root = snap.paths[0] if snap.paths else ""
    files = {}
    for line in out.splitlines():
        try:
            node = json.loads(line)
        except ValueError:
            continue
        if node.get("type") == "file" and str(node.get("path", "")).rsplit("/", 1)[0] == root:
            files[node["name"]] = int(node.get("size") or 0)
    return files


def holds_batch(restic: Restic, snap: Snapshot, folder: Path) -> bool:
    """Given a snapshot and a batch folder, return whether the snapshot holds every file of
    the folder with its size (and is not marked incomplete)."""
    if "incomplete" in snap.tags:
        return False
    stored = _snapshot_files(restic, snap)
    return all(stored.get(p.name) == p.stat().st_size for p in folder.iterdir() if p.is_file())


def _still_worked_on(folder: Path) -> bool:
    """Whether another process (a restic the killed pusher left running) names the folder."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell: wait for the next push rather than risk a second copy
    me = os.getpid()
    return any(str(folder) in line and line.split(None, 1)[0] != str(me)
               for line in out.splitlines())


def _push_batch(restic: Restic, tags: list[str], folder: Path, batch_id: str) -> Batch:
    """Back the batch folder up, confirm the snapshot holds it, remove it; return the Batch.
    Raise PushFailed (the folder kept) when restic fails or the snapshot lacks a file."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    names = [p.name for p in files]
    newest = max(p.stat().st_mtime for p in files)
    size = sum(p.stat().st_size for p in files)
    try:
        # restic keeps --time to the second; the tag keeps when the newest file arrived.
        arrived = datetime.fromtimestamp(newest, UTC)
        summary = restic.backup_paths(
            [folder], tags=[*tags, *batch_tags(batch_id, names),
                            f"archived={arrived:%Y%m%dT%H%M%S.%fZ}"], at=arrived)
        _pause("backed-up")
        snap = next(s for s in restic.snapshots(tags=[*tags, f"batch={batch_id}"])
                    if s.id == summary.snapshot_id)
        whole = holds_batch(restic, snap, folder)
    except (ResticError, StopIteration) as exc:
        raise PushFailed(f"{restic.repo.label}: WAL batch {batch_id} ({names[0]}..): "
                         f"{str(exc).splitlines()[0] if str(exc) else 'snapshot not found'}; "
                         f"its files stay in {folder.parent.parent} for the next push") from None
    if not whole:
        raise PushFailed(f"{restic.repo.label}: snapshot {snap.short_id} of WAL batch "
                         f"{batch_id} lacks some of its files; they stay in {folder} for the "
                         f"next push")
    remove_tree(folder, inside=folder.parent)
    return Batch(batch_id, tuple(names), snap.id, size)


def settle_leftovers(restic: Restic, tags: list[str], pushing: Path, say: Say) -> list[str]:
    """Given the batch folders a killed pusher left, remove each one a complete snapshot
    holds and push the others again (module docstring); return one line per folder."""
    lines = []
    for folder in sorted(p for p in pushing.iterdir() if p.is_dir()):
        batch_id = folder.name
        if not any(folder.iterdir()):
            folder.rmdir()
            continue
        snaps = restic.snapshots(tags=[*tags, f"batch={batch_id}"])
        if any(holds_batch(restic, s, folder) for s in snaps):
            remove_tree(folder, inside=pushing)
            lines.append(f"batch {batch_id}: already in the repository; removed from the spool")
        elif _still_worked_on(folder):
            lines.append(f"batch {batch_id}: another process still works on it; left for the "
                         f"next push")
        else:
            batch = _push_batch(restic, tags, folder, batch_id)
            lines.append(f"batch {batch_id}: pushed again as snapshot {batch.snapshot_id[:8]} "
                         f"({len(batch.files)} file(s))")
        say(lines[-1])
    return lines


def _clear_stale_temps(spool: Path) -> None:
    """Remove archive.py temp files older than an hour (an archive command killed midway)."""
    cutoff = time.time() - _STALE_TEMP_S
    for p in spool.iterdir():
        if _TEMP.match(p.name) and p.is_file() and p.stat().st_mtime < cutoff:
            p.unlink(missing_ok=True)


def push_spool(restic: Restic, customer_name: str, server_name: str, spool: Path, *,
               batch_files: int = 256, say: Say = _quiet) -> PushResult:
    """Given tier A, the server and its spool, settle leftover batches, then push every WAL
    file of the spool in batches of `batch_files` (module docstring) and return the
    PushResult. Raise PushFailed (files kept for the next push) when a batch cannot be
    pushed, the mapped ResticError when the repository cannot be read."""
    result = PushResult(server_name, spool)
    if not spool.is_dir():
        raise PushFailed(f"WAL spool {spool} of server {server_name} is not a folder (volume "
                         f"not mounted?); nothing was pushed")
    pushing = spool / PUSHING
    pushing.mkdir(exist_ok=True)
    tags = wal_tags(customer_name, server_name)
    with _spool_lock(pushing) as mine:
        if not mine:
            result.busy = f"another pusher is working on {spool}"
            return result
        result.settled = settle_leftovers(restic, tags, pushing, say)
        _clear_stale_temps(spool)
        files = ready_files(spool)
        for start in range(0, len(files), batch_files):
            chunk = files[start:start + batch_files]
            batch_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
            folder = pushing / batch_id
            folder.mkdir()
            fsync_dir(pushing)
            for p in chunk:
                p.rename(folder / p.name)
            fsync_dir(folder)
            fsync_dir(spool)
            _pause("moved")
            batch = _push_batch(restic, tags, folder, batch_id)
            result.pushed.append(batch)
            say(f"{server_name}: batch {batch_id}: {len(batch.files)} WAL file(s) "
                f"{batch.first}..{batch.last} in snapshot {batch.snapshot_id[:8]}")
    return result
