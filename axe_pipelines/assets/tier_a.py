"""Tier A as Dagster assets: one multi-asset per customer.

    <customer>/dumps/<database>          one per database (pg_dump -Fc -Z0 streamed into restic)
    <customer>/roles/<server>            pg_dumpall --globals-only per server
    <customer>/dumpall/<server>-dumpall  plain pg_dumpall, when enabled for the server
    <customer>/folders/<folder>          one per folder, excludes applied
    <customer>/tier_a/nightly_set        the night's set: every member's snapshot, read back

One op does the whole set so servers run in parallel lanes inside it while the repository's
pool keeps other runs on the same repository out. It can be subset from the UI (one database,
or only the checks).
"""


from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
from dagster import AssetExecutionContext

from axe_pipelines import early_run
from axe_pipelines.assets.metadata import row_count_table, row_counts_from, short_id, sizes
from axe_pipelines.backup import (
    Item,
    ItemResult,
    TierAResult,
    coverage,
    local_restic,
    plan_tier_a,
    run_tier_a,
)
from axe_pipelines.checks.physical import CURRENT, current_results, current_spec
from axe_pipelines.checks.tier_a import (
    coverage_result,
    coverage_spec,
    restorable_result,
    restorable_spec,
)
from axe_pipelines.config import Customer, freshness_window, tier_timezone
from axe_pipelines.names import (
    KIND_TAG,
    LOGICAL_TIME_TAG,
    PROGRESS_RESOURCE,
    SCHEDULED_TIME_TAG,
    TIER_TAG,
    history_keys,
    item_key,
    repository_pool,
    set_key,
    tier_a_group,
    tier_a_op,
)
from axe_pipelines.physical_item import max_age_hours, physical_items
from axe_pipelines.postgres.client import PostgresError
from axe_pipelines.progress import LogReporter, Streamed, human_bytes
from axe_pipelines.readback import DumpCheck, verify_dump
from axe_pipelines.restic import Restic, ResticError
from axe_pipelines.set_meta import SET_META_KIND


def logical_time(tags: dict[str, str], timezone: str, now: datetime | None = None, *,
                 rerun: bool = False) -> datetime:
    """Given a run's tags and the tier's zone, return the run's logical time: the schedule's
    tick when scheduled, else now (whole seconds), in that zone. Snapshots carry it as their
    restic time. `axe backup` sets its own runs' time, chosen before the run starts; a
    re-execution (`rerun`: the UI copies the tags) takes now instead."""
    zone = ZoneInfo(timezone)
    text = tags.get(SCHEDULED_TIME_TAG) or (None if rerun else tags.get(LOGICAL_TIME_TAG))
    if text:
        return datetime.fromisoformat(text).astimezone(zone)
    return (now or datetime.now(zone)).astimezone(zone).replace(microsecond=0)


def _describe(customer: Customer, item: Item) -> str:
    """The UI's description of one item's asset."""
    if item.kind == "pgdump":
        db = customer.databases[item.name]
        return (f"pg_dump ({db.format}) of database {customer.database_name(item.name)} on "
                f"{db.server}, streamed into the tier A repository")
    if item.kind == "files":
        return f"restic backup of folder {customer.folders[item.name].path}"
    if item.kind == "roles":
        return f"roles and tablespaces of server {item.name} (pg_dumpall --globals-only)"
    if item.kind == "physical":
        return (f"physical base backup of server {item.name} (pg_basebackup tar with its WAL), "
                f"streamed into the tier A repository")
    return f"plain pg_dumpall of server {item.name}"


def item_metadata(result: ItemResult, run: TierAResult) -> dict[str, object]:
    """Given one item's result in a run, return its materialization metadata (a dump's row
    counts among them, as one table: the restore's row-count check reads them back)."""
    meta: dict[str, object] = {
        "snapshot": short_id(result.snapshot_id),
        "snapshot_id": result.snapshot_id or "",
        "snapshot_time": run.at.isoformat(),  # the run's logical time, in the tier's zone
        "repository": run.repository,
        "path": result.path or "",
        **sizes(bytes_read=result.bytes_read, bytes_added=result.bytes_added),
        "duration_s": dg.MetadataValue.float(round(result.duration_s, 3)),
    }
    if result.item.kind == "pgdump":
        meta["format"] = result.format or "custom"
        meta["server_version"] = result.server_version or ""
        meta["row_counts"] = row_count_table(result.row_counts)
        meta["total_rows"] = dg.MetadataValue.int(sum(result.row_counts.values()))
        if result.table_digests:  # checksum_tables: compared by the drill after a restore
            meta["table_digests"] = dg.MetadataValue.json(result.table_digests)
    return meta


def set_metadata(run: TierAResult) -> dict[str, object]:
    """Given a tier-A run, return the night's set's metadata: members, failures, totals."""
    by_id = {s.id: s for s in run.snapshots if s.tag("kind") != SET_META_KIND}  # no item
    records = []
    for r in run.results:
        records.append(dg.TableRecord({
            "item": r.item.label,
            "status": "ok" if r.ok and r.snapshot_id in by_id else
                      ("skipped" if r.skipped else "failed"),
            "snapshot": short_id(r.snapshot_id), "size_read": human_bytes(r.bytes_read),
            "size_added": human_bytes(r.bytes_added), "seconds": round(r.duration_s, 2),
            "snapshot_id": r.snapshot_id or ""}))
    return {
        "logical_time": run.at.isoformat(),
        "repository": run.repository,
        "members": dg.MetadataValue.int(len(by_id)),
        "failed": dg.MetadataValue.json([r.item.label for r in run.failed]),
        **sizes(bytes_read=sum(r.bytes_read for r in run.results),
                bytes_added=sum(r.bytes_added for r in run.results)),
        "wall_s": dg.MetadataValue.float(round(run.wall_s, 2)),
        # One row per item: the short id to read, the full one to paste into restic.
        "set": dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=[
            dg.TableColumn("item", "string"), dg.TableColumn("status", "string"),
            dg.TableColumn("snapshot", "string"), dg.TableColumn("size_read", "string"),
            dg.TableColumn("size_added", "string"), dg.TableColumn("seconds", "float"),
            dg.TableColumn("snapshot_id", "string")])),
    }


def _latest_dump_metadata(context: dg.AssetExecutionContext,
                          key: dg.AssetKey) -> dict[str, object] | None:
    # The newest dump under this key, else under its key before issue 11's rename.
    for where in history_keys(key):
        event = context.instance.get_latest_materialization_event(where)
        if event is not None and event.asset_materialization is not None:
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}
    return None


def _restorable(context: AssetExecutionContext, restic: Restic, key: dg.AssetKey,
                fresh: ItemResult | None, dumped_now: bool) -> dg.AssetCheckResult:
    """The restorable check of one dump: what the verifier proved while this run stored it,
    else (a check-only selection, or an archive the verifier does not read) the dump read
    back out of the repository."""
    if fresh is not None and fresh.proof is not None:
        return restorable_result(key, fresh.snapshot_id, fresh.proof)
    if fresh is not None:
        snap, path, fmt, counts = fresh.snapshot_id, fresh.path, fresh.format, fresh.row_counts
    elif dumped_now:
        return restorable_result(key, None, None, "the dump failed in this run")
    else:
        meta = _latest_dump_metadata(context, key)
        if not meta:
            return restorable_result(key, None, None, "no dump materialized yet")
        snap, path = str(meta["snapshot_id"]), str(meta["path"])
        fmt, counts = str(meta.get("format", "custom")), row_counts_from(meta["row_counts"])
    try:
        check: DumpCheck = verify_dump(restic, snap, path, fmt=fmt or "custom",
                                       expected_counts=counts)
    except (ResticError, PostgresError) as exc:
        return restorable_result(key, snap, None, str(exc).splitlines()[0])
    return restorable_result(key, snap, check)


def _physical_freshness(customer: Customer, item: Item) -> dg.FreshnessPolicy | None:
    """A base backup's freshness follows its own age limit (it may run weekly)."""
    if item.kind != "physical":
        return None
    hours = max_age_hours(customer, item.name)
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=hours),
                                          warn_window=timedelta(hours=max(1, hours - 2)))


def _specs(customer_name: str, customer: Customer, items: list[Item]) -> list[dg.AssetSpec]:
    """One spec per item plus the night's set, all with tier A's freshness policy."""
    window = freshness_window(customer)
    freshness = dg.FreshnessPolicy.time_window(
        fail_window=window, warn_window=max(window - timedelta(hours=2), timedelta(hours=1)))
    group = tier_a_group(customer_name)
    specs = [
        dg.AssetSpec(item_key(customer_name, item), description=_describe(customer, item),
                     group_name=group,
                     kinds={"postgres", "restic"} if item.kind != "files" else {"restic"},
                     freshness_policy=_physical_freshness(customer, item) or freshness,
                     skippable=True, tags={TIER_TAG: "a", KIND_TAG: item.kind})
        for item in items
    ]
    specs.append(dg.AssetSpec(
        set_key(customer_name), deps=[item_key(customer_name, i) for i in items],
        group_name=group, freshness_policy=freshness, skippable=True, kinds={"restic"},
        tags={TIER_TAG: "a"},
        description=f"The night's tier A set of {customer_name}: every dump and folder "
                    f"snapshot of one run in {customer.tiers.local.repository}, read back "
                    f"from the repository."))
    return specs


def build_tier_a(customer_name: str, customer: Customer) -> dg.AssetsDefinition:
    """Given a customer with tier A, return its tier-A multi-asset (every item and the
    night's set) with the coverage and restorable checks."""
    items = plan_tier_a(customer)
    keys = {item: item_key(customer_name, item) for item in items}
    the_set = set_key(customer_name)
    dumps = [i for i in items if i.kind == "pgdump"]
    check_specs = [coverage_spec(the_set)] + [restorable_spec(keys[i]) for i in dumps]
    check_specs += [current_spec(customer_name, i.name) for i in physical_items(customer)]
    timezone = tier_timezone(customer)

    @dg.multi_asset(name=tier_a_op(customer_name), specs=_specs(customer_name, customer, items),
                    check_specs=check_specs, can_subset=True, pool=repository_pool(customer),
                    required_resource_keys={PROGRESS_RESOURCE})
    def tier_a(context: AssetExecutionContext):
        try:
            yield from body(context)
        finally:
            # Items `axe backup` started at the slot claim (early_run.py) that this step did
            # not take end before the step does: Dagster frees the pool slot with the step.
            early_run.abandon(context.run.run_id)

    def body(context: AssetExecutionContext):
        selected = context.selected_asset_keys
        todo = [i for i in items if keys[i] in selected]
        reporter = getattr(context.resources, PROGRESS_RESOURCE) or LogReporter(context.log)
        at = logical_time(dict(context.run.tags), timezone,
                          rerun=context.run.parent_run_id is not None)
        context.log.info(f"tier A of {customer_name}: {len(todo)} item(s), logical time "
                         f"{at.isoformat()}")
        restic = local_restic(customer_name, customer)
        wanted = {i for i in dumps if dg.AssetCheckKey(keys[i], "restorable")
                  in context.selected_asset_check_keys}
        # Each item's materialization (and its restorable check, when the verifier proved it
        # while restic stored it) is recorded as the item finishes, while the others still
        # run: one event costs tens of milliseconds of SQLite writes (issue 12).
        shown = TierAResult(customer_name, context.run.run_id, at, restic.repo.location, [])
        proven: set[Item] = set()
        # `axe backup` started them as soon as the run held its pool slot (early_run.py).
        finished = early_run.take(context.run.run_id, todo, at) or Streamed(
            lambda report: run_tier_a(customer_name, customer, at=at, run_id=context.run.run_id,
                                      items=todo, reporter=report, restic=restic), reporter)
        for r in finished:
            if r.ok and r.snapshot_id:
                yield dg.MaterializeResult(asset_key=keys[r.item],
                                           metadata=item_metadata(r, shown))
                if r.item in wanted and r.proof is not None:
                    proven.add(r.item)
                    yield restorable_result(keys[r.item], r.snapshot_id, r.proof)
        run = finished.value

        # restorable: the dumps of this run not proven above, or (check-only selection) the
        # latest ones, read back.
        fresh = {r.item: r for r in run.results if r.ok}
        to_verify = [i for i in dumps if i in wanted and i not in proven]
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="axe-verify") as pool:
            yield from pool.map(lambda i: _restorable(context, restic, keys[i], fresh.get(i),
                                                      keys[i] in selected), to_verify)

        in_set = {s.id for s in run.snapshots}
        yield from current_results(customer_name, customer, restic, [
            i.name for i in physical_items(customer)
            if dg.AssetCheckKey(keys[i], CURRENT) in context.selected_asset_check_keys])
        if the_set in selected:
            if in_set:
                yield dg.MaterializeResult(asset_key=the_set, metadata=set_metadata(run))
            # Base backups have a coverage rule of their own (base_backup_current).
            yield coverage_result(the_set, [g for g in coverage(customer, run.snapshots)
                                            if g.item.kind != "physical"], len(in_set))

        if run.failed:
            lines = [f"{r.item.label}: {r.error}" for r in run.failed]
            raise dg.Failure(
                description=f"tier A of {customer_name}: {len(run.failed)} of {len(todo)} "
                            f"item(s) failed; the others were backed up\n" + "\n".join(lines),
                metadata={"failed": lines})

    return tier_a
