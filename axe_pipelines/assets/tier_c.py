"""Tier C as a Dagster asset: `<customer>/tier_c/cold_volumes`, the sync of the latest tier-A
set onto the mounted cold SSDs, started by the mount sensor (sensors/cold.py), the CLI or the
UI; fresh for a quarter after a sync (the rotation), not for a night.

The work is in cold.py; the checks, jobs and schedules are in checks/tier_c.py, jobs.py and
schedules.py. (No `from __future__ import annotations`: Dagster reads the context and config
annotations at runtime.)
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
from dagster import AssetExecutionContext

from axe_pipelines.actions.cold_care import care_after_sync
from axe_pipelines.assets.metadata import in_zone, sizes
from axe_pipelines.checks.care import record_checks
from axe_pipelines.checks.tier_b import set_complete_result, set_complete_spec, tier_a_running
from axe_pipelines.checks.tier_c import rotation_result, rotation_spec
from axe_pipelines.cold import (
    ColdError,
    SyncResult,
    cold_settings,
    find_volumes,
    sync_volume,
    volume_at,
)
from axe_pipelines.config import Site, tier_timezone
from axe_pipelines.config_tiers import QUARTER_DAYS, ColdTier
from axe_pipelines.names import TIER_TAG, repository_pool, set_key, tier_c_group, tier_c_key
from axe_pipelines.rotation import expected_volume


class ColdSyncConfig(dg.Config):
    """Which volume to sync: a path from the mount sensor, or empty for every mounted one."""

    volume: str = ""


def sync_metadata(results: list[SyncResult], expected: int,
                  zone: str = "UTC") -> dict[str, object]:
    """Given the syncs of one run, this quarter's volume number and the customer's zone,
    return the tier-C materialization's metadata (`synced_volumes` feeds the volumes_current
    check; its times are in that zone)."""
    return {
        "volumes": [r.volume.name for r in results],
        "volume_ids": [r.volume.identity for r in results],
        "synced_volumes": dg.MetadataValue.json(
            {str(r.volume.number): in_zone(r.synced_at, zone) for r in results
             if r.volume.number}),
        "expected_volume": expected,
        "set": results[0].run_id if results else "",
        "set_time": in_zone(results[0].set_time, zone) if results else "",
        "snapshots_copied": dg.MetadataValue.int(sum(len(r.copied) for r in results)),
        "snapshots_already_present": dg.MetadataValue.int(
            sum(len(r.already_present) for r in results)),
        **sizes(bytes_copied=sum(r.bytes for r in results)),
        "duration_s": dg.MetadataValue.float(round(sum(r.duration_s for r in results), 2)),
        "repositories_created": [r.volume.name for r in results if r.created_repository],
    }


def rotation_freshness(cold: ColdTier) -> dg.FreshnessPolicy:
    """Given the cold settings, return tier C's freshness policy as the rotation sees it: one
    volume per quarter, so the copy is fresh for a quarter after a sync (92 days, the longest
    one), warns after that and fails `rotation_grace_days` later — not every night, when tier
    A writes a set the SSD in the drawer does not have yet (the UI says "Unsynced" then)."""
    quarter = timedelta(days=QUARTER_DAYS)
    return dg.FreshnessPolicy.time_window(
        fail_window=quarter + timedelta(days=max(cold.rotation_grace_days, 1)),
        warn_window=quarter)


def build_tier_c_asset(site: Site, customer_name: str) -> dg.AssetsDefinition:
    """Given a customer with `tiers.cold`, return its tier-C asset with the rotation check.
    Raise ColdError when tier C is not configured."""
    customer = site.customer(customer_name)
    cold = cold_settings(customer_name, customer)
    key = tier_c_key(customer_name)
    zone = tier_timezone(customer)

    @dg.asset(
        key=key, deps=[set_key(customer_name)], group_name=tier_c_group(customer_name),
        kinds={"restic"}, tags={TIER_TAG: "c"},
        check_specs=[rotation_spec(key), set_complete_spec(key)],
        description=f"restic copy of {customer_name}'s latest tier-A set to the mounted cold "
                    f"SSD ({cold.mount_glob}, repository <volume>/{cold.repo_subdir}); "
                    f"started by the mount sensor.",
        # Tier A's pool: a sync waits while tier A writes tonight's set, and all cold syncs
        # of a customer queue behind each other; the volume's own lock file also keeps a CLI
        # sync and a Dagster sync of the same volume apart.
        pool=repository_pool(customer),
        freshness_policy=rotation_freshness(cold),
    )
    def tier_c(context: AssetExecutionContext, config: ColdSyncConfig):
        try:
            volumes = [volume_at(cold, config.volume)] if config.volume else find_volumes(cold)
        except ColdError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        if not volumes:
            raise dg.Failure(description=f"tier C of {customer_name}: no cold volume is "
                                         f"mounted ({cold.mount_glob}); mount an SSD",
                             allow_retries=False)
        results, errors = [], []
        in_progress = tier_a_running(context.instance, own_run=context.run.run_id)
        for volume in volumes:  # one at a time; one volume's failure never skips the others
            try:
                results.append(sync_volume(site, customer_name, volume,
                                           log=context.log.info, in_progress=in_progress))
            except ColdError as exc:
                context.log.error(str(exc))
                errors.append(str(exc))
                continue
            # The weekly care sees a rotated SSD only if it is mounted on Sunday morning.
            care = care_after_sync(site, customer_name, results[-1].volume, datetime.now(UTC),
                                   say=context.log.info)
            for line in care.lines:
                context.log.info(line)
            if care.checked is not None:
                record_checks([care.checked], context.instance)
        expected = expected_volume(datetime.now(ZoneInfo(zone)), cold.volumes,
                                   cold.rotation_origin)
        if results:
            yield dg.MaterializeResult(metadata=sync_metadata(results, expected, zone))
            yield rotation_result(key, [r.volume.number for r in results], expected,
                                  [r.volume.name for r in results])
            if results[0].the_set is not None:  # every volume got the same newest set
                yield set_complete_result(key, results[0].the_set)
        if errors:
            raise dg.Failure(description="\n".join(errors), allow_retries=False,
                             metadata={"failed_volumes": len(errors)})

    return tier_c
