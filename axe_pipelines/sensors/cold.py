"""The cold-SSD mount sensor: one sync per mount, not one per tick.

The cursor remembers the volumes present at the last tick and the mount each was on. A volume
that appears (or comes back on a new mount) gets one run request whose run key is the
volume's identity plus this mount; a volume that stays mounted gets nothing; a volume that
goes away is forgotten, so mounting it again later asks for a sync again.
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from axe_pipelines.cold import Volume, find_volumes
from axe_pipelines.config import ColdTier


@dataclass(frozen=True)
class SyncRequest:
    volume: Volume
    run_key: str


def plan_syncs(customer_name: str, cold: ColdTier, cursor: str | None,
               now: datetime | None = None) -> tuple[list[SyncRequest], str]:
    """(sync requests for newly mounted volumes, the new cursor) for one sensor tick."""
    seen: dict[str, dict[str, str]] = json.loads(cursor) if cursor else {}
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%f")
    present: dict[str, dict[str, str]] = {}
    requests = []
    for volume in find_volumes(cold):
        key = str(volume.path)
        before = seen.get(key)
        if before and before["token"] == volume.mount_token:
            present[key] = before  # still mounted: already synced (or syncing) for this mount
            continue
        entry = {"token": volume.mount_token, "since": stamp, "identity": volume.identity}
        present[key] = entry
        requests.append(SyncRequest(volume, f"cold:{customer_name}:{volume.identity}:"
                                            f"{volume.mount_token}:{stamp}"))
    return requests, json.dumps(present, sort_keys=True)


def build_cold_sensor(customer_name: str, cold: ColdTier, job, op_name: str):
    """The mount sensor of one customer, targeting its tier-C job."""

    @dg.sensor(name=f"{customer_name.replace('-', '_')}_cold_volumes", job=job,
               minimum_interval_seconds=cold.sensor_interval_s,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Starts a tier C sync of {customer_name} when a cold SSD is "
                           f"mounted at {cold.mount_glob} (once per mount).")
    def cold_volumes(context: dg.SensorEvaluationContext):
        requests, cursor = plan_syncs(customer_name, cold, context.cursor)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(
                run_key=r.run_key,
                run_config={"ops": {op_name: {"config": {"volume": str(r.volume.path)}}}},
                tags={"axe/tier": "c", "axe/volume": r.volume.name})
                for r in requests],
            cursor=cursor,
            skip_reason=None if requests else "no newly mounted cold volume")

    return cold_volumes
