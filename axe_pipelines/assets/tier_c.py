"""Tier C as Dagster definitions: `<customer>/tier_c/cold`, its checks, job, mount sensor and
the daily rotation check; plus the runner behind `axe backup --cold`.

The work is in cold.py; this module only wires it into Dagster.
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
from dagster import AssetCheckExecutionContext, AssetExecutionContext

from axe_pipelines.assets.tier_a import repository_pool, set_key, tier_a_tags
from axe_pipelines.assets.tier_b import tier_a_in_progress
from axe_pipelines.checks.tier_c import (
    VOLUMES_CURRENT,
    last_sync_by_volume,
    rotation_result,
    rotation_spec,
    volumes_current_result,
)
from axe_pipelines.cold import (
    ColdError,
    SyncResult,
    cold_settings,
    expected_volume,
    find_volumes,
    first_turn_ends,
    sync_volume,
    volume_at,
)
from axe_pipelines.config import Site, tier_timezone
from axe_pipelines.sensors.cold import build_cold_sensor

HISTORY = 200  # materializations read back for per-volume last-sync times


class ColdSyncConfig(dg.Config):
    """Which volume to sync: a path from the mount sensor, or empty for every mounted one."""

    volume: str = ""


def tier_c_key(customer_name: str) -> dg.AssetKey:
    return dg.AssetKey([customer_name, "tier_c", "cold"])


def _name(*parts: str) -> str:
    return "_".join(p.replace("-", "_") for p in parts)


def op_name(customer_name: str) -> str:
    """The op behind the asset (run config goes under `ops.<this>`)."""
    return tier_c_key(customer_name).to_python_identifier()


def sync_metadata(results: list[SyncResult], expected: int) -> dict[str, object]:
    return {
        "volumes": [r.volume.name for r in results],
        "volume_ids": [r.volume.identity for r in results],
        "synced_volumes": dg.MetadataValue.json(
            {str(r.volume.number): r.synced_at.isoformat() for r in results if r.volume.number}),
        "expected_volume": expected,
        "set": results[0].run_id if results else "",
        "snapshots_copied": dg.MetadataValue.int(sum(len(r.copied) for r in results)),
        "snapshots_already_present": dg.MetadataValue.int(
            sum(len(r.already_present) for r in results)),
        "bytes_copied": dg.MetadataValue.int(sum(r.bytes for r in results)),
        "duration_s": dg.MetadataValue.float(round(sum(r.duration_s for r in results), 2)),
        "repositories_created": [r.volume.name for r in results if r.created_repository],
    }


def _history(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dict[str, object]]:
    records = instance.fetch_materializations(key, limit=HISTORY).records
    out = []
    for record in records:
        mat = record.asset_materialization
        if mat is not None:
            out.append({k: v.value for k, v in mat.metadata.items()})
    return out


def build_tier_c(config: Site, customer_name: str) -> tuple[list, list, list, list, list]:
    """(assets, checks, jobs, schedules, sensors) of tier C; empty without `tiers.cold`."""
    site = config  # the asset's own `config` parameter is its run config
    customer = site.customer(customer_name)
    if not (customer.tiers and customer.tiers.cold):
        return [], [], [], [], []
    cold = cold_settings(customer_name, customer)
    key = tier_c_key(customer_name)
    zone = tier_timezone(customer)

    @dg.asset(
        key=key, deps=[set_key(customer_name)],
        group_name=_name(customer_name, "tier_c"), kinds={"restic"},
        tags={"axe/tier": "c"}, check_specs=[rotation_spec(key)],
        description=f"restic copy of {customer_name}'s latest tier-A set to the mounted cold "
                    f"SSD ({cold.mount_glob}, repository <volume>/{cold.repo_subdir}); "
                    f"started by the mount sensor.",
        # Tier A's pool: a sync waits while tier A writes tonight's set, and all cold syncs
        # of a customer queue behind each other; the volume's own lock file also keeps a CLI
        # sync and a Dagster sync of the same volume apart.
        pool=repository_pool(customer),
    )
    def tier_c(context: AssetExecutionContext, config: ColdSyncConfig):
        settings = cold
        try:
            volumes = [volume_at(settings, config.volume)] if config.volume else \
                find_volumes(settings)
        except ColdError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        if not volumes:
            raise dg.Failure(description=f"tier C of {customer_name}: no cold volume is "
                                         f"mounted ({settings.mount_glob}); mount an SSD",
                             allow_retries=False)
        results, errors = [], []
        in_progress = tier_a_in_progress(context)
        for volume in volumes:  # one at a time; one volume's failure never skips the others
            try:
                results.append(sync_volume(site, customer_name, volume,
                                           log=context.log.info, in_progress=in_progress))
            except ColdError as exc:
                context.log.error(str(exc))
                errors.append(str(exc))
        expected = expected_volume(datetime.now(ZoneInfo(zone)), settings.volumes,
                                   settings.rotation_start_year)
        if results:
            yield dg.MaterializeResult(metadata=sync_metadata(results, expected))
            yield rotation_result(key, [r.volume.number for r in results], expected,
                                  [r.volume.name for r in results])
        if errors:
            raise dg.Failure(description="\n".join(errors), allow_retries=False,
                             metadata={"failed_volumes": len(errors)})

    @dg.asset_check(asset=key, name=VOLUMES_CURRENT,
                    description=f"Every one of the {cold.volumes} cold volumes was synced within "
                                f"{cold.overdue_days:g} days (its rotation period: one "
                                f"quarter per volume, plus grace).")
    def volumes_current(context: AssetCheckExecutionContext) -> dg.AssetCheckResult:
        last = last_sync_by_volume(_history(context.instance, key))
        return volumes_current_result(
            key, last, cold.volumes, cold.overdue_days,
            first_turn_ends=first_turn_ends(cold.volumes, cold.rotation_start_year, zone))

    job = dg.define_asset_job(
        name=_name(customer_name, "tier_c"), selection=dg.AssetSelection.assets(key),
        # tier A's axe/repository tag: queued behind a tier-A run on the same repository.
        tags={**tier_a_tags(customer), "axe/tier": "c"},
        description=f"Sync {customer_name}'s latest tier-A set to mounted cold volumes.")
    check_job = dg.define_asset_job(
        name=_name(customer_name, "cold_rotation_check"),
        selection=dg.AssetSelection.checks(volumes_current),
        description="Is any cold SSD overdue?")
    schedule = dg.ScheduleDefinition(
        name=_name(customer_name, "cold_rotation_daily"), cron_schedule="0 9 * * *",
        execution_timezone=zone, job=check_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily: fail when a cold SSD has not been synced within its rotation.")
    sensor = build_cold_sensor(customer_name, cold, job, op_name(customer_name))
    return [tier_c], [volumes_current], [job, check_job], [schedule], [sensor]


def run_cold_cli(config: Site, customers: list[str], *, say: Callable[[str], None],
                 err: Callable[[str], None]) -> int:
    """`axe backup --cold`: sync every mounted volume now, each as a recorded Dagster run.
    Returns the CLI exit code (0 ok, 1 a sync failed, nothing mounted or an ERROR check
    failed, 2 not configured)."""
    from axe_pipelines.instance import ensure_dagster_home
    from axe_pipelines.progress import human_bytes
    from axe_pipelines.runs import print_checks, run_failure

    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    worst = 0
    for name in customers:
        assets, checks, *_ = build_tier_c(config, name)
        if not assets:
            err(f"tier C of {name}: no tiers.cold in customers.yaml")
            worst = max(worst, 2)
            continue
        cold = cold_settings(name, config.customer(name))
        volumes = find_volumes(cold)
        if not volumes:
            err(f"tier C of {name}: no cold volume is mounted ({cold.mount_glob}); mount one "
                f"of the SSDs and run again")
            worst = max(worst, 1)
            continue
        for volume in volumes:
            result = dg.materialize(
                [*assets, *checks], instance=instance, selection=[tier_c_key(name)],
                tags={"axe/tier": "c", "axe/volume": volume.name}, raise_on_error=False,
                run_config={"ops": {op_name(name): {"config": {"volume": str(volume.path)}}},
                            "loggers": {"console": {"config": {"log_level": "ERROR"}}}})
            if not result.success:
                err(run_failure(result))
                worst = max(worst, 1)
                continue
            meta = {k: v.value for k, v in
                    result.get_asset_materialization_events()[0].materialization.metadata
                    .items()}
            say(f"tier C {name} -> {volume.name}: {meta['snapshots_copied']} copied, "
                f"{meta['snapshots_already_present']} already there, "
                f"{human_bytes(int(meta['bytes_copied']))}, {meta['duration_s']} s")
            # Each check with its own severity: a WARN (another quarter's volume) keeps exit
            # 0, an ERROR (a volume overdue) makes it 1, like `axe backup --local`.
            if not print_checks(result, say=say, failed_only=True):
                worst = max(worst, 1)
    return worst

