"""What `axe check` and the weekly `restic check` do: per customer and tier, check each
repository, reading this week's part of the data (`--read-data-subset k/n`, n the tier's
`check_read_parts`, k turning with the week so n weeks read everything), or all of it with
`read_data`. Damage is a finding with restic's repair advice; a repository that cannot be
checked (peer down, wrong password, live lock) fails alone, the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from axe_pipelines.care.check import CheckOutcome, check_plan, rotation_week, run_check
from axe_pipelines.care.policy import TIERS, Tier
from axe_pipelines.care.repositories import TierRepository, tier_repositories
from axe_pipelines.care.stamps import stamp_care
from axe_pipelines.config import Site
from axe_pipelines.damage import clear_damage
from axe_pipelines.errors import EXIT_FAILED, EXIT_OK, AxeError


@dataclass(frozen=True)
class TierCheck:
    """One repository's check: what restic found, or why it could not check."""

    repository: TierRepository
    outcome: CheckOutcome | None = None
    error: str = ""
    error_exit: int = EXIT_OK

    @property
    def exit_code(self) -> int:
        """Return 0 (passed), 1 (damage found) or the exit code of what stopped the check."""
        if self.error:
            return self.error_exit
        return EXIT_FAILED if self.outcome is not None and self.outcome.damaged else EXIT_OK

    def lines(self) -> list[str]:
        """Return what `axe check` prints: the verdict, then restic's findings and advice."""
        head = self.repository.label
        if self.error:
            return [f"{head}: could not check: {self.error}"]
        assert self.outcome is not None
        out = self.outcome
        lines = [f"{head}: {'DAMAGED' if out.damaged else 'ok'}: {out.summary}"]
        if out.damaged:
            lines += [f"  found: {line}" for line in out.errors[:20]]
            lines += [f"  advice: {line}" for line in out.advice]
        return lines


def week_subset(repo: TierRepository, now: datetime) -> str:
    """Given a repository and now, return this week's `--read-data-subset` (k/n with n the
    tier's `check_read_parts`, k from the week in the customer's zone)."""
    return check_plan(rotation_week(now, repo.timezone), repo.settings.check_read_parts)


def check_repository(repo: TierRepository, now: datetime, *,
                     read_data: bool = False) -> TierCheck:
    """Given a repository and now, run `restic check` on it (this week's subset, or all data
    with `read_data`) and return the TierCheck. Raise nothing for a repository problem: it
    is in the TierCheck."""
    try:
        with repo.guard():
            restic = repo.open()
            subset = None if read_data else week_subset(repo, now)
            outcome = run_check(restic, subset, read_data=read_data)
            if read_data and not outcome.damaged:
                clear_damage(restic.repo.location)  # every pack read back: damage.py's record
            stamp_care(repo, "checked", now)
            return TierCheck(repo, outcome)
    except AxeError as exc:
        return TierCheck(repo, error=str(exc).strip().splitlines()[0],
                         error_exit=exc.exit_code)


def check_tiers(site: Site, customers: Sequence[str], tiers: Sequence[Tier] = TIERS, *,
                now: datetime, read_data: bool = False) -> list[TierCheck]:
    """Given the customers and tiers to check and now (aware), return one TierCheck per
    repository (tier A, each ring peer, each mounted cold volume). Raise ConfigError for an
    unknown customer."""
    return [check_repository(repo, now, read_data=read_data)
            for name in customers for repo in tier_repositories(site, name, tiers)]
