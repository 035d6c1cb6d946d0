"""Asset checks of tier B: *set_present* and *reachable* on `<customer>/tier_b/<peer>`, and
*arriving* on `peers/<peer>/inbound` (the peer's pushes to us keep coming).

The evaluation is plain Python (ring.py, inbound.py); these functions turn it into check
specs, results and the two checks that run on their own (peer_now, arriving).
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

from collections.abc import Callable, Collection
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from axe_pipelines.config import RingBackup, Site, tier_timezone
from axe_pipelines.copying import SetToCopy, missing_from
from axe_pipelines.inbound import InboundState, inbound_state
from axe_pipelines.instance.owner import owner_of
from axe_pipelines.names import inbound_key, tier_b_key
from axe_pipelines.peer import PeerStatus, RingError, link
from axe_pipelines.restic import Snapshot
from axe_pipelines.ring import latest_set, peer_snapshots
from axe_pipelines.sets import BackupSet

SET_PRESENT = "set_present"
SET_COMPLETE = "set_complete"  # tiers B and C: the set copied holds every configured item
REACHABLE = "reachable"
PEER_NOW = "peer_now"  # the same questions between pushes, on its own schedule
ARRIVING = "arriving"
GIB = 1024 ** 3


def set_present_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    """Return the spec of `set_present` on a tier-B asset (evaluated by the push)."""
    return dg.AssetCheckSpec(
        SET_PRESENT, asset=key,
        description="Every snapshot of the latest tier-A set is in the peer's repository "
                    "(matched by the copy's original snapshot id).")


def set_complete_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    """Return the spec of `set_complete` on a tier-B or tier-C asset (evaluated by the copy)."""
    return dg.AssetCheckSpec(
        SET_COMPLETE, asset=key,
        description="The tier-A set copied holds every configured database, server's roles "
                    "and required folder; a night that failed items is copied too (with the "
                    "newest earlier snapshot of each missing item) but fails this check.")


def set_complete_result(key: dg.AssetKey, the_set: BackupSet) -> dg.AssetCheckResult:
    """Given the set a copy was made of, return `set_complete`: ERROR naming the missing
    items (and which earlier snapshots were copied in their place) when it is incomplete."""
    missing = the_set.missing if isinstance(the_set, SetToCopy) else ()
    carried = the_set.carried if isinstance(the_set, SetToCopy) else ()
    head = f"set {the_set.run_id[:8]} of {the_set.time:%Y-%m-%d %H:%M}"
    text = f"{head} complete"
    if missing:
        covered = {c.label for c in carried}
        text = (f"{head} is incomplete: missing {', '.join(label for label, _ in missing)}"
                + ("; copied with it: " + ", ".join(
                    f"{c.label} from the set of {c.time:%Y-%m-%d %H:%M}" for c in carried)
                   if carried else "")
                + ("; no earlier snapshot of " + ", ".join(
                    label for label, _ in missing if label not in covered)
                   if len(covered) < len(missing) else ""))
    return dg.AssetCheckResult(
        asset_key=key, check_name=SET_COMPLETE, passed=not missing,
        severity=dg.AssetCheckSeverity.ERROR, description=text,
        metadata={"set": the_set.run_id, "missing": [label for label, _ in missing],
                  "reasons": [why for _, why in missing],
                  "carried": [f"{c.label} {c.snapshot.short_id} (set {c.run_id[:8]})"
                              for c in carried]})


def reachable_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    """Return the spec of `reachable` on a tier-B asset (evaluated by the push)."""
    return dg.AssetCheckSpec(
        REACHABLE, asset=key,
        description="ssh to the peer works now (key auth, pinned host key); warns when the "
                    "peer's restic version or free disk differs from customers.yaml.")


def set_present_result(key: dg.AssetKey, the_set: BackupSet,
                       at_peer: Collection[str]) -> dg.AssetCheckResult:
    """Given the set and the ids (originals) confirmed at the peer, return `set_present`:
    ERROR when a member is missing at the peer."""
    missing = [s for s in the_set.snapshots if s.id not in at_peer]
    return dg.AssetCheckResult(
        asset_key=key, check_name=SET_PRESENT, passed=not missing,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(f"set {the_set.run_id[:8]} complete at the peer" if not missing else
                     f"{len(missing)} of {len(the_set.snapshots)} snapshot(s) of set "
                     f"{the_set.run_id[:8]} missing at the peer"),
        metadata={"set": the_set.run_id, "members": len(the_set.snapshots),
                  "missing": [s.short_id for s in missing]})


def peer_warnings(block: RingBackup, status: PeerStatus) -> list[str]:
    """Given the peer's block and what ssh found, return how the peer differs from
    customers.yaml (restic version, free disk); empty when it does not."""
    warnings = []
    if block.restic_version and status.restic_version and \
            status.restic_version != block.restic_version:
        warnings.append(f"peer runs restic {status.restic_version}, customers.yaml says "
                        f"{block.restic_version}")
    if status.restic_version is None:
        warnings.append("restic not found on the peer's PATH")
    free_gib = status.free_bytes / GIB if status.free_bytes is not None else None
    if block.disk_available_gib is not None and free_gib is not None and \
            free_gib < block.disk_available_gib:
        warnings.append(f"peer has {free_gib:.1f} GiB free, customers.yaml says "
                        f"{block.disk_available_gib:g} GiB")
    return warnings


def peer_now_result(key: dg.AssetKey, block: RingBackup, *, status: PeerStatus | None = None,
                    the_set: BackupSet | None = None, at_peer: list[Snapshot] | None = None,
                    error: Exception | None = None, zone: str = "UTC") -> dg.AssetCheckResult:
    """The look between pushes: ssh to the peer works now and the peer's repository holds the
    latest finished tier-A set (ERROR otherwise); WARN when the peer differs from
    customers.yaml. The set's time is shown in `zone` (the customer's)."""
    if error is not None or status is None or the_set is None:
        host = getattr(error, "host", None) or block.ssh_fqdn
        return dg.AssetCheckResult(
            asset_key=key, check_name=PEER_NOW, passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=str(error) if error else "not reachable", metadata={"host": host})
    missing = missing_from(the_set, at_peer or [])
    warnings = peer_warnings(block, status)
    when = the_set.time.astimezone(ZoneInfo(zone))
    metadata = {"host": status.host, "via_fallback": status.via_fallback,
                "set": the_set.run_id, "set_time": when.isoformat(),
                "missing": [s.short_id for s in missing],
                "peer_restic_version": status.restic_version or "unknown",
                "ssh_seconds": round(status.seconds, 2)}
    if missing:
        return dg.AssetCheckResult(
            asset_key=key, check_name=PEER_NOW, passed=False,
            severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
            description=f"reachable at {status.host}, but {len(missing)} of "
                        f"{len(the_set.snapshots)} snapshot(s) of set {the_set.run_id[:8]} "
                        f"({when:%Y-%m-%d %H:%M %Z}) are not at the peer; run `axe "
                        f"backup --ring`")
    return dg.AssetCheckResult(
        asset_key=key, check_name=PEER_NOW, passed=not warnings,
        severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
        description=f"reachable at {status.host}; holds set {the_set.run_id[:8]} "
                    f"({when:%Y-%m-%d %H:%M %Z})" + ("; " + "; ".join(warnings)
                                                               if warnings else ""))


def reachable_result(key: dg.AssetKey, block: RingBackup, status: PeerStatus | None,
                     error: RingError | None = None) -> dg.AssetCheckResult:
    """ERROR when ssh fails; WARN when it works but the peer differs from customers.yaml."""
    if status is None:
        return dg.AssetCheckResult(
            asset_key=key, check_name=REACHABLE, passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=str(error) if error else "not reachable",
            metadata={"host": (error.host if error else None) or block.ssh_fqdn,
                      "ssh_exit": error.ssh_exit if error and error.ssh_exit is not None else -1})
    warnings = peer_warnings(block, status)
    free_gib = status.free_bytes / GIB if status.free_bytes is not None else None
    return dg.AssetCheckResult(
        asset_key=key, check_name=REACHABLE, passed=not warnings,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"reachable at {status.host}" + (" (ssh_ip fallback)"
                     if status.via_fallback else "")) + ("; " + "; ".join(warnings)
                                                         if warnings else ""),
        metadata={"host": status.host, "via_fallback": status.via_fallback,
                  "peer_restic_version": status.restic_version or "unknown",
                  "expected_restic_version": block.restic_version or "",
                  "peer_free_gib": round(free_gib, 2) if free_gib is not None else -1.0,
                  "disk_available_gib": block.disk_available_gib or -1.0,
                  "ssh_seconds": round(status.seconds, 2)})


def arriving_result(key: dg.AssetKey, state: InboundState, window_hours: float,
                    now: datetime | None = None) -> dg.AssetCheckResult:
    """Fails when the peer's pushes into receive_dir_at_self stopped (or never started)."""
    return dg.AssetCheckResult(asset_key=key, check_name=ARRIVING, **arriving_fields(
        state, window_hours, now))


def arriving_evaluation(key: dg.AssetKey, state: InboundState, window_hours: float,
                        now: datetime | None = None) -> dg.AssetCheckEvaluation:
    """The same result as a runless evaluation (reported by the inbound sensor)."""
    fields = arriving_fields(state, window_hours, now)
    return dg.AssetCheckEvaluation(asset_key=key, check_name=ARRIVING, passed=fields["passed"],
                                   severity=fields["severity"],
                                   description=fields["description"],
                                   metadata=fields["metadata"])


def arriving_fields(state: InboundState, window_hours: float,
                    now: datetime | None = None) -> dict:
    """Given one look at the peer's pushes, return the fields of `arriving` (passed, severity,
    description, metadata): ERROR when nothing arrived within `window_hours`."""
    age = state.age_hours(now)
    if not state.exists:
        passed, text = False, f"{state.path} does not exist: the peer has never pushed to us"
    elif age is None:
        passed, text = False, f"{state.path} holds no snapshots from the peer"
    elif age > window_hours:
        passed, text = False, (f"the peer's last push arrived {age:.1f} h ago (more than "
                               f"{window_hours:g} h): its backups to us have stopped")
    else:
        passed, text = True, f"last push {age:.1f} h ago"
    return {"passed": passed, "severity": dg.AssetCheckSeverity.ERROR, "description": text,
            "metadata": {"path": state.path, "snapshot_files": state.snapshot_files,
                         "newest": state.newest.isoformat() if state.newest else "",
                         "age_hours": round(age, 2) if age is not None else -1.0,
                         "total_bytes": state.total_bytes}}


def tier_a_running(instance: dg.DagsterInstance, own_run: str | None = None,
                   ) -> Callable[[str], bool]:
    """Given the Dagster instance, return `in_progress(run_id)`: True when the tier-A run that
    wrote a set is still running (its set may be half-written), or while the process that
    owns its run folder is alive whatever Dagster says (`axe backup` starts a run's items as
    soon as it holds its pool slot, before Dagster has created the run: early_run.py; the
    folder goes when the items end). `own_run` (the asking run) and other runs this instance
    does not know (sets made elsewhere) count as finished."""

    def in_progress(run_id: str) -> bool:
        if run_id == own_run:
            return False
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            return True
        try:
            owner = owner_of(run_id)  # its items write until their folder is released
        except ValueError:  # not a run id of ours: a set made elsewhere
            return False
        return owner is not None and not owner.gone

    return in_progress


def build_peer_now_check(config: Site, customer_name: str,
                         peer: str) -> dg.AssetChecksDefinition:
    """Return `peer_now` on `<customer>/tier_b/<peer>`: it runs on its own (a schedule, or
    from the UI), not only with the nightly push, so a peer that went away shows before the
    next night. It only looks; the peer's repository is never written."""
    key = tier_b_key(customer_name, peer)
    customer = config.customer(customer_name)
    block = link(config, customer_name, peer).block

    @dg.asset_check(asset=key, name=PEER_NOW,
                    description=f"ssh to {peer} works now and its repository holds "
                                f"{customer_name}'s latest finished tier-A set.")
    def peer_now(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        try:
            the_set = latest_set(customer_name, customer,
                                 in_progress=tier_a_running(context.instance))
            status, at_peer = peer_snapshots(config, customer_name, peer)
        except RingError as exc:
            return peer_now_result(key, block, error=exc)
        return peer_now_result(key, block, status=status, the_set=the_set, at_peer=at_peer,
                               zone=tier_timezone(customer))

    return peer_now


def build_arriving_check(peer: str, block: RingBackup,
                         window_hours: float) -> dg.AssetChecksDefinition:
    """Return `arriving` on `peers/<peer>/inbound`: the peer's pushes to us keep arriving."""
    key = inbound_key(peer)

    @dg.asset_check(asset=key, name=ARRIVING,
                    description=f"{peer}'s pushes to us keep arriving (newest snapshot file "
                                f"younger than {window_hours:g} h).")
    def arriving() -> dg.AssetCheckResult:
        return arriving_result(key, inbound_state(block), window_hours)

    return arriving
