"""A tier's retention policy, as customers.yaml will spell it, and restic's durations.

The policy sits under each tier (issue 10; plugged into config.py's tier models later):

    tiers:
      local:
        repository: ~/.axe/backups/local
        retention: {keep_daily: 14, keep_weekly: 8, keep_monthly: 12, keep_yearly: 3}
      ring:
        retention: {keep_daily: 7, keep_monthly: 6}
      cold:
        retention: {keep_monthly: 12, keep_yearly: 5, keep_within: 30d}

Every key is optional, at least one is required (an empty policy would forget everything but
each item's newest snapshot). The keys mean what restic's `forget --keep-*` flags mean; there is
no `keep_hourly` because a tier holds one set a night. `keep_within` is a restic duration
(`30d`, `1y6m`, `36h`; restic knows y, m, d and h, not weeks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Tier = Literal["local", "ring", "cold"]
TIERS: tuple[Tier, ...] = ("local", "ring", "cold")

_DURATION_PART = re.compile(r"(\d+)([ymdh])")
_UNITS = {"y": "years", "m": "months", "d": "days", "h": "hours"}


@dataclass(frozen=True)
class Duration:
    """A restic duration (`1y6m`, `30d`, `36h`): calendar years, months and days, then hours."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def before(self, moment: datetime) -> datetime:
        """Given an aware time, return the time this duration earlier, the way restic's
        `--keep-within` computes its cut-off (Go's AddDate on the wall clock in the moment's
        zone, which rolls Mar 31 - 1 month over to Mar 3, then the hours as elapsed time)."""
        months = moment.year * 12 + (moment.month - 1) - self.years * 12 - self.months
        year, month0 = divmod(months, 12)
        first = moment.replace(year=year, month=month0 + 1, day=1)
        wall = first + timedelta(days=moment.day - 1 - self.days)
        return (wall.astimezone(UTC) - timedelta(hours=self.hours)).astimezone(moment.tzinfo)

    def __str__(self) -> str:
        return "".join(f"{getattr(self, name)}{unit}" for unit, name in _UNITS.items()
                       if getattr(self, name))


def parse_duration(text: str) -> Duration:
    """Given a restic duration such as `30d` or `1y6m`, return it. Raise ValueError (with the
    accepted form) if it is empty, zero, has another unit or names a unit twice."""
    compact = text.strip()
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"cannot read duration {text!r}; write it as restic does, e.g. 30d, "
                         f"1y6m or 36h (units y, m, d, h)")
    units = [u for _, u in parts]
    if len(set(units)) != len(units):
        raise ValueError(f"duration {text!r} names a unit twice")
    value = Duration(**{_UNITS[u]: int(n) for n, u in parts})
    if not str(value):
        raise ValueError(f"duration {text!r} is zero; it would keep nothing")
    return value


class RetentionPolicy(BaseModel):
    """What one tier keeps of each item's snapshots: restic's `--keep-*` counts and
    `--keep-within`, applied per item by the planner (care/planner.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_last: int | None = Field(None, ge=1, description="the newest N snapshots")
    keep_daily: int | None = Field(None, ge=1, description="the newest snapshot of each of "
                                   "the last N days that have one")
    keep_weekly: int | None = Field(None, ge=1, description="... of the last N ISO weeks")
    keep_monthly: int | None = Field(None, ge=1, description="... of the last N months")
    keep_yearly: int | None = Field(None, ge=1, description="... of the last N years")
    keep_within: str | None = Field(None, description="every snapshot within this restic "
                                    "duration (30d, 1y6m) of the newest one")

    @field_validator("keep_within")
    @classmethod
    def _v_within(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _v_not_empty(self) -> RetentionPolicy:
        if not any(self.counts().values()) and self.keep_within is None:
            raise ValueError("a retention policy needs at least one of keep_last, keep_daily, "
                             "keep_weekly, keep_monthly, keep_yearly, keep_within (an empty "
                             "one would forget all but each item's newest snapshot)")
        return self

    def counts(self) -> dict[str, int | None]:
        """Return the count rules in restic's order (last, daily, weekly, monthly, yearly)."""
        return {"last": self.keep_last, "daily": self.keep_daily, "weekly": self.keep_weekly,
                "monthly": self.keep_monthly, "yearly": self.keep_yearly}

    @property
    def within(self) -> Duration | None:
        """The parsed `keep_within`, or None."""
        return parse_duration(self.keep_within) if self.keep_within else None

    def describe(self) -> str:
        """Return the policy in one line, e.g. `daily 14, weekly 8, within 30d`."""
        parts = [f"{name} {n}" for name, n in self.counts().items() if n]
        if self.keep_within:
            parts.append(f"within {self.keep_within}")
        return ", ".join(parts)


def tier_policy(tier_config: Any) -> RetentionPolicy | None:
    """Given a tier's config model (LocalTier, RingTier, ColdTier or None), return its
    `retention` policy, or None when the tier has none (nothing is forgotten there)."""
    policy = getattr(tier_config, "retention", None)
    if policy is None or isinstance(policy, RetentionPolicy):
        return policy
    return RetentionPolicy.model_validate(policy)
