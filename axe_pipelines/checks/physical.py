"""The physical tier in Dagster: the `base_backup_current` check on each
`<customer>/physical/<server>-physical` asset (its coverage rule: the set's `coverage` leaves
base backups out, since they may run weekly while the dumps run nightly), and, for a server
with `physical_schedule`, the job and schedule of its own. The assets themselves are members
of tier A's multi-asset (assets/tier_a.py); the evaluation is physical_item.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import dagster as dg

from axe_pipelines.config import Customer, tier_timezone
from axe_pipelines.names import physical_job, physical_key, repository_tags
from axe_pipelines.physical_item import base_backup_problem, max_age_hours, physical_items
from axe_pipelines.restic import Restic

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as AssetJob,
    )

CURRENT = "base_backup_current"


def current_spec(customer_name: str, server: str) -> dg.AssetCheckSpec:
    """Return the spec of `base_backup_current` on a server's base backups."""
    return dg.AssetCheckSpec(
        CURRENT, asset=physical_key(customer_name, server),
        description="The repository holds a complete base backup of the server no older "
                    "than physical_max_age_hours (the runbook's 'back up the volume itself').")


def current_results(customer_name: str, customer: Customer, restic: Restic,
                    servers: list[str]) -> list[dg.AssetCheckResult]:
    """Given the servers whose check was selected, read the repository's physical snapshots
    once and return each server's `base_backup_current` (ERROR)."""
    if not servers:
        return []
    snaps = restic.snapshots(tags=[f"customer={customer_name}", "kind=physical"])
    now = datetime.now(ZoneInfo(tier_timezone(customer)))
    results = []
    for server in servers:
        problem = base_backup_problem(customer, server, snaps, now)
        mine = [s for s in snaps if s.tag("server") == server]
        results.append(dg.AssetCheckResult(
            asset_key=physical_key(customer_name, server), check_name=CURRENT,
            passed=problem is None, severity=dg.AssetCheckSeverity.ERROR,
            description=problem or "current",
            metadata={"max_age_hours": max_age_hours(customer, server),
                      "base_backups": len(mine),
                      "newest": mine[-1].time.isoformat() if mine else ""}))
    return results


def own_schedule_keys(customer_name: str, customer: Customer) -> list[dg.AssetKey]:
    """Return the keys of the base backups that run on a schedule of their own (the nightly
    job leaves them out)."""
    return [physical_key(customer_name, i.name) for i in physical_items(customer)
            if customer.servers[i.name].physical_schedule]


def own_jobs_and_schedules(customer_name: str, customer: Customer,
                           ) -> tuple[list[AssetJob], list[dg.ScheduleDefinition]]:
    """Return, per server with `physical_schedule`, the job that takes its base backup (and
    evaluates base_backup_current) and its schedule, on tier A's run queue."""
    jobs, schedules = [], []
    for item in physical_items(customer):
        cron = customer.servers[item.name].physical_schedule
        if not cron:
            continue
        job = dg.define_asset_job(
            name=physical_job(customer_name, item.name),
            selection=dg.AssetSelection.assets(physical_key(customer_name, item.name)),
            tags=repository_tags(customer),
            description=f"Physical base backup of server {item.name} into tier A.")
        jobs.append(job)
        schedules.append(dg.ScheduleDefinition(
            name=physical_job(customer_name, item.name), cron_schedule=cron,
            execution_timezone=tier_timezone(customer), job=job,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Base backup of server {item.name} on its own schedule."))
    return jobs, schedules
