"""The Dagster `restore` job: `axe restore` launchable from the UI, with the same options as a
typed Config. A thin layer over actions.restore.run_restore: each step goes to the run log, the
dump-time row counts come from this instance (resources.DagsterDumpHistory), the result
(snapshot used, durations, check table, undo command) becomes the op's output metadata.

No `from __future__ import annotations` here: Dagster reads the op's annotations at runtime.
"""

from typing import Optional

import dagster as dg

from axe_pipelines.actions.restore import RestoreOptions, RestoreReport, run_restore
from axe_pipelines.config import ConfigError, Site
from axe_pipelines.errors import AxeError
from axe_pipelines.names import KIND_TAG
from axe_pipelines.resources import DagsterDumpHistory


class RestoreConfig(dg.Config):
    """The options of `axe restore`. `dry_run` defaults to true so a launch from the UI shows
    the plan first; set it to false to restore."""

    customer: str
    tier: Optional[str] = None  # noqa: UP045 - None: local, or ring when `source` is a peer
    source: Optional[str] = None  # noqa: UP045 - Dagster's config types want Optional
    as_of: str = "latest"
    target: Optional[str] = None  # noqa: UP045
    table: Optional[str] = None  # noqa: UP045
    dry_run: bool = True
    force: bool = False
    in_place: bool = False
    dest: Optional[str] = None  # noqa: UP045
    check: Optional[str] = None  # noqa: UP045
    jobs: int = 2
    lock_timeout: float = 10.0
    pitr: bool = False  # replay archived WAL to as_of (a server with wal:)

    def options(self) -> RestoreOptions:
        """Return these fields as the options of actions.restore.run_restore."""
        return RestoreOptions(customer=self.customer, tier=self.tier, source=self.source,
                              as_of=self.as_of, target=self.target, table=self.table,
                              dry_run=self.dry_run, force=self.force, in_place=self.in_place,
                              dest=self.dest, check=self.check, jobs=self.jobs,
                              lock_timeout=self.lock_timeout, pitr=self.pitr)


_CHECK_COLUMNS = [dg.TableColumn("target", "string"), dg.TableColumn("check", "string"),
                  dg.TableColumn("kind", "string"), dg.TableColumn("result", "string"),
                  dg.TableColumn("detail", "string"), dg.TableColumn("output", "string")]
_STEP_COLUMNS = [dg.TableColumn("step", "string"), dg.TableColumn("seconds", "float")]


def report_metadata(report: RestoreReport) -> dict[str, object]:
    """Run metadata for a restore: what was used, how long each step took, the checks."""
    checks = [dg.TableRecord({"target": t.name, "check": c.name, "kind": c.kind,
                              "result": "ok" if c.passed else "FAILED", "detail": c.detail,
                              "output": c.output})
              for t in report.targets for c in t.checks]
    outputs = "\n\n".join(f"### {t.name}: {c.name}\n\n```\n{c.output}\n```"
                          for t in report.targets for c in t.checks
                          if c.kind == "command" and c.output)
    steps = [dg.TableRecord({"step": s.name, "seconds": round(s.seconds, 2)})
             for s in report.steps]
    return {
        "customer": report.customer,
        "tier": report.tier + (f" ({report.peer})" if report.peer else ""),
        "set_time": report.set_time.isoformat(),
        "run_id": report.run_id,
        "dry_run": report.dry_run,
        "snapshot_ids": dg.MetadataValue.json(sorted({t.snapshot_id for t in report.targets})),
        "plan": dg.MetadataValue.md("\n".join(f"- {line}" for line in report.plan) or "-"),
        "results": dg.MetadataValue.json([{"kind": t.kind, "name": t.name,
                                           "detail": t.detail, "undo": t.undo or "",
                                           "post_restore": t.post_restore,
                                           "error": t.error or ""}
                                          for t in report.targets]),
        "undo": dg.MetadataValue.md("\n".join(f"- `{t.undo}`" for t in report.targets
                                              if t.undo) or "-"),
        "failed": dg.MetadataValue.json([f"{t.kind} {t.name}: {t.error}"
                                         for t in report.failed]),
        "command_output": dg.MetadataValue.md(outputs or "-"),
        "steps": dg.MetadataValue.table(records=steps,
                                        schema=dg.TableSchema(columns=_STEP_COLUMNS)),
        "checks": dg.MetadataValue.table(records=checks,
                                         schema=dg.TableSchema(columns=_CHECK_COLUMNS)),
        "total_s": dg.MetadataValue.float(round(float(sum(s.seconds for s in report.steps)), 2)),
        "last_valid_search": dg.MetadataValue.json(report.search),
    }


def build_restore_job(site: Site) -> dg.JobDefinition:
    """The `restore` job for the customers of `site` (customers.yaml)."""

    @dg.op(name="restore_op", description="Restore a database, table or folder of a customer as "
           "of a time, from a tier; integrity checks afterwards.")
    def restore_op(context: dg.OpExecutionContext, config: RestoreConfig) -> dg.Output:
        opts = config.options()
        context.log.info(f"restore of {opts.customer}: target {opts.target or 'everything'}"
                         f"{' table ' + opts.table if opts.table else ''}, as of {opts.as_of}, "
                         f"tier {opts.tier or opts.source or 'local'}"
                         f"{' (dry run)' if opts.dry_run else ''}")
        try:
            report = run_restore(site, opts, say=context.log.info,
                                 history=DagsterDumpHistory(context.instance))
        except ConfigError as exc:  # unknown customer, tier or peer
            raise dg.Failure(description="; ".join(exc.problems) or str(exc)) from None
        except AxeError as exc:  # the target, the tier, the set, PostgreSQL, restic
            raise dg.Failure(description=str(exc).strip().splitlines()[0]) from None
        metadata = report_metadata(report)
        if report.failed:
            raise dg.Failure(description=f"{len(report.failed)} of {len(report.targets)} "
                             "item(s) failed: " + "; ".join(
                                 f"{t.kind} {t.name}: {t.error}" for t in report.failed)
                             + " (undo commands of the others in the metadata)",
                             metadata=metadata)
        if not report.ok:
            failed = [f"{c.name}: {c.detail}" for c in report.checks if not c.passed]
            raise dg.Failure(description="integrity check(s) failed after the restore: "
                             + "; ".join(failed), metadata=metadata)
        return dg.Output(value=metadata["results"].value, metadata=metadata)

    @dg.job(name="restore", tags={KIND_TAG: "restore"},
            description="axe restore from the UI: set dry_run to false to change anything.")
    def restore_job() -> None:
        restore_op()

    return restore_job
