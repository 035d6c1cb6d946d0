"""Applying a retention plan to a repository: `restic forget <ids>`, then `restic prune`.

We pass restic the ids the planner chose and never a `--keep-*` flag: restic would group by
host and paths (not by our items), judge each snapshot by its own time (not its set's), and
apply its rules on top of ours, so sets would be split and an item's last copy could go.

The peer's copy of its own backups (`ring_backup.receive_dir_at_self`) is never pruned from
here: the peer alone prunes it, with its own policy (restic's note on forget with untrusted
writers cuts both ways). `refuse_peer_copy` guards every forget.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from axe_pipelines.care.planner import ForgetPlan, plan_retention
from axe_pipelines.care.policy import RetentionPolicy
from axe_pipelines.errors import ItemFailed, UsageError
from axe_pipelines.restic import Restic

if TYPE_CHECKING:  # config.py reads RetentionPolicy from care/: no import back at runtime
    from axe_pipelines.config import Site

# Ids per `restic forget` call: 200 full ids are ~13 kB of argv, far below any limit.
FORGET_BATCH = 200

_BACKEND = re.compile(r"^([a-z0-9]+):")
_PRUNE_LINE = re.compile(r"^(total prune|remaining):\s+(\d+) blobs / ([\d.]+) (B|KiB|MiB|GiB|TiB)",
                         re.M)
_UNIT = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


class ProtectedRepository(UsageError):
    """The repository asked to forget or prune in is a ring peer's copy of its backups."""


@dataclass(frozen=True)
class ForgetResult:
    """What `apply_forget` did: the ids gone (confirmed by listing afterwards), how many
    snapshots stay, and what prune freed (None when prune did not run or did not say)."""

    where: str
    forgotten: tuple[str, ...]
    remaining: int
    pruned: bool
    bytes_freed: int | None
    bytes_remaining: int | None
    duration_s: float

    def line(self) -> str:
        """Return the result in one line for logs and the CLI."""
        text = f"{self.where}: forgot {len(self.forgotten)} snapshot(s), {self.remaining} remain"
        if self.pruned:
            freed = "an unknown amount" if self.bytes_freed is None else _size(self.bytes_freed)
            text += f"; prune freed {freed}"
            if self.bytes_remaining is not None:
                text += f", {_size(self.bytes_remaining)} remain"
        return text + f" ({self.duration_s:.1f} s)"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def local_path(location: str | Path) -> Path | None:
    """Given a repository location, return its folder on this machine (resolved), or None for
    a remote backend (`sftp:`, `rest:`, `s3:` ...)."""
    text = str(location)
    backend = _BACKEND.match(text)
    if backend and backend.group(1) != "local":
        return None
    text = text.removeprefix("local:")
    return Path(text).expanduser().resolve()


def refuse_peer_copy(location: str | Path, site: Site) -> None:
    """Given a repository location and the site's config, return when it is safe to forget or
    prune there. Raise ProtectedRepository if the location is, or is inside, a ring peer's
    `receive_dir_at_self` (the peer's copy of its own backups)."""
    path = local_path(location)
    if path is None:
        return
    for peer, block in sorted(site.peers().items()):
        protected = block.receive_dir_at_self.expanduser().resolve()
        if path == protected or path.is_relative_to(protected):
            raise ProtectedRepository(
                f"refusing to forget or prune in {location}: it is ring peer {peer}'s copy of "
                f"its own backups (ring_backup.receive_dir_at_self {block.receive_dir_at_self}); "
                f"only {peer} prunes it, with its own policy; name this site's own repository")


def plan_forget(restic: Restic, customer: str, policy: RetentionPolicy, now: datetime,
                timezone: str) -> ForgetPlan:
    """Given a repository, the customer, its tier's policy, now and the customer's zone,
    return the ForgetPlan (reads `restic snapshots --json` once; changes nothing: this is the
    dry run; a base backup's tar head is read for its WAL start when WAL is there). Raise the
    mapped ResticError if the repository cannot be listed."""
    from axe_pipelines.wal.catalog import wal_starts

    snapshots = restic.snapshots()
    return plan_retention(snapshots, policy, customer=customer, now=now, timezone=timezone,
                          where=restic.repo.label,
                          wal_starts=wal_starts(restic, snapshots, customer))


def parse_prune(output: str) -> tuple[int | None, int | None]:
    """Given `restic prune`'s text output (0.18 has no JSON for prune), return (bytes freed,
    bytes remaining), None for a figure it does not print."""
    found = {m[1]: int(float(m[3]) * _UNIT[m[4]]) for m in _PRUNE_LINE.finditer(output)}
    return found.get("total prune"), found.get("remaining")


def apply_forget(restic: Restic, plan: ForgetPlan, *, site: Site | None,
                 prune: bool = True) -> ForgetResult:
    """Given the repository a plan was made for, the plan, and the site's config (None only
    where there is none, e.g. a scratch repository), forget the plan's snapshots with
    `restic forget <ids>` (batches of FORGET_BATCH) and then run `restic prune` when `prune`.
    Return the ForgetResult; its ids are the planned ones that were there before and are gone
    after (restic exits 0 on an id it cannot find, so we list before and after).
    Raise ProtectedRepository (before touching anything) for a peer's copy, UsageError for a
    plan made on another repository, the mapped ResticError when restic fails, ItemFailed if
    a planned snapshot is still there afterwards."""
    if site is not None:
        refuse_peer_copy(restic.repo.location, site)
    if plan.where and plan.where != restic.repo.label:
        raise UsageError(f"the forget plan was made for {plan.where}, not {restic.repo.label}; "
                         f"plan again on the repository to prune")
    started = time.monotonic()
    before = {s.id for s in restic.snapshots()}
    ids = [i for i in plan.forget_ids if i in before]
    for first in range(0, len(ids), FORGET_BATCH):
        batch = ids[first:first + FORGET_BATCH]
        restic.forget(batch, what=f"forgetting {len(batch)} snapshot(s) of {plan.customer}")
    freed = remaining_bytes = None
    if prune:
        # Prune even when nothing was forgotten now: a forget whose prune failed last time
        # left unreferenced data that only a later prune frees.
        freed, remaining_bytes = parse_prune(restic.prune())
    left = {s.id for s in restic.snapshots()}
    still = [i for i in ids if i in left]
    if still:
        raise ItemFailed(f"{restic.repo.label}: {len(still)} snapshot(s) planned to go are "
                         f"still there after restic forget (first {still[0][:8]}); run "
                         f"`axe prune --dry-run` again and compare")
    return ForgetResult(restic.repo.label, tuple(ids), len(left), prune, freed,
                        remaining_bytes, time.monotonic() - started)
