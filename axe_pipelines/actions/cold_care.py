"""Care of a cold volume while it is mounted (issue 10): the weekly retention and `restic
check` jobs (Sunday 05:00 / 06:00) see a cold volume only if it happens to be mounted then,
which a rotated SSD rarely is. So after each successful sync, the volume's own retention and
its rotating check run on it when they are due: the last one recorded on that volume for the
customer is older than DUE_AFTER (or there is none). Each is bounded as the weekly job's is
(this week's `--read-data-subset` part; restic's timeouts of tier C).

When each last ran is kept in the volume's identity marker (`care.<customer>.pruned` and
`.checked`, aware ISO times), written under the volume's lock, so it travels with the SSD and
the weekly jobs stamp it too (a volume they looked after on Sunday is not done again Monday).
Plain: no Dagster here; the tier-C asset records the check's result (checks/care.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from axe_pipelines.actions.check import TierCheck, check_repository
from axe_pipelines.actions.prune import TierPrune, prune_repository
from axe_pipelines.care.repositories import tier_repositories
from axe_pipelines.care.stamps import last_care
from axe_pipelines.cold import Volume
from axe_pipelines.config import Site

DUE_AFTER = timedelta(days=7)  # the weekly jobs' period


@dataclass
class ColdCare:
    """What the care after a sync did: the lines to log, the prune and check (None: not due
    or no retention policy)."""

    lines: list[str] = field(default_factory=list)
    pruned: TierPrune | None = None
    checked: TierCheck | None = None


def _due(last: datetime | None, now: datetime) -> bool:
    return last is None or now - last >= DUE_AFTER


def care_after_sync(site: Site, customer_name: str, volume: Volume, now: datetime,
                    say: Callable[[str], None] = lambda _line: None) -> ColdCare:
    """Given a volume the customer's set was just synced to and now (aware), run the
    retention and the rotating `restic check` that are due on it (last one recorded on the
    volume over DUE_AFTER ago) and return what was done. Repository problems are in the
    results, not raised."""
    care = ColdCare()
    repo = next((r for r in tier_repositories(site, customer_name, ["cold"])
                 if r.name == volume.name), None)
    if repo is None:
        return care
    last = last_care(volume.path, customer_name)
    if repo.policy is not None and _due(last.get("pruned"), now):
        care.pruned = prune_repository(site, repo, now, dry_run=False, say=say)
        care.lines += care.pruned.lines()
    if _due(last.get("checked"), now):
        care.checked = check_repository(repo, now)
        care.lines += care.checked.lines()
    if not care.lines:
        care.lines.append(f"{repo.label}: retention and restic check not due (each ran "
                          f"within {DUE_AFTER.days} days)")
    return care
