"""Jobs: the tier A backup job per customer, and the restore job."""

from __future__ import annotations

import dagster as dg

from axe_pipelines.assets.tier_a import tier_a_selection, tier_a_tags
from axe_pipelines.config import Customer, Site


def tier_a_job(customer_name: str, customer: Customer) -> dg.UnresolvedAssetJobDefinition:
    # The axe/repository run tag lets the instance keep runs on one repository apart
    # (tag_concurrency_limits in dagster.yaml).
    return dg.define_asset_job(
        name=f"{customer_name.replace('-', '_')}_tier_a",
        selection=tier_a_selection(customer_name),
        tags=tier_a_tags(customer),
        description=f"Back up every database and folder of {customer_name} into tier A.",
    )


def restore_job(config: Site) -> dg.JobDefinition:
    """The `restore` job (one per code location): `axe restore` with a typed Config, launched
    from the UI; see assets/restore.py."""
    from axe_pipelines.assets.restore import build_restore_job

    return build_restore_job(config)
