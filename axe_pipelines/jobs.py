"""Jobs: per customer, tier A's backup, tier B's push and its peer_now look, tier C's sync and
its rotation check; and the restore job (one per code location).

Every job that touches a tier-A repository carries its `axe/repository` run tag: the run
queue holds it while another run on that repository is in progress (dagster.yaml's
tag_concurrency_limits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from axe_pipelines.checks.physical import own_schedule_keys
from axe_pipelines.config import Customer, Site
from axe_pipelines.names import (
    RESTIC_CHECK,
    cold_rotation_job,
    peer_check_job,
    repository_tags,
    restic_check_job,
    set_key,
    tier_a_group,
    tier_a_job,
    tier_b_group,
    tier_b_job,
    tier_c_job,
    tier_c_key,
)

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as AssetJob,
    )


def _without_weekly_check(selection: dg.AssetSelection,
                          assets: list[dg.AssetKey]) -> dg.AssetSelection:
    """Given a nightly job's selection and its assets, return it without their restic_check:
    a group or asset selection takes every check of its assets, and the weekly check has its
    own job and schedule."""
    return selection - dg.AssetSelection.checks(
        *[dg.AssetCheckKey(key, RESTIC_CHECK) for key in assets])


def tier_a_backup_job(customer_name: str,
                      customer: Customer) -> AssetJob:
    """Return the job that backs up every database and folder of the customer into tier A."""
    return dg.define_asset_job(
        name=tier_a_job(customer_name),
        selection=_without_weekly_check(dg.AssetSelection.groups(tier_a_group(customer_name)),
                                        [set_key(customer_name)])
        - dg.AssetSelection.assets(*own_schedule_keys(customer_name, customer)),
        tags=repository_tags(customer),
        description=f"Back up every database and folder of {customer_name} into tier A.",
    )


def tier_b_jobs(customer_name: str, customer: Customer, peer_now_checks: list,
                ) -> tuple[AssetJob, AssetJob]:
    """Return (the nightly push to the ring peers, the peer_now look) of the customer."""
    push = dg.define_asset_job(
        name=tier_b_job(customer_name),
        selection=_without_weekly_check(
            dg.AssetSelection.groups(tier_b_group(customer_name)) - (
                dg.AssetSelection.checks(*peer_now_checks)),
            [k.asset_key for c in peer_now_checks for k in c.check_keys]),
        tags=repository_tags(customer, "b"),
        description=f"Copy {customer_name}'s latest tier-A set to its ring peers.")
    look = dg.define_asset_job(
        name=peer_check_job(customer_name),
        selection=dg.AssetSelection.checks(*peer_now_checks),
        description=f"Look at {customer_name}'s ring peers now: ssh, and the latest set there.")
    return push, look


def tier_c_jobs(customer_name: str, customer: Customer, volumes_current: object,
                ) -> tuple[AssetJob, AssetJob]:
    """Return (the sync to mounted cold volumes, the volumes_current check) of the customer."""
    sync = dg.define_asset_job(
        name=tier_c_job(customer_name),
        selection=_without_weekly_check(dg.AssetSelection.assets(tier_c_key(customer_name)),
                                        [tier_c_key(customer_name)]),
        tags=repository_tags(customer, "c"),
        description=f"Sync {customer_name}'s latest tier-A set to mounted cold volumes.")
    check = dg.define_asset_job(
        name=cold_rotation_job(customer_name),
        selection=dg.AssetSelection.checks(volumes_current),
        description="Is any cold SSD overdue?")
    return sync, check


def restic_check_jobs(customer_name: str, customer: Customer, checks: list) -> AssetJob:
    """Return the job that runs the restic_check of each of the customer's tiers (the
    weekly `restic check`), on its repository's run queue."""
    return dg.define_asset_job(
        name=restic_check_job(customer_name),
        selection=dg.AssetSelection.checks(*checks),
        tags=repository_tags(customer, "care"),
        description=f"restic check of every tier of {customer_name}, this week's part of "
                    f"the data.")


def restore_job(config: Site) -> dg.JobDefinition:
    """Return the `restore` job: `axe restore` with a typed Config, launched from the UI;
    see assets/restore.py."""
    from axe_pipelines.assets.restore import build_restore_job

    return build_restore_job(config)
