"""Tier schedules, evaluated in the tier's zone (Asia/Seoul by default)."""

from __future__ import annotations

import dagster as dg

from axe_pipelines.config import Customer, tier_timezone


def tier_a_schedule(customer_name: str, customer: Customer,
                    job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Nightly tier A (03:00 Asia/Seoul unless customers.yaml says otherwise); on by default
    so a running dagster-daemon backs up without anyone flipping a switch."""
    assert customer.tiers is not None
    return dg.ScheduleDefinition(
        name=f"{customer_name.replace('-', '_')}_tier_a_nightly",
        cron_schedule=customer.tiers.local.schedule,
        execution_timezone=tier_timezone(customer),
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Tier A backup of {customer_name} into its local restic repository.",
    )
