"""What a ring peer pushes to us (the runbook's "ring backup 단방향" pitfall): its restic
repository in `receive_dir_at_self`, looked at by file times, sizes and counts only. That
repository is the peer's, encrypted with its password, which we neither have nor want.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from axe_pipelines.config import RingBackup


@dataclass(frozen=True)
class InboundState:
    """One look at the peer's repository here: does it exist, how many snapshot files, the
    newest one's time (a push writes one per snapshot), total size."""

    path: str
    exists: bool
    snapshot_files: int
    newest: datetime | None
    total_bytes: int

    def age_hours(self, now: datetime | None = None) -> float | None:
        """Given the time now (default: the clock), return the newest push's age in hours,
        or None when there is none."""
        if self.newest is None:
            return None
        return ((now or datetime.now(UTC)) - self.newest).total_seconds() / 3600


def inbound_state(block: RingBackup) -> InboundState:
    """Given a peer's ring_backup block, return the file times, sizes and counts of its
    repository under receive_dir_at_self. Nothing is decrypted."""
    root = block.receive_dir_at_self.expanduser()
    if not root.is_dir():
        return InboundState(str(root), False, 0, None, 0)
    snaps = [p for p in (root / "snapshots").glob("*") if p.is_file()]
    newest = max((p.stat().st_mtime for p in snaps), default=None)
    total = 0
    for p in root.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue  # the peer may be pruning right now
    return InboundState(str(root), True, len(snaps),
                        datetime.fromtimestamp(newest, UTC) if newest else None, total)
