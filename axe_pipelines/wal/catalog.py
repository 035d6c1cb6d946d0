"""What a repository holds of one server's WAL: its WAL snapshots as batches (first and last
segment from their tags), gaps in the sequence, and the base backups (issue 13 part 1:
`kind=physical`, one `<server>.base.tar` each) with the segment each one starts from, read
from the `backup_label` at the head of its tar (pg_basebackup writes it first)."""

from __future__ import annotations

import re
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from axe_pipelines.errors import ItemFailed
from axe_pipelines.restic import Restic, Snapshot
from axe_pipelines.wal.push import WAL_KIND
from axe_pipelines.wal.segments import Gap, Segment, parse_segment

PHYSICAL_KIND = "physical"
_START = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.M)
_starts: dict[str, Segment] = {}  # snapshot id -> start segment (a snapshot never changes)


class BaseBackupUnreadable(ItemFailed):
    """The base backup's tar does not begin with a readable backup_label."""


@dataclass(frozen=True)
class WalBatch:
    """One WAL snapshot: its first and last segment (None for a batch of only .history or
    .backup files) and the hole inside it its pusher saw (`missing=` tag)."""

    snapshot: Snapshot
    first: Segment | None
    last: Segment | None
    missing: str | None

    @classmethod
    def of(cls, snap: Snapshot) -> WalBatch:
        """Given a WAL snapshot, return it as a batch (read from its tags)."""
        first, last = snap.tag("first"), snap.tag("last")
        return cls(snap, parse_segment(first) if first else None,
                   parse_segment(last) if last else None, snap.tag("missing"))

    @property
    def arrived(self) -> datetime:
        """Return when the batch's newest file reached the spool (its `archived=` tag, to the
        microsecond; the snapshot's time, to the second, without one)."""
        tag = self.snapshot.tag("archived")
        try:
            return datetime.strptime(tag, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC) if tag \
                else self.snapshot.time
        except ValueError:
            return self.snapshot.time


def is_wal(snap: Snapshot, customer_name: str, server_name: str | None = None) -> bool:
    """Given a snapshot, return whether it is a WAL batch of the customer (and server)."""
    return (snap.tag("kind") == WAL_KIND and snap.tag("customer") == customer_name
            and (server_name is None or snap.tag("server") == server_name)
            and "incomplete" not in snap.tags)


def wal_batches(snapshots: Iterable[Snapshot], customer_name: str,
                server_name: str) -> list[WalBatch]:
    """Given a repository's snapshots, return the server's WAL batches in WAL order (by first
    segment; batches without segments by time, first)."""
    batches = [WalBatch.of(s) for s in snapshots if is_wal(s, customer_name, server_name)]
    return sorted(batches, key=lambda b: (b.first is not None, b.first or Segment(1, 0),
                                          b.snapshot.time))


def sequence_gaps(batches: list[WalBatch], since: Segment | None = None) -> list[str]:
    """Given a server's batches in WAL order (`since`: only from this position on), return
    one line per hole in each timeline's sequence: between two batches, and inside one (its
    `missing=` tag). Empty when the WAL from `since` on is whole."""
    lines: list[str] = []
    last_of: dict[int, Segment] = {}
    for b in batches:
        if b.first is None or b.last is None:
            continue
        if since is not None and b.last.number < since.number:
            continue
        before = last_of.get(b.first.timeline)
        if before is not None and b.first.number > before.number + 1:
            gap = Gap(b.first.timeline, before, before.next(),
                      Segment(b.first.timeline, b.first.number - 1))
            lines.append(gap.describe())
        if b.missing:
            lines.append(f"segments {b.missing} are missing (inside WAL snapshot "
                         f"{b.snapshot.short_id})")
        if before is None or b.last.number > before.number:
            last_of[b.last.timeline] = b.last
    return lines


def base_backups(snapshots: Iterable[Snapshot], customer_name: str,
                 server_name: str) -> list[Snapshot]:
    """Given a repository's snapshots, return the server's complete base backups, oldest
    first."""
    return sorted((s for s in snapshots if s.tag("kind") == PHYSICAL_KIND
                   and s.tag("customer") == customer_name and s.tag("server") == server_name
                   and "incomplete" not in s.tags), key=lambda s: s.time)


def parse_backup_label(text: str) -> Segment:
    """Given a backup_label's text, return the segment its WAL starts in. Raise
    BaseBackupUnreadable without a START WAL LOCATION line."""
    m = _START.search(text)
    segment = parse_segment(m.group(1)) if m else None
    if segment is None:
        raise BaseBackupUnreadable("its backup_label names no START WAL LOCATION")
    return segment


def base_backup_start(restic: Restic, snap: Snapshot) -> Segment:
    """Given a base backup snapshot, return the segment its WAL starts in, reading only the
    head of its tar (`restic dump`, stopped after backup_label). Raise BaseBackupUnreadable
    if the tar does not begin with a backup_label."""
    if snap.id in _starts:
        return _starts[snap.id]
    path = snap.paths[0] if snap.paths else ""
    proc = subprocess.Popen([restic.binary, *restic.repo.extra_args, "dump", snap.id, path],
                            env=restic.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member and member.name.endswith(
                "backup_label") else None
            if handle is None:
                raise BaseBackupUnreadable(f"base backup {snap.short_id} ({path}) does not "
                                           f"begin with backup_label")
            start = parse_backup_label(handle.read(1 << 16).decode(errors="replace"))
    except (tarfile.TarError, OSError) as exc:
        raise BaseBackupUnreadable(f"base backup {snap.short_id} ({path}): {exc}") from None
    finally:
        proc.kill()  # the rest of the tar is not needed
        proc.wait()
        proc.stdout.close()
    _starts[snap.id] = start
    return start


def wal_starts(restic: Restic, snapshots: list[Snapshot], customer_name: str,
               ) -> dict[str, Segment]:
    """Given a repository's snapshots, return the start segment of each of the customer's
    base backups by snapshot id, for the servers that have WAL there (none: {}). A base
    backup whose tar head cannot be read is left out (its server's WAL is then all kept)."""
    servers = {s.tag("server") for s in snapshots if is_wal(s, customer_name)}
    starts = {}
    for server in sorted(filter(None, servers)):
        for snap in base_backups(snapshots, customer_name, server):
            try:
                starts[snap.id] = base_backup_start(restic, snap)
            except BaseBackupUnreadable:
                continue
    return starts
