"""What `axe prune` and the weekly retention job do: per customer and tier, plan what the
tier's `retention:` policy forgets (care.plan_forget), show it, and unless it is a dry run
forget those snapshots and prune (care.apply_forget). A tier without a policy keeps
everything; a repository that cannot be reached fails alone, the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from axe_pipelines.care.forget import ForgetResult, apply_forget, plan_forget
from axe_pipelines.care.planner import ForgetPlan
from axe_pipelines.care.policy import TIERS, Tier
from axe_pipelines.care.repositories import TierRepository, tier_repositories
from axe_pipelines.care.stamps import stamp_care
from axe_pipelines.config import Site
from axe_pipelines.errors import EXIT_OK, AxeError


@dataclass(frozen=True)
class TierPrune:
    """One repository's retention: the plan (None without a policy, or when it could not be
    read), what forgetting did (None in a dry run), or why it failed."""

    repository: TierRepository
    plan: ForgetPlan | None = None
    result: ForgetResult | None = None
    error: str = ""
    error_exit: int = EXIT_OK

    @property
    def exit_code(self) -> int:
        """Return 0, or the exit code of the error that stopped this repository."""
        return self.error_exit if self.error else EXIT_OK

    def lines(self) -> list[str]:
        """Return what `axe prune` prints for this repository: the plan, then the result."""
        head = self.repository.label
        if self.error:
            return [f"{head}: FAILED: {self.error}"]
        if self.plan is None:
            return [f"{head}: no retention policy; every snapshot is kept"]
        lines = [f"{head}:", *("  " + line for line in self.plan.lines())]
        if self.result is not None:
            lines.append("  " + self.result.line())
        return lines


def prune_repository(site: Site, repo: TierRepository, now: datetime, dry_run: bool,
                     say: Callable[[str], None]) -> TierPrune:
    """Given one repository, now (aware) and whether it is a dry run, return its TierPrune,
    having forgotten and pruned what its policy lets go unless `dry_run` (a cold volume's
    marker then records it: care/stamps.py). Repository errors are in the TierPrune."""
    policy = repo.policy
    if policy is None:
        return TierPrune(repo)
    plan: ForgetPlan | None = None
    try:
        with repo.guard():
            restic = repo.open()
            plan = plan_forget(restic, repo.customer, policy, now, repo.timezone)
            if dry_run:
                return TierPrune(repo, plan)
            say(f"{repo.label}: forgetting {len(plan.forget_ids)} snapshot(s), then pruning")
            result = apply_forget(restic, plan, site=site)
            stamp_care(repo, "pruned", now)
            return TierPrune(repo, plan, result)
    except AxeError as exc:
        return TierPrune(repo, plan, error=str(exc).strip().splitlines()[0],
                         error_exit=exc.exit_code)


def prune(site: Site, customers: Sequence[str], tiers: Sequence[Tier] = TIERS, *,
          now: datetime, dry_run: bool,
          say: Callable[[str], None] = lambda _line: None) -> list[TierPrune]:
    """Given the customers and tiers to look after, now (aware), and whether it is a dry run,
    return one TierPrune per repository (tier A, each ring peer, each mounted cold volume),
    having forgotten and pruned unless `dry_run`. Repository errors are reported in their
    TierPrune, not raised; raise ConfigError for an unknown customer."""
    results = []
    for name in customers:
        for repo in tier_repositories(site, name, tiers):
            results.append(prune_repository(site, repo, now, dry_run, say))
    return results
