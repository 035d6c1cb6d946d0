"""What `axe status` does: the newest tier-A set of each customer, its age and its gaps,
read from the repository itself (usable from monitoring: exit 1 when stale or incomplete)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from axe_pipelines.backup import coverage, local_restic
from axe_pipelines.config import Site, freshness_window
from axe_pipelines.errors import EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE
from axe_pipelines.restic import ResticError
from axe_pipelines.sets import list_sets


@dataclass(frozen=True)
class TierAStatus:
    """One customer's tier A now. `state` is ok, STALE (older than freshness_hours),
    INCOMPLETE (a configured item is missing), NO BACKUP or UNAVAILABLE (`error` says why)."""

    customer: str
    repository: str
    state: str
    error: str = ""
    newest: datetime | None = None
    age_hours: float = 0.0
    snapshots: int = 0
    sets: int = 0
    gaps: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """Return 0 (ok), 1 (stale, incomplete or no backup) or 3 (repository unusable)."""
        if self.state == "UNAVAILABLE":
            return EXIT_UNUSABLE
        return EXIT_OK if self.state == "ok" else EXIT_FAILED

    def lines(self) -> list[str]:
        """Return the report as `axe status` prints it: a headline, then one line per gap."""
        head = f"{self.customer} tier A: {self.state}"
        if self.state == "UNAVAILABLE":
            return [f"{head}: {self.error}"]
        if self.newest is None:
            return [f"{head} yet in {self.repository}"]
        return [f"{head}: newest set {self.newest:%Y-%m-%d %H:%M %Z} ({self.age_hours:.1f} h "
                f"ago), {self.snapshots} snapshot(s), {self.sets} set(s) kept",
                *(f"  missing: {gap}" for gap in self.gaps)]


def tier_a_status(site: Site, name: str, now: datetime | None = None) -> TierAStatus:
    """Given a customer with tier A, return its TierAStatus as of `now` (default: the
    clock). A repository that cannot be read is UNAVAILABLE, not an exception."""
    customer = site.customers[name]
    assert customer.tiers is not None
    repository = str(customer.tiers.local.repository)
    try:
        sets = list_sets(local_restic(name, customer), name)
    except ResticError as exc:
        return TierAStatus(name, repository, "UNAVAILABLE", error=str(exc))
    if not sets:
        return TierAStatus(name, repository, "NO BACKUP")
    latest = sets[-1]
    age = (now or datetime.now(UTC)) - latest.time
    gaps = [gap.reason for gap in coverage(customer, latest.snapshots)]
    state = "STALE" if age > freshness_window(customer) else ("INCOMPLETE" if gaps else "ok")
    return TierAStatus(name, repository, state, newest=latest.time,
                       age_hours=age.total_seconds() / 3600,
                       snapshots=len(latest.snapshots), sets=len(sets), gaps=gaps)
