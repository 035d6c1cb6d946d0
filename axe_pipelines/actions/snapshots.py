"""What `axe snapshots` does: the sets on one tier of a customer — each with its logical time
in the customer's zone, its items, whether it is complete and its size — which are exactly
the sets `axe restore --as-of` can pick there (same repository, same grouping, same zone).

Also the pieces `axe status` shares: a set described for people, and what a repository on a
local disk costs and holds without asking restic (its size on disk, its lock files).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from axe_pipelines.backup import coverage
from axe_pipelines.config import Customer, Site, tier_timezone
from axe_pipelines.physical_item import base_backups_only
from axe_pipelines.restic import Snapshot
from axe_pipelines.set_meta import SET_META_KIND
from axe_pipelines.sets import BackupSet, list_sets
from axe_pipelines.tiers import open_tier, resolve_tier

# restic treats a lock that has not been refreshed for 30 minutes as stale (it refreshes its
# own every 5 minutes), whichever host took it.
STALE_LOCK_S = 30 * 60
_ITEM_PREFIX = {"pgdump": "db", "roles": "roles", "dumpall": "dumpall", "files": "files",
                "physical": "physical"}


@dataclass(frozen=True)
class SetInfo:
    """One set as an operator reads it: run id, logical time (customer's zone), the members'
    item labels (`db/frame`, `roles/frame-postgres`, `files/files`), what the configuration
    expects but the set lacks, and the bytes its backups read."""

    run_id: str
    time: datetime
    items: tuple[str, ...]
    missing: tuple[str, ...]
    raw_bytes: int

    @property
    def complete(self) -> bool:
        """True when every configured database, roles item and required folder is in it."""
        return not self.missing

    def as_json(self, now: datetime) -> dict[str, Any]:
        """Given the present moment, return the set as JSON-ready data (README "axe status
        --json" shows the keys)."""
        return {"run_id": self.run_id, "time": self.time.isoformat(),
                "age_hours": round((now - self.time).total_seconds() / 3600, 2),
                "complete": self.complete, "items": list(self.items),
                "missing": list(self.missing), "raw_bytes": self.raw_bytes}


def item_label(snap: Snapshot) -> str:
    """Given a member snapshot, return its item label from its tags (`db/frame`)."""
    kind = snap.tag("kind") or "?"
    name = snap.tag("database") or snap.tag("server") or snap.tag("folder") or "?"
    return f"{_ITEM_PREFIX.get(kind, kind)}/{name}"


def describe_set(customer: Customer, the_set: BackupSet) -> SetInfo:
    """Given a customer with tier A and one of its sets (on any tier), return the SetInfo
    with the time in the customer's zone and the coverage gaps as reasons."""
    zone = ZoneInfo(tier_timezone(customer))
    return SetInfo(
        run_id=the_set.run_id, time=the_set.time.astimezone(zone),
        items=tuple(sorted(item_label(s) for s in the_set.snapshots
                           if s.tag("kind") != SET_META_KIND)),  # set-meta is no item
        missing=() if base_backups_only(customer, the_set) else  # a base backup's own job
        tuple(g.reason for g in coverage(customer, the_set.snapshots)),
        raw_bytes=sum(int(s.summary.get("total_bytes_processed") or 0)
                      for s in the_set.snapshots))


@dataclass
class TierSets:
    """Every set of one customer on one tier, oldest first, and where they were read."""

    customer: str
    tier: str
    peer: str | None
    repository: str
    timezone: str
    sets: list[SetInfo] = field(default_factory=list)

    def as_json(self, now: datetime) -> dict[str, Any]:
        """Given the present moment, return the listing as JSON-ready data."""
        return {"customer": self.customer, "tier": self.tier, "peer": self.peer,
                "repository": self.repository, "timezone": self.timezone,
                "sets": [s.as_json(now) for s in self.sets]}


def list_snapshots(site: Site, names: list[str], tier: str | None = None,
                   source: str | None = None) -> Iterator[TierSets]:
    """Given customers and `--tier`/`--from` (the words `axe restore` takes; default local),
    yield each customer's sets on that tier, read with one `restic snapshots` per repository.
    Raise ConfigError for unknown words, TierUnavailable when the tier cannot be opened now,
    or the mapped ResticError when its repository cannot be listed."""
    tier_name, peer = resolve_tier(site, tier, source)
    for name in names:
        customer = site.customer(name)
        restic = open_tier(site, name, tier_name, peer)
        sets = [describe_set(customer, s) for s in list_sets(restic, name)]
        yield TierSets(name, tier_name, peer, restic.repo.location, tier_timezone(customer),
                       sets)


# --- a repository on a local disk (tier A, a cold volume), read without restic -------------


@dataclass(frozen=True)
class DiskRepository:
    """What a repository folder holds on disk: bytes stored, lock files and how many of them
    restic would call stale (not refreshed for 30 minutes)."""

    stored_bytes: int
    locks: int
    stale_locks: int


def on_disk(path: Path, now: float | None = None) -> DiskRepository | None:
    """Given a repository folder, return its DiskRepository (file sizes summed, lock files'
    times read: no restic process, no password), or None when the folder is not there."""
    if not (path / "config").is_file():
        return None
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed while we walked (a prune, a lock let go)
    now = time.time() if now is None else now
    ages = []
    for lock in (path / "locks").glob("*"):
        try:
            ages.append(now - lock.stat().st_mtime)
        except OSError:
            continue
    return DiskRepository(total, len(ages), sum(1 for a in ages if a > STALE_LOCK_S))
