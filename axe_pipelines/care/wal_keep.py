"""Retention of WAL (issue 13): which WAL batches a repository keeps. Pure: the planner hands
in the WAL snapshots, the base backups its policy keeps and their start segments.

Rule, per server: keep every batch holding a segment at or after the start segment of the
oldest kept base backup (replay from any kept base backup needs all WAL from its start on),
and forget the older ones. Batches without segments (timeline `.history` and `.backup` files,
a few hundred bytes) are kept: recovery onto a later timeline needs its history. Without a
kept base backup whose start is known, all of the server's WAL is kept (nothing to measure
"older" against, and a base backup may be about to be taken).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from axe_pipelines.restic import Snapshot
from axe_pipelines.wal.catalog import WalBatch
from axe_pipelines.wal.segments import Segment


def wal_reasons(wal: Iterable[Snapshot], kept_base: Mapping[str, list[Snapshot]],
                starts: Mapping[str, Segment]) -> dict[str, tuple[str, ...]]:
    """Given WAL snapshots, the kept base backups per server and the start segment per base
    backup id, return each WAL snapshot's reasons to stay by id (empty: forget it)."""
    reasons: dict[str, tuple[str, ...]] = {}
    for snap in wal:
        server = snap.tag("server") or ""
        batch = WalBatch.of(snap)
        bases = kept_base.get(server, [])
        known = [(starts[b.id], b) for b in bases if b.id in starts]
        if batch.last is None:
            reasons[snap.id] = ("timeline history / backup label (kept)",)
        elif not bases:
            reasons[snap.id] = (f"no kept base backup of {server}: all its WAL is kept",)
        elif len(known) < len(bases):
            reasons[snap.id] = (f"the start of a kept base backup of {server} is unknown: all "
                                f"its WAL is kept",)
        else:
            start, base = min(known, key=lambda k: k[0].number)
            reasons[snap.id] = ((f"WAL from {start.name} on, needed by base backup "
                                 f"{base.short_id}",) if batch.last.number >= start.number
                                else ())
    return reasons
