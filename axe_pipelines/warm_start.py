"""Which of a tier-A run's backups `axe backup --local` starts warm, ahead of the Dagster run
(restic/warm.py says why): every item that streams a command (dumps, roles, pg_dumpall) and
the set's set-meta, in plan order, as many waiting at once as two waves of the lanes.
Folders and base backups start as before. Plain: no Dagster here."""

from __future__ import annotations

from datetime import datetime

from axe_pipelines.backup import TAG_TOOL, Item, dump_filename
from axe_pipelines.config import Customer
from axe_pipelines.instance.owner import run_dir
from axe_pipelines.restic import Restic
from axe_pipelines.restic.warm import WarmKey, WarmPool, register
from axe_pipelines.set_meta import SET_META_FILE, SET_META_KIND

WARMABLE = ("pgdump", "roles", "dumpall")


def warm_keys(customer_name: str, customer: Customer, items: list[Item],
              run_id: str) -> list[WarmKey]:
    """Given the plan and the run id, return what each warm backup is started with, in plan
    order: file name and tags exactly as the run's own backups will ask for them."""
    keys = [WarmKey(dump_filename(customer, i), tuple(i.tags(customer_name, run_id)))
            for i in items if i.kind in WARMABLE]
    if any(i.kind == "pgdump" for i in items):
        keys.append(WarmKey(SET_META_FILE, (TAG_TOOL, f"customer={customer_name}",
                                            f"kind={SET_META_KIND}", f"run={run_id}")))
    return keys


def start_warm(restic: Restic, customer_name: str, customer: Customer, items: list[Item], *,
               run_id: str, at: datetime) -> WarmPool | None:
    """Given tier A's repository (probed), the plan, the run id and logical time the run will
    have, start its first backups warm and register them for that run; return the pool (None
    when nothing in the plan streams a command)."""
    assert customer.tiers is not None
    tier = customer.tiers.local
    keys = warm_keys(customer_name, customer, items, run_id)
    if not keys:
        return None
    lanes = len({i.lane for i in items if i.kind in WARMABLE})
    # Two waves of the lanes: the items that start first, and those that follow as soon as
    # one of them ends (a restic process needs most of a second to open the repository).
    depth = 2 * tier.parallel_items * max(1, min(tier.parallel_servers, lanes))
    try:
        pool = WarmPool(restic, run_dir(run_id), restic.time_args(at), keys, depth=depth)
    except OSError:  # no FIFO here (odd filesystem): the run's backups start cold
        return None
    register(run_id, pool)
    return pool
