"""The weekly `restic check` as an asset check per tier: *restic_check* on
`<customer>/tier_a/local`, on each `<customer>/tier_b/<peer>` and on `<customer>/tier_c/cold`.

Each reads this week's part of its repository's data (`--read-data-subset k/n`, the tier's
`check_read_parts` n; the whole repository in n weeks). ERROR when restic finds damage, with
restic's own repair advice in the description and metadata. A repository that cannot be
checked (peer down, wrong password, a live lock) fails the check's step, so the run fails and
the run-failure alert says why. The work is in actions/check.py. (No `from __future__ import
annotations`: Dagster reads the context annotation at runtime.)
"""

from datetime import UTC, datetime

import dagster as dg

from axe_pipelines.actions.check import TierCheck, check_repository
from axe_pipelines.care.policy import Tier
from axe_pipelines.care.repositories import tier_repositories
from axe_pipelines.config import Site
from axe_pipelines.names import (
    RESTIC_CHECK,
    repository_pool,
    set_key,
    tier_asset_key,
    tier_b_key,
    tier_c_key,
)
from axe_pipelines.ring import ring_peers


def restic_check_result(key: dg.AssetKey, checks: list[TierCheck]) -> dg.AssetCheckResult:
    """Given the checks of one tier's repositories (several for the cold volumes, none when
    no volume is mounted), return `restic_check`: ERROR with restic's findings and repair
    advice when a repository is damaged. Raise dg.Failure (not retried) when none is damaged
    but one could not be checked."""
    damaged = [c for c in checks if c.outcome is not None and c.outcome.damaged]
    failed = [c for c in checks if c.error]
    outcomes = [c.outcome for c in checks if c.outcome is not None]
    metadata = {
        "repositories": [c.repository.label for c in checks],
        "read": [o.read for o in outcomes],
        "advice": dg.MetadataValue.json(sorted({a for o in outcomes for a in o.advice})),
        "broken_packs": dg.MetadataValue.json(sorted({p for o in outcomes
                                                      for p in o.broken_packs})),
        "findings": dg.MetadataValue.json([e for o in outcomes for e in o.errors][:50]),
        "could_not_check": dg.MetadataValue.json([line for c in failed for line in c.lines()]),
        "duration_s": dg.MetadataValue.float(float(round(sum(o.duration_s for o in outcomes), 1))),
    }
    if damaged:
        return dg.AssetCheckResult(
            asset_key=key, check_name=RESTIC_CHECK, passed=False,
            severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
            description="; ".join(c.outcome.summary for c in damaged if c.outcome))
    if failed:
        raise dg.Failure(description="; ".join(c.lines()[0] for c in failed),
                         metadata=metadata, allow_retries=False)
    if not checks:
        text = "no cold volume with a repository is mounted: nothing checked this week"
    else:
        text = "; ".join(o.summary for o in outcomes)
    return dg.AssetCheckResult(asset_key=key, check_name=RESTIC_CHECK, passed=True,
                               severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
                               description=text)


def recorded_evaluation(key: dg.AssetKey, checks: list[TierCheck]) -> dg.AssetCheckEvaluation:
    """Given the `axe check` results of one tier's repositories, return `restic_check`'s
    evaluation as the weekly job would record it; a repository that could not be checked
    (where the job's run fails instead) is a failed ERROR evaluation saying why."""
    try:
        result = restic_check_result(key, checks)
        passed, description, metadata = result.passed, result.description, result.metadata
    except dg.Failure as failure:
        passed, description, metadata = False, failure.description, failure.metadata
    return dg.AssetCheckEvaluation(asset_key=key, check_name=RESTIC_CHECK, passed=passed,
                                   severity=dg.AssetCheckSeverity.ERROR,
                                   description=description, metadata=metadata or {})


def record_checks(checks: list[TierCheck], instance: dg.DagsterInstance | None = None) -> int:
    """Given `axe check`'s results, record one `restic_check` evaluation per tier asset in the
    instance (default $DAGSTER_HOME's, prepared when missing), so `axe status` and the UI see
    a check run from cron as they see the weekly job's. Return how many were recorded. Raise
    Unusable when the Dagster home is not writable."""
    from axe_pipelines.instance import ensure_dagster_home

    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    by_key: dict[dg.AssetKey, list[TierCheck]] = {}
    for check in checks:
        repo = check.repository
        key = tier_asset_key(repo.customer, repo.tier,
                             repo.name if repo.tier == "ring" else None)
        by_key.setdefault(key, []).append(check)
    for key, group in by_key.items():
        instance.report_runless_asset_event(recorded_evaluation(key, group))
    return len(by_key)


def _restic_check(site: Site, customer_name: str, tier: Tier, key: dg.AssetKey,
                  peer: str | None = None) -> dg.AssetChecksDefinition:
    """`restic_check` on one tier's asset (`peer`: only that ring peer's repository)."""
    customer = site.customer(customer_name)
    where = {"local": "tier A", "ring": f"tier B at {peer}", "cold": "every mounted cold "
             "volume"}[tier]

    @dg.asset_check(
        asset=key, name=RESTIC_CHECK,
        description=f"restic check of {customer_name}'s repository on {where}, reading this "
                    f"week's part of the data (the whole repository every check_read_parts "
                    f"weeks); ERROR on damage, with restic's repair advice.",
        # restic check takes an exclusive lock: never beside a backup or copy of the customer.
        pool=repository_pool(customer))
    def restic_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        now = datetime.now(UTC)
        repos = [r for r in tier_repositories(site, customer_name, [tier])
                 if peer is None or r.name == peer]
        checks = []
        for repo in repos:
            checks.append(check_repository(repo, now))
            for line in checks[-1].lines():
                context.log.info(line)
        return restic_check_result(key, checks)

    return restic_check


def build_restic_checks(site: Site, customer_name: str) -> list[dg.AssetChecksDefinition]:
    """Given a customer with tier A, return `restic_check` on its tier-A set, on each ring
    peer's copy (with `tiers.ring`) and on its cold copy (with `tiers.cold`)."""
    customer = site.customer(customer_name)
    assert customer.tiers is not None
    checks = [_restic_check(site, customer_name, "local", set_key(customer_name))]
    if customer.tiers.ring is not None:
        checks += [_restic_check(site, customer_name, "ring", tier_b_key(customer_name, p), p)
                   for p in ring_peers(site, customer_name)]
    if customer.tiers.cold is not None:
        checks.append(_restic_check(site, customer_name, "cold", tier_c_key(customer_name)))
    return checks
