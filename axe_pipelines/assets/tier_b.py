"""Tier B as Dagster definitions: the push to each ring peer, and what the peer pushes to us.

    <customer>/tier_b/<peer>   restic copy of the latest tier-A set to the peer (sftp), with
                               checks set_present and reachable; retried per a bounded policy
    peers/<peer>/inbound       the peer's repository in receive_dir_at_self, observed by a
                               sensor (file times/sizes/counts), freshness ~26 h, check arriving

The work is in ring.py; this module only wires it into assets, a job, a schedule and a sensor.
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster import AssetExecutionContext

from axe_pipelines.assets.tier_a import repository_pool, set_key, tier_a_tags
from axe_pipelines.checks.tier_b import (
    ARRIVING,
    PEER_NOW,
    arriving_evaluation,
    arriving_result,
    peer_now_result,
    reachable_result,
    reachable_spec,
    set_present_result,
    set_present_spec,
)
from axe_pipelines.config import RingBackup, Site, tier_timezone
from axe_pipelines.ring import (
    RingError,
    inbound_state,
    latest_set,
    link,
    peer_snapshots,
    push_set,
    ring_peers,
    ring_settings,
)


def tier_b_key(customer_name: str, peer: str) -> dg.AssetKey:
    return dg.AssetKey([customer_name, "tier_b", peer])


def inbound_key(peer: str) -> dg.AssetKey:
    return dg.AssetKey(["peers", peer, "inbound"])


def tier_b_group(customer_name: str) -> str:
    return f"{customer_name.replace('-', '_')}_tier_b"


def _name(*parts: str) -> str:
    return "_".join(p.replace("-", "_") for p in parts)


def push_metadata(result, block: RingBackup) -> dict[str, object]:
    status = result.status
    free_gib = status.free_bytes / 1024 ** 3 if status and status.free_bytes is not None else -1
    return {
        "peer": result.peer, "host": result.host,
        "via_fallback": bool(status and status.via_fallback),
        "set": result.run_id, "set_time": result.set_time.isoformat(),
        "snapshots_copied": dg.MetadataValue.int(len(result.copied)),
        "snapshots_already_present": dg.MetadataValue.int(len(result.already_present)),
        "bytes_copied": dg.MetadataValue.int(result.bytes),
        "duration_s": dg.MetadataValue.float(round(result.duration_s, 2)),
        "peer_free_gib": dg.MetadataValue.float(round(free_gib, 2)),
        "disk_available_gib": dg.MetadataValue.float(float(block.disk_available_gib or -1)),
        "peer_restic_version": (status.restic_version if status else None) or "unknown",
        "repository_created": result.created_repository,
        "stale_locks_cleared": dg.MetadataValue.int(result.cleared_locks),
    }


def tier_a_in_progress(context: AssetExecutionContext) -> Callable[[str], bool]:
    """`in_progress(run_id)`: True when the tier-A run that wrote a set is still running (its
    set may be half-written). A set written by this same run counts as finished: the asset
    depends on the set, so tier A's step is done before ours starts. Sets from runs this
    instance does not know (made elsewhere) count as finished."""
    own = context.run.run_id

    def in_progress(run_id: str) -> bool:
        if run_id == own:
            return False
        run = context.instance.get_run_by_id(run_id)
        return run is not None and not run.is_finished

    return in_progress


def build_tier_b_asset(config: Site, customer_name: str, peer: str, *,
                       retry: bool = True) -> dg.AssetsDefinition:
    """The push of `customer_name`'s latest set to `peer`, with its two checks. `retry=False`
    (the CLI: the operator is watching) drops the retry policy."""
    customer = config.customer(customer_name)
    settings = ring_settings(customer)
    pl = link(config, customer_name, peer)
    key = tier_b_key(customer_name, peer)
    block = pl.block
    window = timedelta(hours=customer.tiers.local.freshness_hours + 1)

    @dg.asset(
        key=key, deps=[set_key(customer_name)], group_name=tier_b_group(customer_name),
        kinds={"restic", "ssh"}, tags={"axe/tier": "b", "axe/peer": peer},
        description=f"restic copy of {customer_name}'s latest tier-A set to {peer} over sftp "
                    f"({block.ssh_user}@{block.ssh_fqdn}:{block.receive_dir_at_peer}).",
        check_specs=[set_present_spec(key), reachable_spec(key)],
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=window, warn_window=window - timedelta(hours=2)),
        # Transient faults (peer down, link dropped) are retried a bounded number of times;
        # a wrong password or damaged repository raises Failure(allow_retries=False).
        retry_policy=dg.RetryPolicy(max_retries=settings.retries, delay=settings.retry_delay_s,
                                    backoff=dg.Backoff.EXPONENTIAL) if retry else None,
        # Tier A's pool: the copy waits while tier A writes tonight's set (one op at a time
        # per tier-A repository), so a half-written set is never read; the run's own check
        # (tier_a_in_progress) covers a tier-A run that did not go through the pool.
        pool=repository_pool(customer),
    )
    def tier_b(context: AssetExecutionContext):
        try:
            result = push_set(config, customer_name, peer, log=context.log.info,
                              in_progress=tier_a_in_progress(context))
        except RingError as exc:
            reached = exc.ssh_exit is None  # ssh worked; restic failed afterwards
            if not reached:
                yield reachable_result(key, block, None, exc)
            raise dg.Failure(description=str(exc), allow_retries=exc.retryable,
                             metadata={"peer": peer, "host": exc.host or block.ssh_fqdn,
                                       "ssh_exit": exc.ssh_exit if exc.ssh_exit is not None
                                       else -1, "retryable": exc.retryable}) from None
        yield dg.MaterializeResult(metadata=push_metadata(result, block))
        yield reachable_result(key, block, result.status)
        # The peer's snapshots as read back after the copy, not the copy's own report.
        assert result.the_set is not None
        yield set_present_result(key, result.the_set, result.at_peer)

    return tier_b


def build_inbound(peer: str, block: RingBackup, window_hours: float):
    """`peers/<peer>/inbound` (an external asset), its `arriving` check and the sensor that
    reports a materialization whenever a new push from the peer has landed."""
    key = inbound_key(peer)
    window = timedelta(hours=window_hours)
    spec = dg.AssetSpec(
        key, group_name="peers", kinds={"restic"}, tags={"axe/tier": "b", "axe/peer": peer},
        description=f"{peer}'s encrypted restic repository that it pushes to us at "
                    f"{block.receive_dir_at_self}. Observed by file times, sizes and counts "
                    f"(we do not hold its password). The runbook's 'ring backup 단방향' pitfall.",
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=window, warn_window=max(window - timedelta(hours=2),
                                                timedelta(hours=1))))

    @dg.asset_check(asset=key, name=ARRIVING,
                    description=f"{peer}'s pushes to us keep arriving (newest snapshot file "
                                f"younger than {window_hours:g} h).")
    def arriving() -> dg.AssetCheckResult:
        return arriving_result(key, inbound_state(block), window_hours)

    @dg.sensor(name=_name("peers", peer, "inbound"), minimum_interval_seconds=300,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Watches {block.receive_dir_at_self} for {peer}'s pushes.")
    def inbound_sensor(context: dg.SensorEvaluationContext):
        events, cursor = inbound_events(peer, block, window_hours, context.cursor)
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return spec, arriving, inbound_sensor


def inbound_events(peer: str, block: RingBackup, window_hours: float, cursor: str | None,
                   now: datetime | None = None) -> tuple[list, str]:
    """Events for one look at receive_dir_at_self: a materialization when the newest snapshot
    file is newer than last time (a push landed), and the `arriving` check whenever its
    outcome changes or a push landed. Returns (events, new cursor)."""
    key = inbound_key(peer)
    state = inbound_state(block)
    now = now or datetime.now(UTC)
    last = json.loads(cursor) if cursor else {}
    seen = datetime.fromisoformat(last["newest"]) if last.get("newest") else None
    events: list = []
    # Only a snapshot file newer than any seen before is a push: the peer's `forget`/`prune`
    # removes files (the newest may get older) and is not a backup arriving.
    arrived = state.newest is not None and (seen is None or state.newest > seen)
    if arrived:
        assert state.newest is not None
        age_h = (now - state.newest).total_seconds() / 3600
        metadata = {"push_time": dg.MetadataValue.timestamp(state.newest),
                    "push_age_hours_when_seen": dg.MetadataValue.float(round(age_h, 2)),
                    "newest_snapshot_file": state.newest.isoformat(),
                    "snapshot_files": state.snapshot_files,
                    "total_bytes": dg.MetadataValue.int(state.total_bytes), "path": state.path}
        # Freshness counts from a materialization's own time, so a push that was already
        # older than the window when first seen (the sensor was off, the cursor was reset) is
        # recorded as an observation: it must not turn the asset fresh.
        event_type = dg.AssetMaterialization if age_h < window_hours else dg.AssetObservation
        events.append(event_type(asset_key=key, description=f"push from {peer} at "
                                 f"{state.newest:%Y-%m-%d %H:%M} UTC", metadata=metadata))
    evaluation = arriving_evaluation(key, state, window_hours, now)
    if arrived or evaluation.passed != last.get("passed"):
        events.append(evaluation)
    known = [d for d in (state.newest, seen) if d is not None]
    newest = max(known) if known else None
    return events, json.dumps({"newest": newest.isoformat() if newest else "",
                               "passed": evaluation.passed})


def build_tier_b(config: Site, customer_name: str) -> tuple[list, list, list, list]:
    """(assets, checks, jobs, schedules) of tier B for one customer; empty without
    `tiers.ring`."""
    customer = config.customer(customer_name)
    if not (customer.tiers and customer.tiers.ring):
        return [], [], [], []
    assets = [build_tier_b_asset(config, customer_name, p)
              for p in ring_peers(config, customer_name)]
    if not assets:
        return [], [], [], []
    checks = [build_peer_now_check(config, customer_name, p)
              for p in ring_peers(config, customer_name)]
    job = dg.define_asset_job(
        name=_name(customer_name, "tier_b"),
        selection=dg.AssetSelection.groups(tier_b_group(customer_name)) - (
            dg.AssetSelection.checks(*checks)),
        # tier A's axe/repository tag: the run queue holds this run while a tier-A run on
        # the same repository is in progress (tag_concurrency_limits in dagster.yaml).
        tags={**tier_a_tags(customer), "axe/tier": "b"},
        description=f"Copy {customer_name}'s latest tier-A set to its ring peers.")
    schedule = dg.ScheduleDefinition(
        name=_name(customer_name, "tier_b_nightly"), cron_schedule=customer.tiers.ring.schedule,
        execution_timezone=tier_timezone(customer), job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Tier B push of {customer_name} (after tier A).")
    check_job = dg.define_asset_job(
        name=_name(customer_name, "tier_b_peer_check"),
        selection=dg.AssetSelection.checks(*checks),
        description=f"Look at {customer_name}'s ring peers now: ssh, and the latest set there.")
    check_schedule = dg.ScheduleDefinition(
        name=_name(customer_name, "tier_b_peer_check"),
        cron_schedule=customer.tiers.ring.peer_check_schedule,
        execution_timezone=tier_timezone(customer), job=check_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"peer_now of {customer_name}'s ring peers between the nightly pushes.")
    return assets, checks, [job, check_job], [schedule, check_schedule]


def build_peer_now_check(config: Site, customer_name: str,
                         peer: str) -> dg.AssetChecksDefinition:
    """`peer_now` on `<customer>/tier_b/<peer>`: runs on its own (a schedule, or from the UI),
    not only with the nightly push, so a peer that went away shows before the next night."""
    key = tier_b_key(customer_name, peer)
    customer = config.customer(customer_name)
    block = link(config, customer_name, peer).block

    @dg.asset_check(asset=key, name=PEER_NOW,
                    description=f"ssh to {peer} works now and its repository holds "
                                f"{customer_name}'s latest finished tier-A set.")
    def peer_now(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        def in_progress(run_id: str) -> bool:
            run = context.instance.get_run_by_id(run_id)
            return run is not None and not run.is_finished

        try:
            the_set = latest_set(customer_name, customer, in_progress=in_progress)
            status, at_peer = peer_snapshots(config, customer_name, peer)
        except RingError as exc:
            return peer_now_result(key, block, error=exc)
        return peer_now_result(key, block, status=status, the_set=the_set, at_peer=at_peer)

    return peer_now


def build_inbound_all(config: Site) -> tuple[list, list, list]:
    """(specs, checks, sensors) for every peer that pushes to us."""
    specs, checks, sensors = [], [], []
    hours = max((ring_settings(c).inbound_freshness_hours for c in config.customers.values()
                 if c.tiers and c.tiers.ring), default=None)
    if hours is None:
        return [], [], []  # tier B is off here, so no inbound expectations either
    for peer, block in sorted(config.peers().items()):
        spec, check, sensor = build_inbound(peer, block, hours)
        specs.append(spec)
        checks.append(check)
        sensors.append(sensor)
    return specs, checks, sensors

