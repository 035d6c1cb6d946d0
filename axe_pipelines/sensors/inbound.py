"""The inbound sensor: records what a ring peer pushes to us.

A push is a snapshot file newer than any seen before (a peer's `forget`/`prune` that removes
its newest file is not one). When one lands, the sensor records a materialization of
`peers/<peer>/inbound` with the push's own time, so the asset's freshness policy goes red
when the peer's backups stop; the `arriving` check is reported whenever its outcome changes.
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

import json
from datetime import UTC, datetime

import dagster as dg

from axe_pipelines.checks.tier_b import arriving_evaluation
from axe_pipelines.config import RingBackup
from axe_pipelines.inbound import inbound_state
from axe_pipelines.names import inbound_key, inbound_sensor


def inbound_events(peer: str, block: RingBackup, window_hours: float, cursor: str | None,
                   now: datetime | None = None) -> tuple[list, str]:
    """Given one look at receive_dir_at_self and the sensor's cursor, return (events, new
    cursor): a materialization when the newest snapshot file is newer than last time (a push
    landed), and the `arriving` check whenever its outcome changes or a push landed."""
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


def build_inbound_sensor(peer: str, block: RingBackup,
                         window_hours: float) -> dg.SensorDefinition:
    """Return the sensor (every 5 min) that reports the peer's pushes to us."""

    @dg.sensor(name=inbound_sensor(peer), minimum_interval_seconds=300,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Watches {block.receive_dir_at_self} for {peer}'s pushes.")
    def watch_inbound(context: dg.SensorEvaluationContext):
        events, cursor = inbound_events(peer, block, window_hours, context.cursor)
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return watch_inbound
