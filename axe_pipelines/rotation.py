"""Tier C's quarter rotation: which cold volume a quarter expects, when each volume's first
turn ends, and which volumes are overdue. Plain and pure (no disk, no restic); cold.py does
the syncing, checks/tier_c.py and `axe status` judge with these.

The rotation starts at a quarter (`tiers.cold.rotation_start: 2026-Q4`, or Q1 of
`rotation_start_year`) that expects volume #1; each quarter after it expects the next volume,
wrapping over `volumes` and carrying on across years.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


def _quarter_index(start: int | str) -> int:
    """Given a rotation start (a year: its Q1; or `YYYY-Qn`, ColdTier.rotation_origin),
    return it counted in quarters since year 0."""
    if isinstance(start, int):
        return start * 4
    year, quarter = start.split("-Q")
    return int(year) * 4 + int(quarter) - 1


def expected_volume(when: datetime, volumes: int, start_year: int | str = 2026) -> int:
    """The runbook's rotation: the start quarter (Q1 of `start_year`, or the quarter of a
    `YYYY-Qn` start such as 2026-Q4) -> #1, the next quarter -> #2, ..., wrapping over
    `volumes` and carrying on across years (quarters are counted from the start, not from
    each January), so every volume's turn comes back after exactly `volumes` quarters. With 3
    volumes from 2026: Q1 2026 #1, Q2 #2, Q3 #3, Q4 #1, Q1 2027 #2, ...; from 2026-Q4: Q4 2026
    #1, Q1 2027 #2, ... `when` is in the tier's zone."""
    quarters = when.year * 4 + (when.month - 1) // 3 - _quarter_index(start_year)
    return quarters % volumes + 1


def first_turn_ends(volumes: int, start_year: int | str, zone: str) -> dict[int, datetime]:
    """When each volume's first turn in the rotation ends (the end of the quarter that first
    expects it; the start as for expected_volume): a volume never synced is overdue only from
    then on, so a new site — also one that starts mid-year with `rotation_start` — is not told
    on its first sync that SSDs whose quarter has not come yet are missing."""
    tz = ZoneInfo(zone)
    origin = _quarter_index(start_year)
    ends = {}
    for n in range(1, volumes + 1):
        q = origin + n  # the quarter right after the first one expecting #n (origin + n - 1)
        ends[n] = datetime(q // 4, (q % 4) * 3 + 1, 1, tzinfo=tz)
    return ends


def overdue_volumes(last: Mapping[int, datetime], volumes: int, overdue_days: float,
                    now: datetime, first_ends: Mapping[int, datetime] | None = None,
                    ) -> tuple[list[str], list[str]]:
    """Given each volume's last sync, return (overdue, not yet due) as words per volume: a
    volume is overdue when not synced within `overdue_days`, or never synced once its first
    turn is over (`first_ends`, first_turn_ends; without it never synced is overdue)."""
    limit = timedelta(days=overdue_days)
    late, not_yet = [], []
    for n in range(1, volumes + 1):
        when = last.get(n)
        first_end = (first_ends or {}).get(n)
        if when is None and first_end is not None and now < first_end:
            not_yet.append(f"#{n} (its first quarter ends {first_end:%Y-%m-%d})")
        elif when is None:
            late.append(f"#{n} never synced")
        elif now - when > limit:
            late.append(f"#{n} last synced {when:%Y-%m-%d} ({(now - when).days} days ago)")
    return late, not_yet
