"""Tier B as Dagster assets: the push to each ring peer, and what the peer pushes to us.

    <customer>/tier_b/<peer>       restic copy of the latest tier-A set to the peer (sftp),
                                   with checks set_present and reachable; retried per a
                                   bounded policy, the last attempt failing with the reason
    peers/inbound/from-<peer>      the peer's repository in receive_dir_at_self, observed by
                                   a sensor (sensors/inbound.py) at the push's own time,
                                   freshness ~26 h, check arriving

The work is in ring.py and inbound.py; the checks, jobs and schedules are in checks/tier_b.py,
jobs.py and schedules.py. (No `from __future__ import annotations`: Dagster reads the context
annotation at runtime.)
"""

from datetime import timedelta

import dagster as dg
from dagster import AssetExecutionContext

from axe_pipelines.assets.metadata import in_zone, sizes
from axe_pipelines.checks.tier_b import (
    reachable_result,
    reachable_spec,
    set_complete_result,
    set_complete_spec,
    set_present_result,
    set_present_spec,
    tier_a_running,
)
from axe_pipelines.config import RingBackup, Site, tier_timezone
from axe_pipelines.names import (
    INBOUND_GROUP,
    PEER_TAG,
    TIER_TAG,
    inbound_key,
    repository_pool,
    set_key,
    tier_b_group,
    tier_b_key,
)
from axe_pipelines.peer import RingError, link, ring_settings
from axe_pipelines.ring import PushResult, push_set


def push_metadata(result: PushResult, block: RingBackup, zone: str = "UTC") -> dict[str, object]:
    """Given a push, the peer's block and the customer's zone, return the tier-B
    materialization's metadata (the set's time in that zone)."""
    status = result.status
    free_gib = status.free_bytes / 1024 ** 3 if status and status.free_bytes is not None else -1.0
    return {
        "peer": result.peer, "host": result.host,
        "via_fallback": bool(status and status.via_fallback),
        "set": result.run_id, "set_time": in_zone(result.set_time, zone),
        "snapshots_copied": dg.MetadataValue.int(len(result.copied)),
        "snapshots_already_present": dg.MetadataValue.int(len(result.already_present)),
        **sizes(bytes_copied=result.bytes),
        "duration_s": dg.MetadataValue.float(round(result.duration_s, 2)),
        "peer_free_gib": dg.MetadataValue.float(round(free_gib, 2)),
        "disk_available_gib": dg.MetadataValue.float(float(block.disk_available_gib or -1)),
        "peer_restic_version": (status.restic_version if status else None) or "unknown",
        "repository_created": result.created_repository,
        "stale_locks_cleared": dg.MetadataValue.int(result.cleared_locks),
        "confirmed_by": result.confirmed_by or "-",
    }


def build_tier_b_asset(config: Site, customer_name: str, peer: str, *,
                       retry: bool = True) -> dg.AssetsDefinition:
    """Given a customer and one of its ring peers, return the push of the customer's latest
    set to that peer, with its two checks. `retry=False` (the CLI: the operator is watching)
    drops the retry policy. Raise RingError when the peer has no ring_backup block."""
    customer = config.customer(customer_name)
    settings = ring_settings(customer)
    block = link(config, customer_name, peer).block
    key = tier_b_key(customer_name, peer)
    window = timedelta(hours=customer.tiers.local.freshness_hours + 1)
    zone = tier_timezone(customer)
    # The CLI (retry=False) has one attempt; the schedule's run 1 + `retries`.
    retries = settings.retries if retry else 0

    @dg.asset(
        key=key, deps=[set_key(customer_name)], group_name=tier_b_group(customer_name),
        kinds={"restic", "ssh"}, tags={TIER_TAG: "b", PEER_TAG: peer},
        description=f"restic copy of {customer_name}'s latest tier-A set to {peer} over sftp "
                    f"({block.ssh_user}@{block.ssh_fqdn}:{block.receive_dir_at_peer}).",
        check_specs=[set_present_spec(key), reachable_spec(key), set_complete_spec(key)],
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=window, warn_window=window - timedelta(hours=2)),
        # Transient faults (peer down, link dropped) are retried a bounded number of times;
        # a wrong password or damaged repository raises Failure(allow_retries=False).
        retry_policy=dg.RetryPolicy(max_retries=retries, delay=settings.retry_delay_s,
                                    backoff=dg.Backoff.EXPONENTIAL) if retry else None,
        # Tier A's pool: the copy waits while tier A writes tonight's set (one op at a time
        # per tier-A repository), so a half-written set is never read; the run's own check
        # (tier_a_running) covers a tier-A run that did not go through the pool.
        pool=repository_pool(customer),
    )
    def tier_b(context: AssetExecutionContext):
        # A set written by this same run counts as finished: the asset depends on the set,
        # so tier A's step is done before ours starts.
        in_progress = tier_a_running(context.instance, own_run=context.run.run_id)
        try:
            result = push_set(config, customer_name, peer, log=context.log.info,
                              in_progress=in_progress)
        except RingError as exc:
            if exc.ssh_exit is not None:  # ssh itself failed (else restic did, afterwards)
                yield reachable_result(key, block, None, exc)
            raise push_failure(exc, peer, block, context.retry_number, retries) from None
        yield dg.MaterializeResult(metadata=push_metadata(result, block, zone))
        yield reachable_result(key, block, result.status)
        # What is confirmed at the peer after the copy: restic's report of each snapshot
        # with its snapshot file listed at the peer over ssh, else the peer read back.
        assert result.the_set is not None
        yield set_present_result(key, result.the_set, result.at_peer)
        yield set_complete_result(key, result.the_set)  # a failed night is never "ok"

    return tier_b


def push_failure(exc: RingError, peer: str, block: RingBackup, attempt: int,
                 retries: int) -> dg.Failure:
    """Given why a push failed, the attempt (0 = the first) and the retries allowed, return
    the step's Failure: the operator's one line as its description, the details as metadata.
    The last attempt does not ask for a retry, so the run's failure is headed by that line
    rather than Dagster's "Exceeded max_retries"."""
    last = attempt >= retries
    return dg.Failure(
        description=str(exc), allow_retries=exc.retryable and not last,
        metadata={"peer": peer, "host": exc.host or block.ssh_fqdn,
                  "ssh_exit": exc.ssh_exit if exc.ssh_exit is not None else -1,
                  "retryable": exc.retryable, "attempt": attempt + 1,
                  "attempts_allowed": retries + 1})


def inbound_spec(peer: str, block: RingBackup, window_hours: float) -> dg.AssetSpec:
    """Return `peers/inbound/from-<peer>`, an external asset whose materializations the
    inbound sensor records, dated at the push's own time, when a push from the peer has
    landed; fresh within `window_hours` of that push."""
    window = timedelta(hours=window_hours)
    return dg.AssetSpec(
        inbound_key(peer), group_name=INBOUND_GROUP, kinds={"restic"},
        tags={TIER_TAG: "b", PEER_TAG: peer},
        description=f"{peer}'s encrypted restic repository that it pushes to us at "
                    f"{block.receive_dir_at_self}. Observed by file times, sizes and counts "
                    f"(we do not hold its password). The runbook's 'ring backup 단방향' pitfall.",
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=window, warn_window=max(window - timedelta(hours=2),
                                                timedelta(hours=1))))
