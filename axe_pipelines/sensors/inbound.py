"""The inbound sensor: records what a ring peer pushes to us.

A push is a snapshot file newer than any seen before (a peer's `forget`/`prune` that removes
its newest file is not one). When one lands, the sensor records a materialization of
`peers/inbound/from-<peer>` dated at the push's own time (the newest snapshot file's), so the
asset's freshness policy counts from the push, not from when the sensor looked: a push found
late (the daemon was down) is as old as it is. The `arriving` check is reported whenever its
outcome changes, and every tick says what it saw (the tick's message in the UI).
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from axe_pipelines.checks.tier_b import arriving_evaluation
from axe_pipelines.config import DEFAULT_TIMEZONE, RingBackup
from axe_pipelines.inbound import InboundState, inbound_state
from axe_pipelines.names import inbound_key, inbound_sensor
from axe_pipelines.progress import human_bytes

# Dagster's metadata key for when an external asset's data last changed (the UI places the
# event at that time); the push's time.
LAST_UPDATED = "dagster/last_updated_timestamp"


@dataclass
class InboundLook:
    """One tick's findings: the push to record (None when nothing new landed), the other
    events (the `arriving` check), the new cursor, and the tick's one-line message."""

    push: dg.AssetMaterialization | None
    pushed_at: datetime | None
    events: list = field(default_factory=list)
    cursor: str = ""
    message: str = ""


def _when(moment: datetime, zone: str) -> str:
    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M %Z}"


def look_inbound(peer: str, block: RingBackup, window_hours: float, cursor: str | None,
                 now: datetime | None = None, zone: str = DEFAULT_TIMEZONE) -> InboundLook:
    """Given one look at receive_dir_at_self, the sensor's cursor and the zone to show times
    in, return what this tick records: the push (a materialization to date at the push's
    time) when the newest snapshot file is newer than last time, the `arriving` check
    whenever its outcome changes or a push landed, and the tick's message."""
    key = inbound_key(peer)
    state = inbound_state(block)
    now = now or datetime.now(UTC)
    last = json.loads(cursor) if cursor else {}
    seen = datetime.fromisoformat(last["newest"]) if last.get("newest") else None
    # Only a snapshot file newer than any seen before is a push: the peer's `forget`/`prune`
    # removes files (the newest may get older) and is not a backup arriving.
    arrived = state.newest is not None and (seen is None or state.newest > seen)
    push = _push_event(peer, key, state, now, zone) if arrived else None
    evaluation = arriving_evaluation(key, state, window_hours, now)
    events = [evaluation] if arrived or evaluation.passed != last.get("passed") else []
    known = [d for d in (state.newest, seen) if d is not None]
    newest = max(known) if known else None
    new_cursor = json.dumps({"newest": newest.isoformat() if newest else "",
                             "passed": evaluation.passed})
    return InboundLook(push, state.newest if arrived else None, events, new_cursor,
                       _message(peer, state, arrived, now, zone))


def inbound_events(peer: str, block: RingBackup, window_hours: float, cursor: str | None,
                   now: datetime | None = None) -> tuple[list, str]:
    """Given one look at receive_dir_at_self and the sensor's cursor, return (what the tick
    records, new cursor): the push's materialization first, when one landed, then the
    `arriving` check when reported (look_inbound)."""
    look = look_inbound(peer, block, window_hours, cursor, now)
    return ([look.push] if look.push is not None else []) + look.events, look.cursor


def _push_event(peer: str, key: dg.AssetKey, state: InboundState, now: datetime,
                zone: str) -> dg.AssetMaterialization:
    assert state.newest is not None
    age_h = (now - state.newest).total_seconds() / 3600
    return dg.AssetMaterialization(
        asset_key=key, description=f"push from {peer} at {_when(state.newest, zone)}",
        metadata={LAST_UPDATED: dg.MetadataValue.timestamp(state.newest),
                  "push_time": state.newest.astimezone(ZoneInfo(zone)).isoformat(),
                  "push_age_hours_when_seen": dg.MetadataValue.float(round(age_h, 2)),
                  "snapshot_files": state.snapshot_files,
                  "total_bytes": dg.MetadataValue.int(state.total_bytes),
                  "total_size": human_bytes(state.total_bytes), "path": state.path})


def _message(peer: str, state: InboundState, arrived: bool, now: datetime, zone: str) -> str:
    """The tick's one line: what landed, or why nothing was recorded."""
    if not state.exists:
        return (f"receive folder {state.path} does not exist: {peer} has never pushed to us "
                f"(or ring_backup.receive_dir_at_self points elsewhere)")
    if state.newest is None:
        return f"{state.path} holds no snapshot from {peer} yet"
    age = f"{(now - state.newest).total_seconds() / 3600:.1f} h ago"
    if arrived:
        files = f"{state.snapshot_files} snapshot file" + ("s" if state.snapshot_files != 1 else "")
        return (f"recorded a push from {peer} at {_when(state.newest, zone)} ({age}; {files}, "
                f"{human_bytes(state.total_bytes)})")
    return f"no new push from {peer}; the last one was at {_when(state.newest, zone)} ({age})"


def record_push(instance: dg.DagsterInstance, push: dg.AssetMaterialization,
                pushed_at: datetime) -> None:
    """Given the instance, a push's materialization and the push's time, record it as a
    runless materialization dated at that time. Dagster 1.13's freshness policies count from
    a materialization's own timestamp, and its public ways to report one (SensorResult,
    report_runless_asset_event) stamp it with the time of the tick; so this builds the same
    event report_runless_asset_event does, with the push's time (pinned by a test)."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                     event_specific_data=StepMaterializationData(push),
                     job_name=RUNLESS_JOB_NAME),
        run_id=RUNLESS_RUN_ID, timestamp=pushed_at.timestamp())


def build_inbound_sensor(peer: str, block: RingBackup, window_hours: float,
                         zone: str = DEFAULT_TIMEZONE) -> dg.SensorDefinition:
    """Return the sensor (every 5 min) that records the peer's pushes to us, showing times in
    `zone` (the peer's customers.yaml entry's)."""

    @dg.sensor(name=inbound_sensor(peer), minimum_interval_seconds=300,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Watches {block.receive_dir_at_self} for {peer}'s pushes.")
    def watch_inbound(context: dg.SensorEvaluationContext):
        look = look_inbound(peer, block, window_hours, context.cursor, zone=zone)
        if look.push is not None and look.pushed_at is not None:
            record_push(context.instance, look.push, look.pushed_at)
        context.log.info(look.message)
        # No run requests: the message becomes the tick's reason, shown on the sensor's page.
        return dg.SensorResult(asset_events=look.events, cursor=look.cursor,
                               skip_reason=look.message)

    return watch_inbound
