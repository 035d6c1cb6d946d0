"""What the Dagster instance remembers, for `axe status` and `axe doctor`: the last
`restic check` of each tier's repository and the last restore drill (their asset check
evaluations, names.py), cold syncs per volume and the last set pushed to each peer (the
tier assets' materializations), runs that look stuck, and the daemon and its schedules and
sensors. `DagsterOpsHistory` is the actions.status_model.OpsHistory the CLI hands in.

The instance is the one in $DAGSTER_HOME (default ~/.axe/dagster, where `axe backup`
records) or one given; a machine without a dagster.yaml there has no history ("never"), and
an instance that cannot be read counts as none (status shows "never", doctor says why).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from axe_pipelines.actions.status_model import Outcome, StuckRun
from axe_pipelines.checks.tier_c import last_sync_by_volume
from axe_pipelines.instance import DEFAULT_HOME
from axe_pipelines.names import drill_check_key, restic_check_key, tier_b_key, tier_c_key

HISTORY = 200  # tier-C materializations read back for per-volume last syncs
_IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
                dg.DagsterRunStatus.CANCELING]


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class DagsterOpsHistory:
    """The OpsHistory of a Dagster instance: `instance` when given, else the one in `home`
    (default $DAGSTER_HOME, else ~/.axe/dagster), opened on first use. Use it as a context
    manager (or call close) so an instance it opened is closed again."""

    def __init__(self, instance: dg.DagsterInstance | None = None,
                 home: Path | str | None = None):
        self.home = Path(home or os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).expanduser()
        self._instance = instance
        self._owned: dg.DagsterInstance | None = None
        self.error = ""  # why the instance could not be opened, when it could not

    def __enter__(self) -> DagsterOpsHistory:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the instance this history opened (not one it was given)."""
        if self._owned is not None:
            self._owned.dispose()
            self._owned = None

    def instance(self) -> dg.DagsterInstance | None:
        """Return the instance, opening the one in `home` on first use; None when there is no
        dagster.yaml there or it cannot be opened (`error` says why)."""
        if self._instance is not None:
            return self._instance
        if self._owned is None and not self.error:
            if not (self.home / "dagster.yaml").is_file():
                self.error = f"no Dagster instance at {self.home} (no dagster.yaml)"
                return None
            try:
                self._owned = dg.DagsterInstance.from_config(str(self.home))
            except Exception as exc:  # noqa: BLE001 - any failure to open means "no history"
                self.error = f"cannot open the Dagster instance at {self.home}: {exc}"
        return self._owned

    # --- OpsHistory ----------------------------------------------------------------------------

    def last_check(self, customer: str, tier: str, peer: str | None) -> Outcome | None:
        """Given a tier (and peer), return the last `restic check` evaluation there."""
        return self._check(restic_check_key(customer, tier, peer), "the check's run")

    def last_drill(self, customer: str) -> Outcome | None:
        """Given a customer, return its last drill's `restorable_everywhere`."""
        return self._check(drill_check_key(customer), "the drill's run")

    def volume_syncs(self, customer: str) -> dict[int, datetime]:
        """Given a customer, return the last sync per cold volume number."""
        return last_sync_by_volume(self._metadata(tier_c_key(customer), HISTORY))

    def last_push(self, customer: str, peer: str) -> datetime | None:
        """Given a customer and a peer, return the logical time of the last set pushed."""
        for meta in self._metadata(tier_b_key(customer, peer), 1):
            try:
                return datetime.fromisoformat(str(meta.get("set_time")))
            except ValueError:
                return None
        return None

    def stuck_runs(self, older_than: timedelta, now: datetime) -> list[StuckRun]:
        """Given a bound and now, return the runs queued or in progress for longer."""
        instance = self.instance()
        if instance is None:
            return []
        stuck = []
        for record in instance.get_run_records(dg.RunsFilter(statuses=_IN_PROGRESS),
                                               limit=100):
            since = _when(record.start_time) if record.start_time else \
                record.create_timestamp.astimezone(UTC)
            if now - since > older_than:
                run = record.dagster_run
                stuck.append(StuckRun(run.run_id, run.job_name, run.status.value, since))
        return stuck

    # --- reading -------------------------------------------------------------------------------

    def _check(self, key: dg.AssetCheckKey, whose_run: str) -> Outcome | None:
        """The latest evaluation of a check as an Outcome; a planned one whose run has ended
        without evaluating it (the run failed) is FAILED, one whose run goes on is running."""
        instance = self.instance()
        if instance is None:
            return None
        record = instance.get_latest_asset_check_evaluation_record(key)
        if record is None:
            return None
        evaluation = record.event.asset_check_evaluation if record.event else None
        if evaluation is not None:
            assert record.event is not None
            result = "ok" if evaluation.passed else (
                "WARN" if evaluation.severity == dg.AssetCheckSeverity.WARN else "FAILED")
            return Outcome(result, _when(record.event.timestamp), evaluation.description or "")
        run = instance.get_run_by_id(record.run_id)
        at = _when(record.create_timestamp)
        if run is not None and not run.is_finished:
            return Outcome("running", at, f"run {record.run_id[:8]}")
        return Outcome("FAILED", at, f"{whose_run} {record.run_id[:8]} ended before the "
                                     f"check was evaluated; see its log in the UI")

    def _metadata(self, key: dg.AssetKey, limit: int) -> list[dict[str, Any]]:
        instance = self.instance()
        if instance is None:
            return []
        out = []
        for record in instance.fetch_materializations(key, limit=limit).records:
            mat = record.asset_materialization
            if mat is not None:
                out.append({k: v.value for k, v in mat.metadata.items()})
        return out
