"""Archived WAL in Dagster (issue 13 part 2): per customer one multi-asset with an asset per
server with `wal:` (`<customer>/wal/<server>-wal`), its checks, the job that pushes the
spools and the sensor that starts it every few minutes.

- The asset is materialized by a push after which tier A holds every WAL file the server has
  finished (the push worked, the archiver is not failing). Its freshness policy is the RPO in
  minutes (`wal.freshness_minutes`), so an archiver that keeps failing (a full spool) or a
  pusher that cannot push turns it stale, and the alert sensor posts it.
- `sequence_whole` (ERROR): no segment is missing in tier A from the oldest base backup on.
- `archiving` (ERROR): the server's archive_command is not failing (pg_stat_archiver).
- The op runs in tier A's repository pool and the job carries its run-queue tag: it never
  writes the repository together with another run. The sensor skips while a push is queued
  or running, so a long night does not pile pushes up.
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

from datetime import timedelta

import dagster as dg

from axe_pipelines.actions.wal import ServerPush, push_server, wal_servers
from axe_pipelines.config import Site
from axe_pipelines.names import (
    KIND_TAG,
    TIER_TAG,
    repository_pool,
    repository_tags,
    wal_group,
    wal_job,
    wal_key,
    wal_sensor,
)

SEQUENCE = "sequence_whole"
ARCHIVING = "archiving"
_BUSY = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
         dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def push_metadata(push: ServerPush) -> dict[str, object]:
    """Given one server's push, return the asset's metadata."""
    done = push.result
    a = push.archiver
    return {"files_pushed": done.files if done else 0,
            "batches": [f"{b.id}: {b.first}..{b.last} ({len(b.files)}) in {b.snapshot_id[:8]}"
                        for b in done.pushed] if done else [],
            "settled_leftovers": done.settled if done else [],
            "last_archived_wal": a.last_archived_wal if a else "",
            "last_archived_time_utc": a.last_archived_time if a else "",
            "archiver_failed_count": a.failed_count if a else -1,
            "spool": str(push.spool),
            "spool_free": dg.MetadataValue.int(push.spool_free or 0)}


def _results(key: dg.AssetKey, push: ServerPush):
    """The materialization (when tier A is current) and both checks of one server."""
    if push.current:
        yield dg.MaterializeResult(asset_key=key, metadata=push_metadata(push))
    yield dg.AssetCheckResult(
        asset_key=key, check_name=SEQUENCE, passed=not push.gaps,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("whole" + (f" from {push.since}" if push.since else "")
                     if not push.gaps else "; ".join(push.gaps[:5])),
        metadata={"gaps": push.gaps, "since": str(push.since or "")})
    yield dg.AssetCheckResult(
        asset_key=key, check_name=ARCHIVING, passed=push.archiving_ok,
        severity=dg.AssetCheckSeverity.ERROR, description=push.archiving_line(),
        metadata={"spool_free": dg.MetadataValue.int(push.spool_free or 0)})


def wal_definitions(site: Site, customer_name: str) -> dg.Definitions:
    """Given a customer with tier A, return its WAL assets, checks, push job and sensor;
    empty when none of its servers has `wal:`."""
    customer = site.customer(customer_name)
    servers = wal_servers(customer)
    if not servers:
        return dg.Definitions()
    keys = {name: wal_key(customer_name, name) for name in servers}
    specs = [dg.AssetSpec(
        keys[name], group_name=wal_group(customer_name), skippable=True,
        kinds={"postgres", "restic"}, tags={TIER_TAG: "a", KIND_TAG: "wal"},
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(minutes=server.wal.rpo_minutes)),
        description=f"WAL of server {name}, archived into {server.wal.spool} and pushed into "
                    f"tier A every {server.wal.push_every_minutes} min; stale after "
                    f"{server.wal.rpo_minutes} min (the RPO)")
        for name, server in servers.items()]
    checks = [dg.AssetCheckSpec(check, asset=key, description=text) for key in keys.values()
              for check, text in ((SEQUENCE, "No WAL segment is missing in tier A from the "
                                   "oldest base backup on."),
                                  (ARCHIVING, "The server's archive_command is not failing."))]

    @dg.multi_asset(name=f"{wal_job(customer_name)}_spools", specs=specs, check_specs=checks,
                    can_subset=True, pool=repository_pool(customer))
    def push_spools(context: dg.AssetExecutionContext):
        failures = []
        for name, key in keys.items():
            if key not in context.selected_asset_keys:
                continue
            push = push_server(customer_name, customer, name, say=context.log.info)
            yield from _results(key, push)
            failures += [f"{name}: {e}" for e in push.errors]
        if failures:
            raise dg.Failure(description=f"WAL push of {customer_name}: " + "; ".join(failures),
                             allow_retries=False)

    job = dg.define_asset_job(name=wal_job(customer_name),
                              selection=dg.AssetSelection.assets(*keys.values()),
                              tags=repository_tags(customer, "wal"),
                              description=f"Push {customer_name}'s WAL spools into tier A.")
    every = min(s.wal.push_every_minutes for s in servers.values()) * 60

    @dg.sensor(name=wal_sensor(customer_name), job=job, minimum_interval_seconds=every,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Starts the WAL push of {customer_name} every {every // 60} min "
                           f"(skipped while one is queued or running).")
    def every_few_minutes(context: dg.SensorEvaluationContext):
        busy = context.instance.get_run_records(
            dg.RunsFilter(job_name=wal_job(customer_name), statuses=_BUSY), limit=1)
        if busy:
            return dg.SkipReason(f"a WAL push of {customer_name} is still queued or running")
        return dg.RunRequest()

    return dg.Definitions(assets=[push_spools], jobs=[job], sensors=[every_few_minutes])
