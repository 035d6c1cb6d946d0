"""Asset checks of tier C on `<customer>/tier_c/cold_volumes`: *rotation* (the synced volume is this
quarter's; WARN otherwise, naming the expected one) and *volumes_current* (every volume was
synced within its rotation period — a forgotten SSD in a drawer shows up in the UI).
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import dagster as dg

from axe_pipelines.assets.metadata import in_zone
from axe_pipelines.config_tiers import ColdTier
from axe_pipelines.names import history_keys, tier_c_key
from axe_pipelines.rotation import first_turn_ends, overdue_volumes

ROTATION = "rotation"
VOLUMES_CURRENT = "volumes_current"


HISTORY = 200  # materializations read back for per-volume last-sync times


def rotation_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    """Return the spec of `rotation` on the tier-C asset (evaluated by the sync)."""
    return dg.AssetCheckSpec(
        ROTATION, asset=key,
        description="The volume synced is the one this quarter's rotation expects (quarters "
                    "counted from rotation_start, or Q1 of rotation_start_year, -> #1, "
                    "wrapping over the volumes "
                    "across years); another volume still syncs, with a warning.")


def rotation_result(key: dg.AssetKey, synced: Iterable[int | None], expected: int,
                    names: Iterable[str]) -> dg.AssetCheckResult:
    """Given the numbers and names of the volumes just synced and this quarter's number,
    return `rotation`: WARN, naming the expected volume, when another one was synced."""
    synced = list(synced)
    ok = expected in synced
    return dg.AssetCheckResult(
        asset_key=key, check_name=ROTATION, passed=ok, severity=dg.AssetCheckSeverity.WARN,
        description=(f"volume #{expected} is this quarter's" if ok else
                     f"synced {', '.join(names)} but this quarter expects volume "
                     f"#{expected} (axe-cold-{expected}); swap the SSDs"),
        metadata={"expected_volume": expected,
                  "synced_volumes": [n for n in synced if n is not None]})


def last_sync_by_volume(history: Iterable[Mapping[str, object]]) -> dict[int, datetime]:
    """Newest sync time per volume number from materialization metadata
    (`synced_volumes`: {"<number>": iso time}), newest first or any order."""
    last: dict[int, datetime] = {}
    for meta in history:
        for number, when in dict(meta.get("synced_volumes") or {}).items():
            try:
                n, t = int(number), datetime.fromisoformat(str(when))
            except ValueError:
                continue
            if n not in last or t > last[n]:
                last[n] = t
    return last


def volumes_current_result(key: dg.AssetKey, last: Mapping[int, datetime], volumes: int,
                           overdue_days: float, now: datetime | None = None,
                           first_turn_ends: Mapping[int, datetime] | None = None,
                           zone: str | None = None) -> dg.AssetCheckResult:
    """Given each volume's last sync, return `volumes_current`: ERROR when a volume was not
    synced within `overdue_days`. `first_turn_ends`: when each volume's first quarter ends
    (cold.first_turn_ends); a volume never synced before then is not yet due. Without it,
    never synced is overdue. `zone`: the customer's, for the times in the metadata."""
    late, not_yet = overdue_volumes(last, volumes, overdue_days, now or datetime.now(UTC),
                                    first_turn_ends)
    return dg.AssetCheckResult(
        asset_key=key, check_name=VOLUMES_CURRENT, passed=not late,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("every volume synced within its rotation period" if not late else
                     "overdue: " + "; ".join(late) + f" (limit {overdue_days:g} days); mount "
                     "that SSD"),
        metadata={"last_sync_by_volume": {
                      str(n): in_zone(last[n], zone) if zone else last[n].isoformat()
                      for n in sorted(last)},
                  "overdue_days": float(overdue_days), "overdue": late,
                  "not_yet_due": not_yet})


def _history(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dict[str, object]]:
    out = []
    # Syncs recorded before issue 11's key rename are under `<customer>/tier_c/cold`.
    for where in history_keys(key):
        for record in instance.fetch_materializations(where, limit=HISTORY).records:
            mat = record.asset_materialization
            if mat is not None:
                out.append({k: v.value for k, v in mat.metadata.items()})
    return out


def build_volumes_current_check(customer_name: str, cold: ColdTier,
                                zone: str) -> dg.AssetChecksDefinition:
    """Return `volumes_current` on `<customer>/tier_c/cold_volumes`, evaluated from the asset's
    materialization history (run daily by its own schedule, and with every sync)."""
    key = tier_c_key(customer_name)

    @dg.asset_check(asset=key, name=VOLUMES_CURRENT,
                    description=f"Every one of the {cold.volumes} cold volumes was synced within "
                                f"{cold.overdue_days:g} days (its rotation period: one "
                                f"quarter per volume, plus grace).")
    def volumes_current(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        last = last_sync_by_volume(_history(context.instance, key))
        return volumes_current_result(
            key, last, cold.volumes, cold.overdue_days,
            first_turn_ends=first_turn_ends(cold.volumes, cold.rotation_origin, zone), zone=zone)

    return volumes_current
