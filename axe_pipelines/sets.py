"""Backup sets: the snapshots of one tier-A run, grouped by their `run=` tag, and the as-of
rules that pick one.

A set's time is its logical time (restic `--time` = the run's scheduled time), so
`--as-of 2026-05-20T03:00` picks the 03:00 run even if it finished at 03:00:42. A date alone
means the end of that day; a time without zone is in the customer's zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from axe_pipelines.backup import TAG_TOOL
from axe_pipelines.errors import UsageError
from axe_pipelines.restic import Restic, Snapshot


class AsOfError(UsageError, ValueError):
    """No set matches the as-of time; the message lists the range that exists."""


@dataclass(frozen=True)
class BackupSet:
    """One tier-A run's snapshots (or their copies in tier B or C), at the run's logical
    time (the earliest member's)."""

    run_id: str
    time: datetime
    snapshots: tuple[Snapshot, ...]

    def member(self, kind: str, name: str) -> Snapshot | None:
        """Given an item's kind (pgdump/roles/dumpall/files) and config name, return its
        snapshot in this set, or None."""
        for s in self.snapshots:
            if s.tag("kind") == kind and name in (s.tag("database"), s.tag("server"),
                                                  s.tag("folder")):
                return s
        return None

    @property
    def ids(self) -> list[str]:
        """Return the members' snapshot ids."""
        return [s.id for s in self.snapshots]

    @property
    def to_copy(self) -> tuple[Snapshot, ...]:
        """Return what tiers B and C copy for this set: its members (copying.SetToCopy adds
        the earlier snapshots of items the set lacks)."""
        return self.snapshots


def group_sets(snapshots: list[Snapshot]) -> list[BackupSet]:
    """Given snapshots, return them grouped by their `run=` tag into sets, oldest set first.
    Snapshots tagged `incomplete` are left out. For copies (tiers B/C) restic keeps the tags,
    so the grouping is the same."""
    runs: dict[str, list[Snapshot]] = {}
    for s in snapshots:
        run = s.tag("run")
        if run and "incomplete" not in s.tags:
            runs.setdefault(run, []).append(s)
    sets = [BackupSet(run, min(s.time for s in snaps), tuple(snaps))
            for run, snaps in runs.items()]
    return sorted(sets, key=lambda b: b.time)


def list_sets(restic: Restic, customer_name: str) -> list[BackupSet]:
    """Given a repository, return every set of the customer in it, oldest first. Raise the
    mapped ResticError when the repository cannot be listed."""
    return group_sets(restic.snapshots(tags=[TAG_TOOL, f"customer={customer_name}"]))


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_as_of(text: str, timezone: str, *, now: datetime | None = None) -> datetime:
    """Given `--as-of` and the customer's zone, return the moment it means: `2026-05-20` is
    the end of that day, `2026-05-20T03:00` the whole minute (up to 03:00:59.999999),
    `2026-05-20 03:00:00+09:00` exactly that, `latest`/`now` now. A value without zone is in
    `timezone`. Raise AsOfError when the text is not a time."""
    zone = ZoneInfo(timezone)
    text = text.strip()
    if text in ("latest", "now"):
        return (now or datetime.now(zone)).astimezone(zone)
    if _DATE_ONLY.match(text):
        day = date.fromisoformat(text)
        return datetime.combine(day, time(23, 59, 59, 999999), tzinfo=zone)
    try:
        value = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise AsOfError(f"cannot read --as-of {text!r}; use 2026-05-20, 2026-05-20T03:00 "
                        f"or latest") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    clock = _CLOCK.match(text.replace(" ", "T", 1))
    if clock and clock.group(1) is None:
        # 2026-05-20T03:00 (with or without a zone) means the whole minute: a set stamped
        # 03:00:30 still counts. Given seconds (03:00:00) are taken exactly.
        value = value + timedelta(seconds=59, microseconds=999999)
    return value


# The time part of an ISO value: hours:minutes, then seconds or not, then maybe a zone.
_CLOCK = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:?\d{2}(:?\d{2}(?:[.,]\d+)?)?(?:Z|[+-].*)?$")


def select_as_of(sets: list[BackupSet], as_of: datetime, *, where: str) -> BackupSet:
    """Given sets oldest first and a moment, return the newest set whose logical time is at
    or before it. Raise AsOfError naming `where` and the range that exists otherwise."""
    eligible = [s for s in sets if s.time <= as_of]
    if eligible:
        return eligible[-1]
    if not sets:
        raise AsOfError(f"{where} holds no backup sets")
    zone = as_of.tzinfo
    first, last = sets[0].time.astimezone(zone), sets[-1].time.astimezone(zone)
    raise AsOfError(f"no backup set in {where} at or before {as_of:%Y-%m-%d %H:%M %Z}; "
                    f"sets exist from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} "
                    f"({len(sets)} sets)")


def newest_holding(sets: list[BackupSet], kind: str, name: str,
                   as_of: datetime | None = None) -> BackupSet | None:
    """Given sets oldest first, an item (kind and config name) and a moment (None: any time),
    return the newest set at or before it that holds a good snapshot of the item, or None.
    A night that failed an item leaves that item to an earlier set: `--as-of` is per item."""
    for s in reversed(sets):
        if (as_of is None or s.time <= as_of) and s.member(kind, name) is not None:
            return s
    return None


def sets_holding(sets: list[BackupSet], kind: str, name: str, zone: tzinfo, *,
                 shown: int = 5) -> str:
    """Given sets, an item and the zone to print in, return the --as-of values of the newest
    `shown` sets holding it, newest first ("2026-05-20T03:00, 2026-05-19T03:00"), or "none"."""
    times = [s.time.astimezone(zone) for s in reversed(sets) if s.member(kind, name)]
    text = ", ".join(f"{t:%Y-%m-%dT%H:%M}" for t in times[:shown]) or "none"
    return text + (f" (and {len(times) - shown} older)" if len(times) > shown else "")
