"""The data of `axe status` (actions/status.py): each tier's row, each customer, the site,
and what the Dagster instance is asked (OpsHistory; checks/history.py answers it). Plain:
the JSON these produce is README's "axe status --json"."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from axe_pipelines.actions.snapshots import SetInfo
from axe_pipelines.errors import EXIT_FAILED, EXIT_OK

SCHEMA = 1  # `axe status --json` "schema"; raised when a key changes meaning or goes away


@dataclass(frozen=True)
class Outcome:
    """The last result of a check or a drill: `result` is ok, FAILED, WARN or running."""

    result: str
    at: datetime
    summary: str = ""


@dataclass(frozen=True)
class StuckRun:
    """A Dagster run in progress (or queued) for longer than STUCK_AFTER."""

    run_id: str
    job: str
    status: str
    since: datetime

    def as_json(self, now: datetime) -> dict[str, Any]:
        """Given the present moment, return the run as JSON-ready data."""
        return {"run_id": self.run_id, "job": self.job, "status": self.status,
                "since": self.since.isoformat(), "age_hours": hours(now - self.since)}


class OpsHistory(Protocol):
    """What the Dagster instance remembers (checks/history.py); None/empty when nothing."""

    def last_check(self, customer: str, tier: str, peer: str | None) -> Outcome | None:
        """Given a tier (and peer), return the last `restic check` of its repository."""

    def last_drill(self, customer: str) -> Outcome | None:
        """Given a customer, return its last restore drill."""

    def volume_syncs(self, customer: str) -> dict[int, datetime]:
        """Given a customer, return the last sync per cold volume number."""

    def last_push(self, customer: str, peer: str) -> datetime | None:
        """Given a customer and a peer, return the logical time of the last set pushed."""

    def stuck_runs(self, older_than: timedelta, now: datetime) -> list[StuckRun]:
        """Given a bound and now, return the runs in progress or queued for longer."""

    def unreadable(self) -> str:
        """Return why the history could not be read ("" when it could, or there is none):
        then every answer above is unknown, not "never"."""


class NoHistory:
    """An OpsHistory of a machine without a Dagster instance: nothing ever ran."""

    def last_check(self, customer: str, tier: str, peer: str | None) -> Outcome | None:
        """Given a tier, return None (no check recorded)."""
        return None

    def last_drill(self, customer: str) -> Outcome | None:
        """Given a customer, return None (no drill recorded)."""
        return None

    def volume_syncs(self, customer: str) -> dict[int, datetime]:
        """Given a customer, return {} (no cold sync recorded)."""
        return {}

    def last_push(self, customer: str, peer: str) -> datetime | None:
        """Given a customer and a peer, return None (no push recorded)."""
        return None

    def stuck_runs(self, older_than: timedelta, now: datetime) -> list[StuckRun]:
        """Given a bound, return [] (no runs recorded)."""
        return []

    def unreadable(self) -> str:
        """Return "" (nothing to read, nothing unreadable)."""
        return ""


@dataclass
class TierRow:
    """One line of the table: a customer's copy on one tier (local, a peer, a volume)."""

    customer: str
    tier: str  # local, ring or cold
    where: str  # "local", the peer, the volume (axe-cold-2, or #2 when not mounted)
    repository: str = ""
    volume: int | None = None  # cold: the volume's number in the rotation
    state: str = "ok"  # ok, offline (a cold volume not mounted), or the first problem's word
    error: str = ""  # why the repository could not be read
    newest: SetInfo | None = None
    first: datetime | None = None  # the oldest set's logical time
    sets: int = 0
    stored_bytes: int | None = None
    raw_bytes: int | None = None
    locks: int | None = None
    stale_locks: int | None = None
    check: Outcome | None = None
    last_sync: datetime | None = None  # cold volumes: the last sync of this customer
    note: str = ""
    problems: list[str] = field(default_factory=list)

    def problem(self, state: str, text: str) -> None:
        """Given a problem's word (STALE, ...) and its sentence, record it; the row's state
        becomes the first problem's word."""
        if self.state in ("ok", "offline"):
            self.state = state
        self.problems.append(f"{state}: {text}")

    def as_json(self, now: datetime) -> dict[str, Any]:
        """Given the present moment, return the row as JSON-ready data (README schema)."""
        return {"tier": self.tier, "where": self.where, "repository": self.repository,
                "state": self.state, "problems": self.problems, "error": self.error,
                "newest_set": self.newest.as_json(now) if self.newest else None,
                "sets": self.sets,
                "size": {"newest_set_raw_bytes": self.newest.raw_bytes if self.newest else None,
                         "stored_bytes": self.stored_bytes, "raw_bytes": self.raw_bytes},
                "locks": {"total": self.locks, "stale": self.stale_locks},
                "check": _outcome_json(self.check, now),
                "last_sync": self.last_sync.isoformat() if self.last_sync else None,
                "note": self.note}


@dataclass
class CustomerStatus:
    """Every tier of one customer, its last drill and the customer-wide problems."""

    customer: str
    timezone: str
    rows: list[TierRow] = field(default_factory=list)
    drill: Outcome | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row and nothing customer-wide has a problem."""
        return not self.problems and not any(r.problems for r in self.rows)

    def as_json(self, now: datetime) -> dict[str, Any]:
        """Given the present moment, return the customer as JSON-ready data."""
        return {"customer": self.customer, "timezone": self.timezone, "ok": self.ok,
                "drill": _outcome_json(self.drill, now), "problems": self.problems,
                "tiers": [r.as_json(now) for r in self.rows]}


@dataclass
class SiteStatus:
    """`axe status` of the whole site: every customer, and the runs that look stuck."""

    now: datetime
    customers: list[CustomerStatus] = field(default_factory=list)
    stuck: list[StuckRun] = field(default_factory=list)
    history_error: str = ""  # the Dagster history could not be read: checks, drills unknown

    @property
    def exit_code(self) -> int:
        """Return 0 when everything is fresh, complete, checked and known, else 1."""
        ok = all(c.ok for c in self.customers) and not self.stuck and not self.history_error
        return EXIT_OK if ok else EXIT_FAILED

    def as_json(self) -> dict[str, Any]:
        """Return the whole status as JSON-ready data (`axe status --json`, README)."""
        return {"schema": SCHEMA, "generated_at": self.now.isoformat(),
                "ok": self.exit_code == EXIT_OK, "exit_code": self.exit_code,
                "customers": [c.as_json(self.now) for c in self.customers],
                "stuck_runs": [r.as_json(self.now) for r in self.stuck],
                "history_error": self.history_error}


def hours(delta: timedelta) -> float:
    """Given a duration, return it in hours, rounded to 0.01."""
    return round(delta.total_seconds() / 3600, 2)


def _outcome_json(outcome: Outcome | None, now: datetime) -> dict[str, Any]:
    if outcome is None:
        return {"result": "never", "at": None, "age_hours": None, "summary": ""}
    return {"result": outcome.result, "at": outcome.at.isoformat(),
            "age_hours": hours(now - outcome.at), "summary": outcome.summary}
