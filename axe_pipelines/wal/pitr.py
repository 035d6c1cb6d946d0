"""Planning a point-in-time restore (issue 13): which base backup, which WAL batches, how much
WAL to replay, and checking that nothing in between is missing. Reads snapshots and the base
backup's tar head; changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from axe_pipelines.actions.selection import RestoreError
from axe_pipelines.restic import Restic, Snapshot
from axe_pipelines.restic.model import parse_time
from axe_pipelines.wal.catalog import (
    WalBatch,
    base_backup_start,
    base_backups,
    sequence_gaps,
    wal_batches,
)
from axe_pipelines.wal.segments import SEGMENT_SIZE, Segment, find_gaps, segments_of


class PitrError(RestoreError):
    """A point-in-time restore cannot be done as asked; the message says why and that
    nothing was changed."""


def finished_at(base: Snapshot) -> datetime:
    """Given a base backup snapshot, return when it finished (restic's backup_end; its logical
    time when restic did not record one): WAL can bring it only to later moments."""
    end = base.summary.get("backup_end")
    return parse_time(end) if isinstance(end, str) else base.time


@dataclass(frozen=True)
class PitrPlan:
    """What a restore as of `target` needs: the base backup, the segment its WAL starts in,
    the WAL batches to restore (in WAL order) and the last segment among them."""

    server: str
    target: datetime
    base: Snapshot
    start: Segment
    batches: tuple[WalBatch, ...]

    @property
    def end(self) -> Segment:
        """Return the last segment the batches hold."""
        return max((b.last for b in self.batches if b.last), key=lambda s: s.number,
                   default=self.start)

    @property
    def replay_bytes(self) -> int:
        """Return how much WAL replay reads at most: start..end segments."""
        return (self.end.number - self.start.number + 1) * SEGMENT_SIZE

    def lines(self, zone: ZoneInfo, label: str) -> list[str]:
        """Return the plan as the operator reads it (`--dry-run`)."""
        base = self.base
        return [f"base backup {base.short_id} of {self.server} ({label}, "
                f"{base.time.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}, finished "
                f"{finished_at(base).astimezone(zone):%H:%M:%S}, run {base.tag('run') or '-'})",
                f"WAL {self.start}..{self.end} from {len(self.batches)} WAL snapshot(s), "
                f"replay of up to {self.replay_bytes >> 20} MiB "
                f"({self.end.number - self.start.number + 1} segment(s)) to "
                f"{self.target.astimezone(zone):%Y-%m-%d %H:%M:%S.%f %Z}"]


def plan_pitr(restic: Restic, snapshots: list[Snapshot], customer_name: str, server_name: str,
              target: datetime, *, where: str) -> PitrPlan:
    """Given a repository's snapshots, the server and the target moment, return the PitrPlan:
    the newest base backup finished at or before `target` and every WAL batch from its start
    segment up to the first one archived after `target`. Raise PitrError (nothing changed)
    when there is no such base backup, the WAL does not reach `target` yet, or a segment in
    between is missing (named)."""
    bases = base_backups(snapshots, customer_name, server_name)
    eligible = [b for b in bases if finished_at(b) <= target]
    if not eligible:
        have = ", ".join(f"{finished_at(b):%Y-%m-%dT%H:%M}" for b in bases[-5:]) or "none"
        raise PitrError(f"{server_name}: no base backup in {where} finished at or before "
                        f"{target:%Y-%m-%d %H:%M:%S %Z} (base backups finished: {have}); "
                        f"nothing was changed")
    base = eligible[-1]
    start = base_backup_start(restic, base)
    needed: list[WalBatch] = []
    reached = False
    for batch in wal_batches(snapshots, customer_name, server_name):
        if batch.last is not None and batch.last.number < start.number:
            continue
        needed.append(batch)
        if batch.last is not None and batch.arrived > target:
            reached = True
            break
    if not reached:
        newest = max((b.arrived for b in needed), default=None)
        upto = f"{newest.astimezone(target.tzinfo):%Y-%m-%d %H:%M:%S}" if newest else "nothing"
        raise PitrError(f"{server_name}: the WAL in {where} reaches only {upto} (newest WAL "
                        f"pushed), not {target:%Y-%m-%d %H:%M:%S %Z}; run `axe wal push` (or "
                        f"wait for the next push) or choose an earlier --as-of; nothing was "
                        f"changed")
    if gaps := sequence_gaps(needed, start):
        raise PitrError(f"{server_name}: WAL needed to reach {target:%Y-%m-%d %H:%M %Z} from "
                        f"base backup {base.short_id} is not whole in {where}: {gaps[0]}; "
                        f"choose an --as-of before it or a later base backup; nothing was "
                        f"changed")
    return PitrPlan(server_name, target, base, start, tuple(needed))


def missing_segments(plan: PitrPlan, restored: Path, datadir: Path) -> list[str]:
    """Given the plan, the folder the WAL was restored into and the unpacked base backup
    (its pg_wal holds the WAL of the backup itself), return one line per segment from the
    plan's start to its end that neither has."""
    names = [p.name for folder in (restored, datadir / "pg_wal") if folder.is_dir()
             for p in folder.iterdir()]
    have = [s for s in segments_of(names) if plan.start.number <= s.number <= plan.end.number]
    lines = [g.describe() for g in find_gaps([s.name for s in have])]
    if not have or min(s.number for s in have) > plan.start.number:
        lines.insert(0, f"segment {plan.start} (where base backup {plan.base.short_id} "
                        f"starts) is missing")
    return lines
