"""The Dagster runs the CLI starts: a tier's assets executed in this process against the
operator's instance ($DAGSTER_HOME), so `axe backup` is recorded like a scheduled run, and
each run's end turned into a plain `RunOutcome` for actions/backup.py.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from axe_pipelines.actions.backup import CheckOutcome, CollectingReporter, RunOutcome
from axe_pipelines.assets.tier_a import build_tier_a
from axe_pipelines.assets.tier_b import build_tier_b_asset
from axe_pipelines.cold import Volume
from axe_pipelines.config import Site
from axe_pipelines.definitions import tier_c_definitions
from axe_pipelines.instance import ensure_dagster_home
from axe_pipelines.names import (
    PROGRESS_RESOURCE,
    TIER_TAG,
    VOLUME_TAG,
    repository_tags,
    tier_c_key,
    tier_c_op,
)

# The CLI draws its own progress; Dagster's console log only speaks up on errors.
_QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


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


class InProcessRunner:
    """Runs a tier's assets in this process, recorded in $DAGSTER_HOME (created with the
    embedded SQLite dagster.yaml when missing). Raise Unusable when that home is not
    writable."""

    def __init__(self) -> None:
        ensure_dagster_home()
        self.instance = dg.DagsterInstance.get()

    def tier_a(self, site: Site, customer_name: str, *, reporter: CollectingReporter,
               skip_restore_check: bool) -> RunOutcome:
        """Back the customer's tier A up now, progress going to `reporter`; without the
        restorable checks when `skip_restore_check` (coverage stays; the read-back of every
        dump can run later from the UI)."""
        customer = site.customer(customer_name)
        assets_def = build_tier_a(customer_name, customer)
        selection = dg.AssetSelection.all()
        if skip_restore_check:
            selection = selection.without_checks() | dg.AssetSelection.checks(
                *[k for k in assets_def.check_keys if k.name != "restorable"])
        return outcome(dg.materialize(
            [assets_def], instance=self.instance, selection=selection,
            resources={PROGRESS_RESOURCE: dg.ResourceDefinition.hardcoded_resource(reporter)},
            tags=repository_tags(customer), raise_on_error=False, run_config=_QUIET))

    def tier_b(self, site: Site, customer_name: str, peer: str) -> RunOutcome:
        """Push the customer's latest set to `peer` now, without the schedule's retries (the
        operator is watching)."""
        asset = build_tier_b_asset(site, customer_name, peer, retry=False)
        return outcome(dg.materialize([asset], instance=self.instance, tags={TIER_TAG: "b"},
                                      raise_on_error=False, run_config=_QUIET))

    def tier_c(self, site: Site, customer_name: str, volume: Volume) -> RunOutcome:
        """Sync the customer's latest set onto `volume` now, with the rotation and
        volumes_current checks."""
        defs = tier_c_definitions(site, customer_name)
        return outcome(dg.materialize(
            [*defs.assets, *defs.asset_checks], instance=self.instance,
            selection=[tier_c_key(customer_name)],
            tags={TIER_TAG: "c", VOLUME_TAG: volume.name}, raise_on_error=False,
            run_config={"ops": {tier_c_op(customer_name): {"config": {
                "volume": str(volume.path)}}}, **_QUIET}))
