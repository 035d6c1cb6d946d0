"""Tier A as Dagster assets: one multi-asset per customer.

    <customer>/db/<name>/dump      one per database (pg_dump -Fc -Z0 streamed into restic)
    <customer>/roles/<server>      pg_dumpall --globals-only per server
    <customer>/dumpall/<server>    plain pg_dumpall, when enabled for the server
    <customer>/files/<name>        one per folder, excludes applied
    <customer>/tier_a/local        the night's set: every member's snapshot, read back

One op does the whole set so servers run in parallel lanes inside it while the repository's
pool keeps other runs on the same repository out. It can be subset from the UI (one database,
or only the checks).
"""


from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
from dagster import AssetExecutionContext

from axe_pipelines.backup import (
    DumpCheck,
    Item,
    ItemResult,
    TierAResult,
    coverage,
    local_restic,
    plan_tier_a,
    run_tier_a,
    verify_dump,
)
from axe_pipelines.checks.tier_a import (
    coverage_result,
    coverage_spec,
    restorable_result,
    restorable_spec,
)
from axe_pipelines.config import Customer, freshness_window, repository_id, tier_timezone
from axe_pipelines.postgres import PostgresError
from axe_pipelines.progress import LogReporter
from axe_pipelines.restic import ResticError

PROGRESS_RESOURCE = "axe_progress"
SCHEDULED_TIME_TAG = "dagster/scheduled_execution_time"


def item_key(customer_name: str, item: Item) -> dg.AssetKey:
    if item.kind == "pgdump":
        return dg.AssetKey([customer_name, "db", item.name, "dump"])
    return dg.AssetKey([customer_name, item.kind, item.name])


def set_key(customer_name: str) -> dg.AssetKey:
    return dg.AssetKey([customer_name, "tier_a", "local"])


def repository_pool(customer: Customer) -> str:
    assert customer.tiers is not None
    return f"restic-{repository_id(customer.tiers.local.repository.expanduser())}"


def group_name(customer_name: str) -> str:
    return f"{customer_name.replace('-', '_')}_tier_a"


def logical_time(tags: dict[str, str], timezone: str, now: datetime | None = None) -> datetime:
    """The run's logical time: the schedule's tick when scheduled, else now (whole seconds),
    in the tier's zone. Snapshots carry it as their restic time."""
    zone = ZoneInfo(timezone)
    text = tags.get(SCHEDULED_TIME_TAG)
    if text:
        return datetime.fromisoformat(text).astimezone(zone)
    return (now or datetime.now(zone)).astimezone(zone).replace(microsecond=0)


def _describe(customer: Customer, item: Item) -> str:
    if item.kind == "pgdump":
        db = customer.databases[item.name]
        return (f"pg_dump ({db.format}) of database {customer.database_name(item.name)} on "
                f"{db.server}, streamed into the tier A repository")
    if item.kind == "files":
        return f"restic backup of folder {customer.folders[item.name].path}"
    if item.kind == "roles":
        return f"roles and tablespaces of server {item.name} (pg_dumpall --globals-only)"
    return f"plain pg_dumpall of server {item.name}"


def item_metadata(result: ItemResult, run: TierAResult) -> dict[str, object]:
    meta: dict[str, object] = {
        "snapshot_id": result.snapshot_id or "",
        "snapshot_time": run.at.isoformat(),
        "repository": run.repository,
        "path": result.path or "",
        "bytes_read": dg.MetadataValue.int(result.bytes_read),
        "bytes_added": dg.MetadataValue.int(result.bytes_added),
        "duration_s": dg.MetadataValue.float(round(result.duration_s, 3)),
    }
    if result.item.kind == "pgdump":
        meta["format"] = result.format or "custom"
        meta["server_version"] = result.server_version or ""
        meta["row_counts"] = dg.MetadataValue.json(result.row_counts)
        meta["tables"] = dg.MetadataValue.table(
            records=[dg.TableRecord({"table": t, "rows": n})
                     for t, n in sorted(result.row_counts.items())],
            schema=dg.TableSchema(columns=[dg.TableColumn("table", "string"),
                                           dg.TableColumn("rows", "int")]))
        meta["total_rows"] = dg.MetadataValue.int(sum(result.row_counts.values()))
    return meta


def set_metadata(run: TierAResult) -> dict[str, object]:
    by_id = {s.id: s for s in run.snapshots}
    records = []
    for r in run.results:
        records.append(dg.TableRecord({
            "item": r.item.label,
            "status": "ok" if r.ok and r.snapshot_id in by_id else
                      ("skipped" if r.skipped else "failed"),
            "snapshot": (r.snapshot_id or "")[:8], "bytes_read": r.bytes_read,
            "bytes_added": r.bytes_added, "seconds": round(r.duration_s, 2)}))
    return {
        "logical_time": run.at.isoformat(),
        "repository": run.repository,
        "snapshot_ids": dg.MetadataValue.json(sorted(by_id)),
        "members": dg.MetadataValue.int(len(by_id)),
        "failed": dg.MetadataValue.json([r.item.label for r in run.failed]),
        "bytes_read": dg.MetadataValue.int(sum(r.bytes_read for r in run.results)),
        "bytes_added": dg.MetadataValue.int(sum(r.bytes_added for r in run.results)),
        "wall_s": dg.MetadataValue.float(round(run.wall_s, 2)),
        "set": dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=[
            dg.TableColumn("item", "string"), dg.TableColumn("status", "string"),
            dg.TableColumn("snapshot", "string"), dg.TableColumn("bytes_read", "int"),
            dg.TableColumn("bytes_added", "int"), dg.TableColumn("seconds", "float")])),
    }


def _latest_dump_metadata(context: dg.AssetExecutionContext,
                          key: dg.AssetKey) -> dict[str, object] | None:
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def build_tier_a(customer_name: str, customer: Customer) -> dg.AssetsDefinition:
    """The tier-A multi-asset of one customer, with its coverage and restorable checks."""
    items = plan_tier_a(customer)
    keys = {item: item_key(customer_name, item) for item in items}
    the_set = set_key(customer_name)
    window = freshness_window(customer)
    freshness = dg.FreshnessPolicy.time_window(
        fail_window=window, warn_window=max(window - timedelta(hours=2), timedelta(hours=1)))
    group = group_name(customer_name)
    specs = [
        dg.AssetSpec(keys[item], description=_describe(customer, item), group_name=group,
                     kinds={"postgres", "restic"} if item.kind != "files" else {"restic"},
                     freshness_policy=freshness, skippable=True,
                     tags={"axe/tier": "a", "axe/kind": item.kind})
        for item in items
    ]
    specs.append(dg.AssetSpec(
        the_set, deps=list(keys.values()), group_name=group, freshness_policy=freshness,
        skippable=True, kinds={"restic"}, tags={"axe/tier": "a"},
        description=f"The night's tier A set of {customer_name}: every dump and folder "
                    f"snapshot of one run in {customer.tiers.local.repository}, read back "
                    f"from the repository."))
    dumps = [i for i in items if i.kind == "pgdump"]
    check_specs = [coverage_spec(the_set)] + [restorable_spec(keys[i]) for i in dumps]
    timezone = tier_timezone(customer)

    @dg.multi_asset(name=f"{customer_name.replace('-', '_')}_tier_a_backup", specs=specs,
                    check_specs=check_specs, can_subset=True, pool=repository_pool(customer),
                    required_resource_keys={PROGRESS_RESOURCE})
    def tier_a(context: AssetExecutionContext):
        selected = context.selected_asset_keys
        todo = [i for i in items if keys[i] in selected]
        reporter = getattr(context.resources, PROGRESS_RESOURCE) or LogReporter(context.log)
        at = logical_time(dict(context.run.tags), timezone)
        context.log.info(f"tier A of {customer_name}: {len(todo)} item(s), logical time "
                         f"{at.isoformat()}")
        restic = local_restic(customer_name, customer)
        run = run_tier_a(customer_name, customer, at=at, run_id=context.run.run_id, items=todo,
                         reporter=reporter, restic=restic)
        in_set = {s.id for s in run.snapshots}
        for r in run.results:
            if r.ok and r.snapshot_id in in_set:
                yield dg.MaterializeResult(asset_key=keys[r.item], metadata=item_metadata(r, run))

        # restorable: the dumps of this run, or (check-only selection) the latest ones.
        selected_checks = context.selected_asset_check_keys
        fresh = {r.item: r for r in run.results if r.ok}
        to_verify = [i for i in dumps
                     if dg.AssetCheckKey(keys[i], "restorable") in selected_checks]

        def verify(item: Item) -> dg.AssetCheckResult:
            if item in fresh:
                r = fresh[item]
                snap, path, fmt, counts = r.snapshot_id, r.path, r.format, r.row_counts
            elif keys[item] in selected:
                return restorable_result(keys[item], None, None, "the dump failed in this run")
            else:
                meta = _latest_dump_metadata(context, keys[item])
                if not meta:
                    return restorable_result(keys[item], None, None, "no dump materialized yet")
                snap, path = str(meta["snapshot_id"]), str(meta["path"])
                fmt, counts = str(meta.get("format", "custom")), dict(meta["row_counts"])
            try:
                check: DumpCheck = verify_dump(restic, snap, path, fmt=fmt or "custom",
                                               expected_counts=counts)
            except (ResticError, PostgresError) as exc:
                return restorable_result(keys[item], snap, None, str(exc).splitlines()[0])
            return restorable_result(keys[item], snap, check)

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="axe-verify") as pool:
            yield from pool.map(verify, to_verify)

        if the_set in selected:
            if in_set:
                yield dg.MaterializeResult(asset_key=the_set, metadata=set_metadata(run))
            yield coverage_result(the_set, coverage(customer, run.snapshots), len(in_set))

        if run.failed:
            lines = [f"{r.item.label}: {r.error}" for r in run.failed]
            raise dg.Failure(
                description=f"tier A of {customer_name}: {len(run.failed)} of {len(todo)} "
                            f"item(s) failed; the others were backed up\n" + "\n".join(lines),
                metadata={"failed": lines})

    return tier_a


def tier_a_selection(customer_name: str) -> dg.AssetSelection:
    return dg.AssetSelection.groups(group_name(customer_name))


def tier_a_tags(customer: Customer) -> dict[str, str]:
    assert customer.tiers is not None
    return {"axe/repository": repository_id(customer.tiers.local.repository.expanduser()),
            "axe/tier": "a"}
