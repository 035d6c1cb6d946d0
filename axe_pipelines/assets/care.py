"""Repository care in Dagster: `care_definitions` gathers, per customer, the restic_check on
each tier (checks/care.py), the weekly check job, and the weekly retention job built here.

The weekly retention job of a customer, `<customer>_retention`: one op that applies each
tier's `retention:` policy (actions/prune.py: forget the planned snapshots, then prune) on
tier A, on our repository at each ring peer (our own policy; never the peer's copy of its
backups in receive_dir_at_self) and on every cold volume mounted now.

It runs in the customer's repository pool, like the backups and copies it must not overlap
(restic's forget and prune take an exclusive lock). A repository that fails does not stop the
others; the run then fails with each failure in one line, which the run-failure alert sends.
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

from datetime import UTC, datetime

import dagster as dg

from axe_pipelines.actions.prune import TierPrune, prune
from axe_pipelines.checks.care import build_restic_checks
from axe_pipelines.config import Site
from axe_pipelines.jobs import restic_check_jobs
from axe_pipelines.names import repository_pool, repository_tags, retention_job
from axe_pipelines.schedules import care_schedules


def retention_metadata(results: list[TierPrune]) -> dict[str, object]:
    """Given one run's retention results, return the op's output metadata: per repository
    what was forgotten and what stayed."""
    done = [r for r in results if r.result is not None]
    return {
        "repositories": [r.repository.label for r in results],
        "forgotten": dg.MetadataValue.json({r.repository.label: len(r.result.forgotten)
                                            for r in done if r.result}),
        "remaining": dg.MetadataValue.json({r.repository.label: r.result.remaining
                                            for r in done if r.result}),
        "bytes_freed": dg.MetadataValue.int(sum(r.result.bytes_freed or 0
                                                for r in done if r.result)),
        "without_policy": [r.repository.label for r in results
                           if r.plan is None and not r.error],
        "failed": [f"{r.repository.label}: {r.error}" for r in results if r.error],
    }


def build_retention_job(site: Site, customer_name: str) -> dg.JobDefinition:
    """Given a customer with tier A, return its retention job (one op in the customer's
    repository pool, tagged with its repository for the run queue)."""
    customer = site.customer(customer_name)

    @dg.op(name=f"{retention_job(customer_name)}_forget_and_prune",
           pool=repository_pool(customer),
           description=f"Forget what each tier's retention policy lets go of "
                       f"{customer_name}'s snapshots (sets whole, per item), then prune.")
    def forget_and_prune(context: dg.OpExecutionContext) -> dg.Output:
        results = prune(site, [customer_name], now=datetime.now(UTC), dry_run=False,
                        say=context.log.info)
        for result in results:
            for line in result.lines():
                context.log.info(line)
        metadata = retention_metadata(results)
        failed = [r for r in results if r.error]
        if failed:
            raise dg.Failure(
                description="; ".join(f"{r.repository.label}: {r.error}" for r in failed)
                + f" ({len(results) - len(failed)} other repositor"
                  f"{'y' if len(results) - len(failed) == 1 else 'ies'} done)",
                metadata=metadata, allow_retries=False)
        return dg.Output(None, metadata=metadata)

    @dg.job(name=retention_job(customer_name), tags=repository_tags(customer, "care"),
            description=f"Weekly: apply {customer_name}'s retention policy on every tier "
                        f"(restic forget of the planned snapshots, then prune).")
    def retention() -> None:
        forget_and_prune()

    return retention


def care_definitions(site: Site, customer_name: str) -> dg.Definitions:
    """Given a customer with tier A, return its repository care: restic_check on each tier,
    the weekly check and retention jobs and their schedules (Sundays 06:00 and 05:00)."""
    customer = site.customer(customer_name)
    checks = build_restic_checks(site, customer_name)
    check_job = restic_check_jobs(customer_name, customer, checks)
    retention = build_retention_job(site, customer_name)
    return dg.Definitions(asset_checks=checks, jobs=[check_job, retention],
                          schedules=care_schedules(customer_name, customer, retention,
                                                   check_job))
