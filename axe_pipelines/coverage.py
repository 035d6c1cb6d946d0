"""What a tier-A set lacks: every configured database, server's roles/dumpall item and
required folder must have a complete snapshot in it (the runbook's index-postgres and
.local/files pitfalls). backup.py re-exports `coverage` and `Gap`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from axe_pipelines.config import Customer
from axe_pipelines.restic import Snapshot

if TYPE_CHECKING:
    from axe_pipelines.backup import Item


@dataclass(frozen=True)
class Gap:
    """A configured item the set lacks, and the operator's sentence for it."""

    item: Item
    reason: str


def coverage(customer: Customer, snapshots: Iterable[Snapshot]) -> list[Gap]:
    """Given a customer and a set's snapshots, return what the set lacks: every configured
    database, roles/dumpall item and required folder must have a complete (not `incomplete`)
    snapshot among them."""
    present = {(s.tag("kind"), s.tag("database") or s.tag("server") or s.tag("folder"))
               for s in snapshots if "incomplete" not in s.tags}
    from axe_pipelines.backup import plan_tier_a  # backup.py imports this module
    from axe_pipelines.physical_item import separately_scheduled

    gaps = []
    for item in plan_tier_a(customer):
        if (item.kind, item.name) in present or separately_scheduled(customer, item):
            continue  # a base backup on its own schedule is in its own job's set
        if item.kind == "files":
            folder = customer.folders[item.name]
            if not folder.required:
                continue
            reason = f"required folder {folder.path.expanduser()} is not in the set"
        elif item.kind == "pgdump":
            db = customer.databases[item.name]
            reason = (f"database {customer.database_name(item.name)} on {db.server} "
                      f"is not in the set")
        else:
            reason = f"{item.kind} of server {item.server} is not in the set"
        gaps.append(Gap(item, reason))
    return gaps
