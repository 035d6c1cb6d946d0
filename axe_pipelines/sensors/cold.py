"""The cold-SSD mount sensor: one sync per mount, not one per tick.

The cursor remembers the volumes present at the last tick and the mount each was on, and a
mount generation per mount point that goes up every time a volume appears there. A volume that
appears (or comes back on a new mount) gets one run request whose run key is the volume's
identity, its mount (Linux's mount id and device, or for a plain folder its device and inode)
and that generation — no clock time, so evaluating the same tick again asks for the same run
and Dagster starts it once. A volume that stays mounted gets nothing; a volume that goes away
is dropped from `present` but keeps its generation, so mounting it again later (even on a
mount that Linux gives the same id) asks for a new sync.
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from axe_pipelines.cold import Volume, find_volumes
from axe_pipelines.config_tiers import ColdTier
from axe_pipelines.names import TIER_TAG, VOLUME_TAG, cold_sensor

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as AssetJob,
    )


@dataclass(frozen=True)
class SyncRequest:
    """One sync the sensor asks for: the volume, and the run key that makes it one run."""

    volume: Volume
    run_key: str


def _read_cursor(cursor: str | None) -> tuple[dict[str, dict], dict[str, int]]:
    data = json.loads(cursor) if cursor else {}
    if data and "present" not in data:  # the earlier layout: {path: entry}
        return data, {}
    return dict(data.get("present") or {}), {k: int(v) for k, v in
                                             (data.get("generations") or {}).items()}


def plan_syncs(customer_name: str, cold: ColdTier,
               cursor: str | None) -> tuple[list[SyncRequest], str]:
    """Given the customer's cold settings and the sensor's cursor, return (sync requests for
    the volumes mounted since the last tick, the new cursor)."""
    seen, generations = _read_cursor(cursor)
    present: dict[str, dict] = {}
    requests = []
    for volume in find_volumes(cold):
        key = str(volume.path)
        before = seen.get(key)
        if before and before["token"] == volume.mount_token:
            present[key] = before  # still mounted: already synced (or syncing) for this mount
            continue
        generation = generations.get(key, 0) + 1
        generations[key] = generation
        present[key] = {"token": volume.mount_token, "identity": volume.identity,
                        "generation": generation}
        requests.append(SyncRequest(volume, f"cold:{customer_name}:{volume.identity}:"
                                            f"{volume.mount_token}:g{generation}"))
    return requests, json.dumps({"present": present, "generations": generations},
                                sort_keys=True)


def build_cold_sensor(customer_name: str, cold: ColdTier, job: "AssetJob",
                      op_name: str) -> dg.SensorDefinition:
    """Given a customer's cold settings, its tier-C job and the op that takes the volume in
    its run config, return the mount sensor (one sync per mount)."""

    @dg.sensor(name=cold_sensor(customer_name), job=job,
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
                tags={TIER_TAG: "c", VOLUME_TAG: r.volume.name})
                for r in requests],
            cursor=cursor,
            skip_reason=None if requests else "no newly mounted cold volume")

    return cold_volumes
