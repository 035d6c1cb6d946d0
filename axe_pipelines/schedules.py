"""Schedules, evaluated in the tier's zone (Asia/Seoul by default), all on by default so a
running dagster-daemon backs up without anyone flipping a switch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from axe_pipelines.config import Customer, tier_timezone
from axe_pipelines.names import (
    cold_rotation_schedule,
    drill_job,
    peer_check_job,
    restic_check_schedule,
    retention_schedule,
    tier_a_schedule,
    tier_b_schedule,
)

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as AssetJob,
    )


def tier_a_nightly(customer_name: str, customer: Customer, job: AssetJob) -> dg.ScheduleDefinition:
    """Return the nightly tier-A schedule (03:00 unless customers.yaml says otherwise)."""
    assert customer.tiers is not None
    return dg.ScheduleDefinition(
        name=tier_a_schedule(customer_name), cron_schedule=customer.tiers.local.schedule,
        execution_timezone=tier_timezone(customer), job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Tier A backup of {customer_name} into its local restic repository.")


def tier_b_schedules(customer_name: str, customer: Customer, push: AssetJob,
                     look: AssetJob) -> list[dg.ScheduleDefinition]:
    """Return the nightly push (03:30) and the peer_now look (every 6 h) of tier B."""
    assert customer.tiers is not None and customer.tiers.ring is not None
    ring, zone = customer.tiers.ring, tier_timezone(customer)
    return [
        dg.ScheduleDefinition(
            name=tier_b_schedule(customer_name), cron_schedule=ring.schedule,
            execution_timezone=zone, job=push, default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Tier B push of {customer_name} (after tier A)."),
        dg.ScheduleDefinition(
            name=peer_check_job(customer_name), cron_schedule=ring.peer_check_schedule,
            execution_timezone=zone, job=look, default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"peer_now of {customer_name}'s ring peers between the nightly "
                        f"pushes."),
    ]


def cold_rotation_daily(customer_name: str, customer: Customer,
                        job: AssetJob) -> dg.ScheduleDefinition:
    """Return the daily (09:00) volumes_current schedule of tier C."""
    return dg.ScheduleDefinition(
        name=cold_rotation_schedule(customer_name), cron_schedule="0 9 * * *",
        execution_timezone=tier_timezone(customer), job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily: fail when a cold SSD has not been synced within its rotation.")


RETENTION_CRON = "0 5 * * 0"  # Sundays 05:00, after the night's tier A (03:00) and B (03:30)
RESTIC_CHECK_CRON = "0 6 * * 0"  # Sundays 06:00: checks what retention left


def care_schedules(customer_name: str, customer: Customer, retention: dg.JobDefinition,
                   check: AssetJob) -> list[dg.ScheduleDefinition]:
    """Return the weekly retention (Sundays 05:00) and restic check (Sundays 06:00)
    schedules of the customer, in the tier's zone."""
    zone = tier_timezone(customer)
    return [
        dg.ScheduleDefinition(
            name=retention_schedule(customer_name), cron_schedule=RETENTION_CRON,
            execution_timezone=zone, job=retention,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Weekly: forget and prune {customer_name}'s snapshots per each "
                        f"tier's retention policy."),
        dg.ScheduleDefinition(
            name=restic_check_schedule(customer_name), cron_schedule=RESTIC_CHECK_CRON,
            execution_timezone=zone, job=check,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Weekly: restic check of every tier of {customer_name} (a "
                        f"rotating part of the data)."),
    ]


def restore_drill_quarterly(customer_name: str, customer: Customer,
                            job: AssetJob) -> dg.ScheduleDefinition:
    """Return the restore drill's schedule, `<customer>_restore_drill` (drill.schedule:
    Jan/Apr/Jul/Oct 15 at 03:00 in the tier's zone unless customers.yaml says otherwise)."""
    return dg.ScheduleDefinition(
        name=drill_job(customer_name), cron_schedule=customer.drill.schedule,
        execution_timezone=tier_timezone(customer), job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Quarterly restore drill of {customer_name}: yesterday's backup into "
                    f"staging, checked, from tier A or (falling back) C or B; Slack report.")
