"""The Dagster runs the CLI starts: a tier's job executed in this process against the
operator's instance ($DAGSTER_HOME), so `axe backup` is recorded like a scheduled run of that
job (its name, its tags, filed under the code location), and each run's end turned into a
plain `RunOutcome` for actions/backup.py.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import dagster as dg

from axe_pipelines import early_run
from axe_pipelines.actions.backup import CheckOutcome, CollectingReporter, RunOutcome
from axe_pipelines.backup import plan_tier_a
from axe_pipelines.cold import Volume
from axe_pipelines.config import Site
from axe_pipelines.instance import ensure_dagster_home
from axe_pipelines.instance.guard import (
    DEFAULT_WAIT_S,
    cli_instance,
    job_slots,
    run_guarded,
    wait_for_slots,
)
from axe_pipelines.names import (
    LOGICAL_TIME_TAG,
    PEER_TAG,
    PROGRESS_RESOURCE,
    VOLUME_TAG,
    location_tags,
    repository_pool,
    tier_a_job,
    tier_a_op,
    tier_c_job,
    tier_c_op,
)
from axe_pipelines.physical_item import nightly_items

# The code location's definitions (definitions.py, every asset module) are imported where a
# run is built, not here: `axe backup` claims its pool slot, and its items start, while they
# load (issue 12).

# The CLI draws its own progress and prints one `axe:` line per failure; Dagster's ERROR
# records and stack traces stay in the run log (the UI) unless --verbose asks for them here.
_LOG = logging.getLogger(__name__)
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
_VERBOSE = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def run_failure(result: dg.ExecuteInProcessResult) -> str:
    """Given a finished run, return the message of its last failed step."""
    fails = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    if not fails:
        return "the run failed; see the Dagster run log"
    err = fails[-1].step_failure_data.error
    return (err.message if err else "step failed").strip().removeprefix(
        "dagster._core.definitions.events.Failure: ")


def outcome(result: dg.ExecuteInProcessResult) -> RunOutcome:
    """Given a finished in-process run, return its RunOutcome: success, failure message,
    every asset check with its severity, the first materialization's metadata values."""
    checks = []
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            c = e.asset_check_evaluation_data
            checks.append(CheckOutcome(c.asset_key.to_user_string(), c.check_name, c.passed,
                                       c.severity == dg.AssetCheckSeverity.WARN,
                                       c.description or ""))
    metadata: dict[str, Any] = {}
    materialized = result.get_asset_materialization_events()
    if materialized:
        metadata = {k: v.value for k, v in
                    materialized[0].materialization.metadata.items()}
    return RunOutcome(result.run_id, result.success,
                      "" if result.success else run_failure(result), checks, metadata,
                      retryable=not result.success and _retryable(result))


def _retryable(result: dg.ExecuteInProcessResult) -> bool:
    """Whether the last failed step said that trying again can help (its Failure's
    `retryable` metadata, as tier B's push sets it)."""
    fails = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = fails[-1].step_failure_data.user_failure_data if fails else None
    flag = data.metadata.get("retryable") if data is not None else None
    return bool(flag.value) if flag is not None else False


Made = tuple[dg.Definitions, dg.JobDefinition]


class InProcessRunner:
    """Runs a tier's assets in this process, recorded in $DAGSTER_HOME (created with the
    embedded SQLite dagster.yaml when missing; `instance`: that home's, already open). Raise
    Unusable when that home is not writable."""

    def __init__(self, *, say: Callable[[str], None] | None = None,
                 verbose: bool = False, instance: dg.DagsterInstance | None = None) -> None:
        self.instance = instance if instance is not None else \
            cli_instance(ensure_dagster_home())
        # Lines about waiting for a slot or a dead run's leftovers (instance/guard.py).
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.logging = _VERBOSE if verbose else _QUIET

    @staticmethod
    def _bounds(site: Site, customer_name: str, tier: str) -> dict[str, Any]:
        tiers = site.customer(customer_name).tiers
        return {"what": f"tier {tier} of {customer_name}", "site": site, "wait_timeout_s":
                tiers.local.wait_timeout_s if tiers else DEFAULT_WAIT_S}

    @staticmethod
    def _job(defs: dg.Definitions, job_name: str,
             checks: set[dg.AssetCheckKey] | None) -> dg.JobDefinition:
        job = defs.resolve_job_def(job_name)
        if checks is None:
            return job
        return job.get_subset(asset_selection=set(job.asset_layer.selected_asset_keys),
                              asset_check_selection=checks)

    def run_job(self, defs: dg.Definitions, job_name: str, *,
                checks: set[dg.AssetCheckKey] | None = None, **run: Any) -> RunOutcome:
        """Given definitions holding the job `job_name`, run it here under that name with its
        own tags (the run queue's `axe/repository` among them), `tags` and the code
        location's label, so the UI files the run under that job; with `checks`, only those
        of its asset checks. `run`: the keywords of `_run` but its first two. Return the
        run's outcome. Raise SlotTimeout or Interrupted."""
        job = self._job(defs, job_name, checks)
        return self._run(lambda: (defs, job), job_slots(job), **{"what": job.name, **run})

    def _run(self, make: Callable[[], Made], slots: list[tuple[str, str]], *,
             tags: dict[str, str] | None = None, resources: dict[str, Any] | None = None,
             run_config: dict[str, Any] | None = None, what: str = "",
             wait_timeout_s: float = DEFAULT_WAIT_S, site: Site | None = None,
             retry_left: bool = False, run_id: str | None = None,
             on_wait: Callable[[], None] | None = None,
             on_claimed: Callable[[str], Callable[[], None]] | None = None) -> RunOutcome:
        """Given `make()`, which returns the definitions and the job to run, and the job's
        (pool, step) slots, run it once those are free (instance/guard.py: a dead run's
        leftovers recovered, at most `wait_timeout_s` of waiting for a live one). The job is
        made once the slots are this run's, after `on_claimed`; a slot it needs beyond
        `slots` is claimed then, the same way. With `site`, a failed run is posted to Slack
        here (sensors/alerts.py: no daemon's sensor may see this run), unless `retry_left`
        and it failed retryably. Return the run's outcome. Raise SlotTimeout or
        Interrupted."""
        made: dict[str, dg.Definitions] = {}

        def execute(run_id: str, process: dict[str, str]) -> dg.ExecuteInProcessResult:
            from axe_pipelines.sensors.alerts import cli_alert_tags

            made["defs"], job = make()
            more = [slot for slot in job_slots(job) if slot not in slots]
            if more:
                wait_for_slots(self.instance, run_id, more, timeout_s=wait_timeout_s,
                               what=what or job.name, say=self.say)
            alerting = cli_alert_tags() if site is not None else {}
            return job.execute_in_process(
                instance=self.instance, run_id=run_id,
                tags={**location_tags(), **(tags or {}), **alerting, **process},
                resources=resources, run_config={**(run_config or {}), **self.logging},
                raise_on_error=False)

        ended = outcome(run_guarded(self.instance, slots, execute, what=what or "the run",
                                    wait_timeout_s=wait_timeout_s, say=self.say, run_id=run_id,
                                    on_wait=on_wait, on_claimed=on_claimed))
        # An interrupted run raised above: its process ends now, and the sensor posts it.
        if site is not None and not ended.success:
            from axe_pipelines.sensors.alerts import alert_run_failure, step_assets

            alert_run_failure(site, self.instance, ended.run_id, step_assets(made["defs"]),
                              _LOG.info, retried=retry_left and ended.retryable)
        return ended

    def tier_a(self, site: Site, customer_name: str, *, reporter: CollectingReporter,
               skip_restore_check: bool, run_id: str | None = None,
               at: datetime | None = None,
               on_wait: Callable[[], None] | None = None) -> RunOutcome:
        """Back the customer's tier A up now as its job `<customer>_tier_a`, progress going to
        `reporter`; without the restorable checks when `skip_restore_check` (coverage stays;
        the read-back of every dump can run later from the UI). With `run_id` and `at`, the
        run has that id and logical time (the backups started warm for it use them) and its
        items start as soon as it holds its pool slot (early_run.py), while the definitions
        load; `on_wait` is called if it must wait for that slot."""
        customer = site.customer(customer_name)

        def make() -> Made:
            # The code location's own job (its selection names checks of other tiers' jobs).
            from axe_pipelines.definitions import build_definitions

            defs = build_definitions(site)
            job = defs.resolve_job_def(tier_a_job(customer_name))
            checks = {k for k in job.asset_layer.asset_graph.asset_check_keys
                      if k.name != "restorable"} if skip_restore_check else None
            return defs, self._job(defs, job.name, checks)

        def start_items(claimed: str) -> Callable[[], None]:
            # The slot is the run's: its items (the nightly job's) start now, while Dagster
            # makes the job and the run; if its step never takes them (or takes other
            # items: early_run.take raises), they end before the slot is freed.
            todo = nightly_items(customer, plan_tier_a(customer))
            early_run.start(claimed, customer_name, customer, todo, at=at, reporter=reporter)
            return lambda: early_run.abandon(claimed)

        # The tier-A op's one slot: the repository's pool (assets/tier_a.py).
        slots = [(repository_pool(customer), tier_a_op(customer_name))]
        return self._run(make, slots, resources={
            PROGRESS_RESOURCE: dg.ResourceDefinition.hardcoded_resource(reporter)},
            tags={LOGICAL_TIME_TAG: at.isoformat()} if at else None, run_id=run_id,
            on_wait=on_wait, on_claimed=start_items if run_id and at else None,
            **self._bounds(site, customer_name, "A"))

    def tier_b(self, site: Site, customer_name: str, peer: str, *,
               retry_left: bool = False) -> RunOutcome:
        """Push the customer's latest set to `peer` now as its job `<customer>_tier_b`,
        without the schedule's retries (actions/backup.py retries in runs of their own; with
        `retry_left` a retryable failure is not alerted)."""
        from axe_pipelines.assets.tier_b import build_tier_b_asset
        from axe_pipelines.jobs import tier_b_jobs

        push, _ = tier_b_jobs(customer_name, site.customer(customer_name), [])
        asset = build_tier_b_asset(site, customer_name, peer, retry=False)
        return self.run_job(dg.Definitions(assets=[asset], jobs=[push]), push.name,
                            tags={PEER_TAG: peer}, retry_left=retry_left,
                            **self._bounds(site, customer_name, "B"))

    def tier_c(self, site: Site, customer_name: str, volume: Volume) -> RunOutcome:
        """Sync the customer's latest set onto `volume` now as its job `<customer>_tier_c`,
        with the rotation and volumes_current checks."""
        from axe_pipelines.definitions import build_definitions

        return self.run_job(
            build_definitions(site), tier_c_job(customer_name),
            tags={VOLUME_TAG: volume.name},
            run_config={"ops": {tier_c_op(customer_name): {"config": {
                "volume": str(volume.path)}}}}, **self._bounds(site, customer_name, "C"))
