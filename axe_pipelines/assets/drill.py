"""The restore drill as a Dagster asset, `<customer>/drill/restore_drill`, with its check
`restorable_everywhere`, its job and the in-process run `axe drill` starts. A thin layer over
actions/drill.py: the run's options come from a typed Config (launchable from the UI), the
dump-time counts and digests from this instance, and the report becomes metadata — tables
per item and per attempt, RTO and RPO as numbers so the UI plots them across drills.

No `from __future__ import annotations` here: Dagster reads the asset's annotations at runtime.
"""

from typing import Optional

import dagster as dg

from axe_pipelines.actions.backup import RunOutcome
from axe_pipelines.actions.drill import DrillListener, DrillOptions, finish_drill, run_drill
from axe_pipelines.actions.drill_report import DrillReport
from axe_pipelines.checks.drill import restorable_everywhere_result, restorable_everywhere_spec
from axe_pipelines.config import ConfigError, Site
from axe_pipelines.errors import AxeError
from axe_pipelines.names import (
    DRILL_LISTENER_RESOURCE,
    KIND_TAG,
    drill_group,
    drill_job,
    drill_key,
    location_tags,
    repository_pool,
    repository_tags,
)
from axe_pipelines.notify import dagster_run_url
from axe_pipelines.resources import DagsterDumpHistory


class DrillConfig(dg.Config):
    """The options of `axe drill`: `tier` proves from that tier only (local, ring, cold or a
    peer; default: tier A, falling back to C, then B); `as_of` as `axe restore` reads it
    (default: the end of yesterday)."""

    tier: Optional[str] = None  # noqa: UP045 - Dagster's config types want Optional
    as_of: Optional[str] = None  # noqa: UP045


_ITEM_COLUMNS = [dg.TableColumn(name, kind) for name, kind in (
    ("item", "string"), ("tier", "string"), ("snapshot", "string"), ("set", "string"),
    ("rpo_h", "float"), ("rpo_gap_h", "float"), ("rto_s", "float"), ("checks", "string"),
    ("result", "string"))]
_NUMBERS = ("rpo_h", "rpo_gap_h", "rto_s")
_ATTEMPT_COLUMNS = [dg.TableColumn(name, kind) for name, kind in (
    ("item", "string"), ("tier", "string"), ("result", "string"), ("snapshot", "string"),
    ("rto_s", "float"), ("reason", "string"))]


def drill_metadata(report: DrillReport) -> dict[str, object]:
    """Given a drill's report, return the asset's metadata: the item and attempt tables, the
    fallbacks, where the evidence is, and RTO/RPO per item and at most as numbers."""
    items = [dg.TableRecord({k: ("" if v is None else v) if k not in _NUMBERS
                             else float(v or 0.0) for k, v in row.items()})
             for row in report.rows()]
    attempts = [dg.TableRecord({"item": i.label, "tier": a.tier,
                                "result": "ok" if a.ok else "FAILED",
                                "snapshot": a.snapshot_id[:8], "rto_s": float(a.rto_s or 0.0),
                                "reason": a.reason})
                for i in report.items for a in i.attempts]
    meta: dict[str, object] = {
        "result": "passed" if report.ok else "FAILED",
        "as_of": report.as_of, "staging": report.staging or "-",
        "items": dg.MetadataValue.table(records=items,
                                        schema=dg.TableSchema(columns=_ITEM_COLUMNS)),
        "attempts": dg.MetadataValue.table(records=attempts,
                                           schema=dg.TableSchema(columns=_ATTEMPT_COLUMNS)),
        "fallbacks": dg.MetadataValue.md("\n".join(
            f"- {line}" for line in report.fallback_lines()) or "none"),
        "evidence_dir": report.evidence_dir or "-",
        "evidence_snapshot": report.evidence_snapshot or report.evidence_error or "-",
        "slack": report.slack or "-",
        "wall_s": dg.MetadataValue.float(report.wall_s),
    }
    if report.fatal:
        meta["fatal"] = report.fatal
    if report.damage:
        meta["damage"] = dg.MetadataValue.md("\n".join(f"- {d}" for d in report.damage))
    served = [(i, i.served) for i in report.items if i.served]
    for item, attempt in served:
        if attempt.rto_s is not None:
            meta[f"rto_s/{item.label}"] = dg.MetadataValue.float(attempt.rto_s)
        if item.rpo_age_h is not None:
            meta[f"rpo_h/{item.label}"] = dg.MetadataValue.float(item.rpo_age_h)
        if item.rpo_gap_h is not None:  # between the last two good sets holding the item
            meta[f"rpo_gap_h/{item.label}"] = dg.MetadataValue.float(item.rpo_gap_h)
    meta["rto_s_max"] = dg.MetadataValue.float(max((a.rto_s or 0.0 for _, a in served),
                                                   default=0.0))
    meta["rpo_h_max"] = dg.MetadataValue.float(max((i.rpo_age_h or 0.0 for i, _ in served),
                                                   default=0.0))
    meta["rpo_gap_h_max"] = dg.MetadataValue.float(max((i.rpo_gap_h or 0.0 for i, _ in served),
                                                       default=0.0))
    return meta


def build_drill_asset(site: Site, customer_name: str) -> dg.AssetsDefinition:
    """Given a customer with tier A, return its drill asset with `restorable_everywhere`."""
    customer = site.customer(customer_name)
    key = drill_key(customer_name)

    @dg.asset(key=key, group_name=drill_group(customer_name),
              check_specs=[restorable_everywhere_spec(key)], pool=repository_pool(customer),
              kinds={"postgres", "restic"}, tags={KIND_TAG: "drill"},
              required_resource_keys={DRILL_LISTENER_RESOURCE},
              description=f"Restore drill of {customer_name}: every database into a throwaway "
                          f"staging PostgreSQL and every folder into a temporary folder, "
                          f"checked, from tier A or (falling back) C or B; RTO, RPO and "
                          f"evidence (JSON, Markdown, a kind=drill snapshot in tier A).")
    def restore_drill(context: dg.AssetExecutionContext,
                      config: DrillConfig) -> dg.MaterializeResult:
        listener: DrillListener | None = getattr(context.resources, DRILL_LISTENER_RESOURCE)
        say = listener.say if listener is not None else context.log.info
        options = DrillOptions(tier=config.tier, as_of=config.as_of,
                               run_id=context.run.run_id)
        try:
            report = run_drill(site, customer_name, options, say=say,
                               history=DagsterDumpHistory(context.instance))
        except ConfigError as exc:  # an unknown tier or peer
            raise dg.Failure(description="; ".join(exc.problems) or str(exc)) from None
        except AxeError as exc:  # an unreadable --as-of
            raise dg.Failure(description=str(exc).strip().splitlines()[0]) from None
        # The UI's address (notify.webserver_base_url, issue 10) makes the Slack message link
        # to this run.
        base = getattr(getattr(customer, "notify", None), "webserver_base_url", None)
        finish_drill(site, customer_name, report, say=say,
                     url=dagster_run_url(base, context.run.run_id))
        if listener is not None:
            listener.done(report)
        return dg.MaterializeResult(metadata=drill_metadata(report),
                                    check_results=[restorable_everywhere_result(key, report)])

    return restore_drill


def build_drill_job(customer_name: str, site: Site):  # noqa: ANN201 - Dagster's type is private
    """Return the job of the customer's drill; its `axe/repository` tag keeps it out of the
    way of tier A, B and C runs on the same repository (dagster.yaml's run queue)."""
    return dg.define_asset_job(
        name=drill_job(customer_name), selection=dg.AssetSelection.assets(
            drill_key(customer_name)),
        tags=repository_tags(site.customer(customer_name), "drill"),
        description=f"Restore drill of {customer_name} (quarterly, or launched now).")


def materialize_drill(site: Site, customer_name: str, *, tier: str | None,
                      as_of: str | None, listener: DrillListener,
                      instance: dg.DagsterInstance | None = None) -> RunOutcome:
    """Given a customer and `axe drill`'s options, run its drill now in this process as a run
    recorded in `instance` (default: $DAGSTER_HOME's, prepared when missing), lines and the
    report going to `listener`; return how it ended. Raise KeyboardInterrupt when the run was
    interrupted (Ctrl-C): the drill's staging is torn down by then; Unusable when the Dagster
    home is not writable."""
    from axe_pipelines.instance import ensure_dagster_home
    from axe_pipelines.runs import outcome  # runs.py imports definitions.py, which imports this

    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()

    asset = build_drill_asset(site, customer_name)
    config = {"tier": tier, "as_of": as_of}
    # The drill's own job (its tags) and the code location's label: the UI files the run
    # under <customer>_restore_drill, not as an ad-hoc __ephemeral_asset_job__ run (issue 11).
    job = dg.Definitions(assets=[asset], jobs=[build_drill_job(customer_name, site)], resources={
        DRILL_LISTENER_RESOURCE: dg.ResourceDefinition.hardcoded_resource(listener)},
    ).resolve_job_def(drill_job(customer_name))
    result = job.execute_in_process(
        instance=instance, raise_on_error=False, tags=location_tags(),
        run_config={"ops": {asset.op.name: {"config": config}},
                    "loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    # Dagster turns Ctrl-C inside the step into a failed run; the operator pressed Ctrl-C.
    for event in result.all_events:
        failure = event.step_failure_data if event.event_type_value == "STEP_FAILURE" else None
        if failure and failure.error and failure.error.cls_name == \
                "DagsterExecutionInterruptedError":
            raise KeyboardInterrupt
    return outcome(result)
