"""Tier A's snapshots, read ahead (issue 12).

`axe backup --ring` / `--cold` start listing each customer's tier-A snapshots at once, while
Dagster loads, and the copy takes that listing (copying.newest_finished_set) only when the
repository is provably as it was: its `snapshots/` folder holds the same file names now as
when the listing started and when it ended. A snapshot added or forgotten in between (a
tier-A run finishing, a retention run) changes those names, and the snapshots are listed
again. So the set chosen, and which runs are still writing theirs (asked at the time of
use), are what a listing made then would give, without a second key derivation on the way.

Only for a repository in a local folder (a backend's file names only restic can list). The
listing takes no lock: it reads snapshot files only, and the names tell if they changed.
Plain: no Dagster.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from axe_pipelines.backup import local_repository
from axe_pipelines.config import Customer
from axe_pipelines.restic import Repository, Restic, Snapshot

LIST_TIMEOUT_S = 600.0  # as the listing made at the time of use


@dataclass
class _Ahead:
    tags: tuple[str, ...]
    done: threading.Event = field(default_factory=threading.Event)
    names: frozenset[str] | None = None  # the folder's file names, same before and after
    snapshots: list[Snapshot] = field(default_factory=list)


_AHEAD: dict[tuple[str, str], _Ahead] = {}  # by customer and repository location


def snapshot_names(repo: Repository) -> frozenset[str] | None:
    """Given a repository, return the file names in its `snapshots/` folder; None for a
    backend (`sftp:`, `s3:`, …) or a folder that cannot be read."""
    if repo.extra_args or ":" in repo.location.split("/", 1)[0]:
        return None
    try:
        return frozenset(e.name for e in os.scandir(Path(repo.location) / "snapshots"))
    except OSError:
        return None


def start(customer_name: str, customer: Customer, tags: Sequence[str]) -> None:
    """Given a customer and the tags its copy lists tier A by, start listing them in a
    thread of its own (once per customer and process; nothing for a backend)."""
    if customer.tiers is None:
        return
    repo = local_repository(customer_name, customer)
    if (customer_name, repo.location) in _AHEAD or snapshot_names(repo) is None:
        return
    ahead = _AHEAD[customer_name, repo.location] = _Ahead(tuple(tags))

    def read() -> None:
        try:
            before = snapshot_names(repo)
            found = Restic(repo, timeout=LIST_TIMEOUT_S).snapshots(tags=ahead.tags, lock=False)
            if before is not None and before == snapshot_names(repo):
                ahead.names, ahead.snapshots = before, found
        except Exception:  # noqa: BLE001 - listed again at the time of use, which reports it
            pass
        finally:
            ahead.done.set()

    threading.Thread(target=read, name=f"axe-read-ahead-{customer_name}", daemon=True).start()


def snapshots(customer_name: str, customer: Customer, tags: Sequence[str]) -> list[Snapshot]:
    """Given a customer and tags, return its tier-A snapshots carrying all of them, oldest
    first: the listing read ahead when the repository's snapshot files are still the same,
    else listed now. Raise the mapped ResticError."""
    repo = local_repository(customer_name, customer)
    ahead = _AHEAD.get((customer_name, repo.location))
    if ahead is not None and ahead.tags == tuple(tags) and ahead.done.wait(LIST_TIMEOUT_S):
        if ahead.names is not None and snapshot_names(repo) == ahead.names:
            return list(ahead.snapshots)
    return Restic(repo, timeout=LIST_TIMEOUT_S).snapshots(tags=tags)


def settle() -> None:
    """Wait for every listing still reading ahead (bounded: restic's own timeout)."""
    for ahead in list(_AHEAD.values()):
        ahead.done.wait(LIST_TIMEOUT_S)


def forget() -> None:
    """Drop every listing read ahead (tests; a process reads ahead once per customer)."""
    _AHEAD.clear()
