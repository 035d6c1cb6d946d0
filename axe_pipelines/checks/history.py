"""What the Dagster instance remembers, for `axe status` and `axe doctor`: the last
`restic check` of each tier's repository and the last restore drill (their asset check
evaluations, names.py), cold syncs per volume and the last set pushed to each peer (the
tier assets' materializations), runs that look stuck, and the daemon and its schedules and
sensors. `DagsterOpsHistory` is the actions.status_model.OpsHistory the CLI hands in.

The instance is the one in $DAGSTER_HOME (default ~/.axe/dagster, where `axe backup`
records) or one given; a machine without a dagster.yaml there has no history ("never"); an
instance that is there but cannot be opened or read is unknown (`unreadable()`: status says
why and exits 1; doctor says why).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg

from axe_pipelines.actions.status_model import Outcome, StuckRun
from axe_pipelines.checks.tier_c import last_sync_by_volume
from axe_pipelines.instance import DEFAULT_HOME, EMBEDDED, recovery
from axe_pipelines.names import (
    drill_check_key,
    history_keys,
    restic_check_key,
    tier_b_key,
    tier_c_key,
)

T = TypeVar("T")
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
        self._failed = False  # a read of an opened instance failed

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

    def _read(self, what: Callable[[dg.DagsterInstance], T], default: T) -> T:
        """`what(instance)`, or `default` when there is no instance or it fails to answer
        (then `error` says why and unreadable() reports it)."""
        instance = self.instance()
        if instance is None:
            return default
        try:
            return what(instance)
        except Exception as exc:  # noqa: BLE001 - a storage that does not answer is unknown
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.error = self.error or f"the Dagster instance at {self.home} does not " \
                                       f"answer: {text}"
            self._failed = True
            return default

    # --- OpsHistory ----------------------------------------------------------------------------

    def unreadable(self) -> str:
        """Return why the instance could not be read: it exists (a dagster.yaml) but does not
        open, or a read failed; "" when it was read or there is none (a machine without
        one has no history)."""
        if self._failed or (self.error and (self.home / "dagster.yaml").is_file()):
            return self.error
        return ""

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
        return self._read(lambda instance: _stuck(instance, older_than, now), [])

    # --- reading -------------------------------------------------------------------------------

    def _check(self, key: dg.AssetCheckKey, whose_run: str) -> Outcome | None:
        return self._read(lambda instance: _check(instance, key, whose_run), None)

    def _metadata(self, key: dg.AssetKey, limit: int) -> list[dict[str, Any]]:
        return self._read(lambda instance: _metadata(instance, key, limit), [])


def _stuck(instance: dg.DagsterInstance, older_than: timedelta,
           now: datetime) -> list[StuckRun]:
    stuck = []
    dead = recovery.stuck(instance)  # its process is gone: stuck at any age (issue 8)
    for record in instance.get_run_records(dg.RunsFilter(statuses=_IN_PROGRESS), limit=100):
        since = _when(record.start_time) if record.start_time else \
            record.create_timestamp.astimezone(UTC)
        if now - since > older_than or record.dagster_run.run_id in dead:
            run = record.dagster_run
            stuck.append(StuckRun(run.run_id, run.job_name, run.status.value, since))
    return stuck


def _check(instance: dg.DagsterInstance, key: dg.AssetCheckKey,
           whose_run: str) -> Outcome | None:
    """The latest evaluation of a check as an Outcome; a planned one whose run has ended
    without evaluating it (the run failed) is FAILED, one whose run goes on is running."""
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


def _metadata(instance: dg.DagsterInstance, key: dg.AssetKey,
              limit: int) -> list[dict[str, Any]]:
    # Newest key first: history recorded before issue 11's renames stays under the former
    # keys, so a volume synced or a peer pushed only then still counts (README "Asset keys").
    out: list[dict[str, Any]] = []
    for where in history_keys(key):
        for record in instance.fetch_materializations(where, limit=limit - len(out)).records:
            mat = record.asset_materialization
            if mat is not None:
                out.append({k: v.value for k, v in mat.metadata.items()})
        if len(out) >= limit:
            break
    return out


# --- axe doctor: the instance, its daemon, its schedules and sensors ---------------------------

DAEMON_TOLERANCE_S = 300  # Dagster's own: a daemon silent for longer is not running


def _daemon_expected(instance: dg.DagsterInstance, home: Path) -> str:
    """Why a dagster-daemon is expected here ("" when it is not): one has sent heartbeats to
    this instance before, or the instance is a deployment's (its dagster.yaml is not the
    embedded default axe writes for a CLI-only site)."""
    if instance.get_daemon_heartbeats():
        return "one has run on this instance before"
    # Compared by the header axe writes, not byte for byte: a home made by an older axe keeps
    # an older copy of the embedded default and is still a CLI-only site.
    marker = EMBEDDED.read_text().splitlines()[0]
    try:
        with (home / "dagster.yaml").open() as f:
            if f.readline().rstrip("\n") != marker:
                return f"{home / 'dagster.yaml'} is not axe's embedded default"
    except OSError:
        pass
    return ""


def _daemon_findings(instance: dg.DagsterInstance, home: Path) -> list[tuple[str, str]]:
    why = _daemon_expected(instance, home)
    if not why:
        return [("warn", f"no dagster-daemon has run on {home} and its dagster.yaml is axe's "
                         f"embedded default: schedules and sensors run only under a daemon "
                         f"(README Deployment); fine while `axe backup` runs from cron")]
    beats = instance.get_daemon_heartbeats()
    now = time.time()
    late = []
    for daemon in instance.get_required_daemon_types():
        beat = beats.get(daemon)
        if beat is None or now - beat.timestamp > DAEMON_TOLERANCE_S:
            late.append(f"{daemon} " + (f"silent for {now - beat.timestamp:.0f} s" if beat
                                        else "never seen"))
    found = [("FAIL", f"dagster-daemon expected ({why}) but not running: {', '.join(late)}; "
                      f"nothing is scheduled or queued until it runs: start it "
                      f"(deploy/axe-dagster-daemon.service or the launchd plist)")] if late \
        else [("ok", "dagster-daemon running (every required daemon sent a heartbeat within "
                     f"{DAEMON_TOLERANCE_S} s)")]
    stopped = sorted(s.instigator_name for s in instance.all_instigator_state()
                     if s.status.value == "STOPPED")
    found.append(("FAIL", f"turned off in the UI: {', '.join(stopped)}; turn them on again "
                          f"(Automation) or backups and checks do not run on time")
                 if stopped else ("ok", "no schedule or sensor is turned off"))
    return found


def instance_findings(home: Path | str | None = None) -> list[tuple[str, str]]:
    """Given the Dagster home (default $DAGSTER_HOME, else ~/.axe/dagster), return what `axe
    doctor` says about it as (status, text): whether the instance opens and its run storage
    answers, and — when a daemon is expected (_daemon_expected) — whether it runs and whether
    any schedule or sensor was turned off."""
    with DagsterOpsHistory(home=home) as history:
        instance = history.instance()
        if instance is None:
            missing = not (history.home / "dagster.yaml").is_file()
            return [("warn" if missing else "FAIL",
                     f"{history.error}" + ("; `axe init` creates it" if missing else
                                           "; fix dagster.yaml or its storage"))]
        try:
            runs = instance.get_runs_count()
            storage = type(instance.run_storage).__name__
            return [("ok", f"Dagster instance {history.home}: {runs} run(s) recorded "
                           f"({storage})"), *_daemon_findings(instance, history.home),
                    *recovery.findings(instance)]  # stuck runs, held pool slots (issue 8)
        except Exception as exc:  # noqa: BLE001 - any storage failure is the finding
            return [("FAIL", f"Dagster instance {history.home} does not answer: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                             f"; is its storage (database) up?")]
