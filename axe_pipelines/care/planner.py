"""Which snapshots a retention policy keeps and which it forgets: a pure function of the
snapshots, the policy, the time zone and now (no restic, no clock).

The rule, per item (customer, kind, item name: `db/frame`, `roles/frame-postgres`,
`files/files`):

1. Every snapshot is dated by its SET's logical time (the snapshots sharing one `run=` tag; the
   set's time is its earliest member's `--time`), in the customer's zone. Day, ISO week, month
   and year buckets are taken on that local date, so a 00:30 KST set belongs to that KST day.
2. restic's own policy is applied to the item's snapshots alone, newest first, exactly as
   `restic forget --keep-*` does within one group: `keep_last` N newest; `keep_daily` N the
   newest snapshot of each of the last N days that have one (weekly, monthly, yearly alike);
   when a count is not used up, the item's oldest snapshot is kept too ("oldest daily ...");
   `keep_within` keeps what is dated after (newest not-future set - duration).
3. The item's newest snapshot, and its newest one not tagged `incomplete`, are always kept
   (the last good copy is never forgotten, whatever the policy).

Why per item and not one policy over the customer's sets: a Dagster run may back up only
some items (a re-execution of the failed ones, one materialised asset), and such a partial
set would otherwise count as one of the "last N" and push out the other items' snapshots.
Sets still stay whole: every item of a nightly set carries the same logical time, so each
item picks the same set in each bucket, and a kept day keeps every item of that day's set.
Where an item is missing from a set (its dump failed that night), its own history decides:
it keeps its newest snapshot of that bucket from another set, and its count of days reaches
back over the gap — a failure costs an item no history.

Never judged, so never forgotten: snapshots without the `axe-pipelines` tag (not made by
axe), another customer's, ones without a `run=` or item tag, and sets dated after `now` (a
skewed clock, or an untrusted writer's forged times — restic's note on forget with untrusted
writers: such snapshots must not push out real ones, so they do not count in any bucket).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from axe_pipelines.backup import TAG_TOOL, Item
from axe_pipelines.care.policy import RetentionPolicy
from axe_pipelines.care.wal_keep import wal_reasons
from axe_pipelines.restic import Snapshot
from axe_pipelines.set_meta import SET_META_KIND
from axe_pipelines.wal.catalog import PHYSICAL_KIND
from axe_pipelines.wal.push import WAL_KIND
from axe_pipelines.wal.segments import Segment

NEWEST = "newest of its item"
NEWEST_COMPLETE = "newest complete of its item"

# restic's buckets (snapshot_policy.go: ymd, yw, ym, y), as the label a reason shows.
_BUCKETS: dict[str, Callable[[datetime], str]] = {
    "daily": lambda t: f"{t:%Y-%m-%d}",
    "weekly": lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2]),
    "monthly": lambda t: f"{t:%Y-%m}",
    "yearly": lambda t: f"{t:%Y}",
}


@dataclass(frozen=True)
class Decision:
    """One snapshot's fate: kept when `reasons` says why, forgotten when it is empty. `item`
    and `run` are None for a snapshot the policy does not judge (then `reasons` says why)."""

    snapshot: Snapshot
    item: str | None
    run: str | None
    set_time: datetime | None
    reasons: tuple[str, ...]

    @property
    def keep(self) -> bool:
        """True when the snapshot stays (it has a reason)."""
        return bool(self.reasons)


@dataclass(frozen=True)
class SetDecision:
    """One set's fate: which of its items stay, which go, and why the kept ones stay."""

    run: str
    time: datetime
    kept: tuple[str, ...]
    forgotten: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ForgetPlan:
    """What a policy keeps and forgets in one repository; `decisions` newest first."""

    customer: str
    where: str
    policy: RetentionPolicy
    timezone: str
    now: datetime
    decisions: tuple[Decision, ...]

    @property
    def kept(self) -> list[Decision]:
        """The snapshots that stay, newest first (with why)."""
        return [d for d in self.decisions if d.keep]

    @property
    def forgotten(self) -> list[Decision]:
        """The snapshots to forget, newest first."""
        return [d for d in self.decisions if not d.keep]

    @property
    def forget_ids(self) -> list[str]:
        """The full ids of the snapshots to forget, oldest first."""
        return [d.snapshot.id for d in reversed(self.decisions) if not d.keep]

    def sets(self) -> list[SetDecision]:
        """Return the judged snapshots grouped by set, newest set first."""
        runs: dict[str, list[Decision]] = {}
        for d in self.decisions:
            if d.run is not None:
                runs.setdefault(d.run, []).append(d)
        out = []
        for run, members in runs.items():
            reasons = dict.fromkeys(r for d in members for r in d.reasons)
            out.append(SetDecision(run, min(d.set_time for d in members if d.set_time),
                                   tuple(sorted(d.item for d in members if d.keep and d.item)),
                                   tuple(sorted(d.item for d in members
                                                if not d.keep and d.item)),
                                   tuple(reasons)))
        return sorted(out, key=lambda s: s.time, reverse=True)

    def lines(self) -> list[str]:
        """Return the plan as an operator reads it (`axe prune --dry-run`): a headline, then
        one line per set, newest first, then the snapshots the policy does not judge."""
        zone = ZoneInfo(self.timezone)
        sets = self.sets()
        going = [s for s in sets if s.forgotten]
        lines = [f"{self.where or self.customer}: keep {len(self.kept)} snapshot(s), forget "
                 f"{len(self.forgotten)} (from {len(going)} of {len(sets)} set(s)); policy "
                 f"{self.policy.describe()}, days in {self.timezone}"]
        for s in sets:
            head = f"  {s.time.astimezone(zone):%Y-%m-%d %H:%M %Z}  run {s.run[:8]}  "
            if not s.forgotten:
                lines.append(head + f"keep all {len(s.kept)}: " + ", ".join(s.reasons))
            elif not s.kept:
                lines.append(head + f"forget all {len(s.forgotten)}")
            else:
                lines.append(head + f"keep {', '.join(s.kept)} ({', '.join(s.reasons)}); "
                             f"forget {', '.join(s.forgotten)}")
        wal: dict[str, list[Decision]] = {}
        for d in self.decisions:
            if d.item and d.item.startswith("wal/") and d.run is None:
                wal.setdefault(d.item, []).append(d)
            elif d.run is None:
                lines.append(f"  snapshot {d.snapshot.short_id}: kept, {d.reasons[0]}")
        for item, found in sorted(wal.items()):
            kept = [d for d in found if d.keep]
            why = dict.fromkeys(r for d in kept for r in d.reasons)
            lines.append(f"  {item}: keep {len(kept)} WAL batch(es), forget "
                         f"{len(found) - len(kept)}" + (f" ({'; '.join(why)})" if why else ""))
        return lines

    def as_json(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data (`axe prune --dry-run --json`)."""
        def entry(d: Decision) -> dict[str, Any]:
            return {"id": d.snapshot.id, "time": d.snapshot.time.isoformat(),
                    "set_time": d.set_time.isoformat() if d.set_time else None,
                    "item": d.item, "run": d.run, "reasons": list(d.reasons)}

        return {"customer": self.customer, "where": self.where, "timezone": self.timezone,
                "now": self.now.isoformat(),
                "policy": self.policy.model_dump(exclude_none=True),
                "keep": [entry(d) for d in self.kept],
                "forget": [entry(d) for d in self.forgotten]}


def item_label(snapshot: Snapshot) -> str | None:
    """Given an axe snapshot, return its item as the UI names it (`db/frame`, `files/files`),
    or None when it carries no kind or item tag."""
    kind = snapshot.tag("kind")
    name = snapshot.tag("database") or snapshot.tag("server") or snapshot.tag("folder")
    if kind == SET_META_KIND:  # the set's own record (set_meta.py): judged as one more item
        name = "set"
    if not kind or not name:
        return None
    try:
        return Item(kind, name).label  # type: ignore[arg-type]
    except KeyError:  # a kind this version does not know (a newer axe made it)
        return f"{kind}/{name}"


def _not_judged(snapshot: Snapshot, customer: str) -> str | None:
    """Return why the policy leaves this snapshot alone, or None when it judges it."""
    if TAG_TOOL not in snapshot.tags:
        return "not made by axe"
    owner = snapshot.tag("customer")
    if owner != customer:
        return f"customer {owner or '(none)'}, not {customer}"
    if not snapshot.tag("run") or item_label(snapshot) is None:
        return "no run= or item tag"
    return None


def _apply_restic_policy(entries: list[tuple[datetime, Snapshot]], policy: RetentionPolicy,
                         zone: ZoneInfo) -> list[list[str]]:
    """Given one item's (set time, snapshot) newest first, return each one's reasons to be
    kept under restic's rules (ApplyPolicy in restic's snapshot_policy.go), [] to forget."""
    reasons: list[list[str]] = [[] for _ in entries]
    within = policy.within
    # restic measures keep-within back from the newest snapshot, not from now, so that a
    # tier whose backups stopped does not age out its last copies; future ones never got here.
    cutoff = within.before(entries[0][0].astimezone(zone)) if within and entries else None
    counts = {name: n for name, n in policy.counts().items() if n}
    last_bucket: dict[str, str] = {}
    for nr, (when, _) in enumerate(entries):
        local = when.astimezone(zone)
        if cutoff is not None and when > cutoff:
            reasons[nr].append(f"within {policy.keep_within}")
        oldest = nr == len(entries) - 1
        for name in list(counts):
            if counts[name] <= 0:
                continue
            bucket = str(nr) if name == "last" else _BUCKETS[name](local)
            if bucket != last_bucket.get(name) or oldest:
                # restic keeps the oldest snapshot while a count is left: the longest history.
                again = "oldest " if bucket == last_bucket.get(name) else ""
                label = f"last {policy.keep_last}" if name == "last" else f"{name} {bucket}"
                reasons[nr].append(again + label)
                last_bucket[name] = bucket
                counts[name] -= 1
    return reasons


def _set_times(snapshots: Iterable[Snapshot]) -> dict[str, datetime]:
    times: dict[str, datetime] = {}
    for s in snapshots:
        run = s.tag("run")
        if run is not None and (run not in times or s.time < times[run]):
            times[run] = s.time
    return times


def _is_wal(snapshot: Snapshot, customer: str) -> bool:
    return (snapshot.tag("kind") == WAL_KIND and TAG_TOOL in snapshot.tags
            and snapshot.tag("customer") == customer)


def _wal_decisions(wal: list[Snapshot], decisions: list[Decision],
                   wal_starts: Mapping[str, Segment]) -> list[Decision]:
    """The WAL batches' decisions (care/wal_keep.py), from the base backups kept so far."""
    kept_base: dict[str, list[Snapshot]] = {}
    for d in decisions:
        if d.keep and d.run and d.snapshot.tag("kind") == PHYSICAL_KIND:
            kept_base.setdefault(d.snapshot.tag("server") or "", []).append(d.snapshot)
    reasons = wal_reasons(wal, kept_base, wal_starts)
    return [Decision(s, f"wal/{s.tag('server')}", None, None, reasons[s.id]) for s in wal]


def plan_retention(snapshots: Iterable[Snapshot], policy: RetentionPolicy, *, customer: str,
                   now: datetime, timezone: str, where: str = "",
                   wal_starts: Mapping[str, Segment] | None = None) -> ForgetPlan:
    """Given every snapshot of a repository, a policy, the customer, now and the customer's
    zone (and the start segment of each base backup by id, for its WAL), return the
    ForgetPlan (rules in this module's docstring; WAL: care/wal_keep.py). A naive `now` is
    read in `timezone`. Raise nothing: a snapshot it cannot judge is kept."""
    zone = ZoneInfo(timezone)
    now = now if now.tzinfo else now.replace(tzinfo=zone)
    snapshots = list(snapshots)
    wal = [s for s in snapshots if _is_wal(s, customer)]
    decisions: list[Decision] = []
    judged = []
    for s in snapshots:
        if _is_wal(s, customer):
            continue
        why = _not_judged(s, customer)
        if why is None:
            judged.append(s)
        else:
            decisions.append(Decision(s, None, None, None, (why,)))
    set_time = _set_times(judged)
    items: dict[str, list[tuple[datetime, Snapshot]]] = {}
    for s in judged:
        run, item = s.tag("run"), item_label(s)
        assert run is not None and item is not None  # _not_judged let it through
        if set_time[run] > now:
            decisions.append(Decision(s, item, run, set_time[run],
                                      (f"dated after now ({now:%Y-%m-%d %H:%M %Z})",)))
            continue
        items.setdefault(item, []).append((set_time[run], s))
    for item, entries in items.items():
        entries.sort(key=lambda e: (e[0], e[1].time, e[1].id), reverse=True)
        reasons = _apply_restic_policy(entries, policy, zone)
        reasons[0].append(NEWEST)
        complete = next((i for i, (_, s) in enumerate(entries) if "incomplete" not in s.tags),
                        None)
        if complete not in (None, 0):
            reasons[complete].append(NEWEST_COMPLETE)
        for (when, s), why in zip(entries, reasons, strict=True):
            decisions.append(Decision(s, item, s.tag("run"), when, tuple(why)))
    decisions += _wal_decisions(wal, decisions, wal_starts or {})
    decisions.sort(key=lambda d: (d.set_time or d.snapshot.time, d.snapshot.time, d.snapshot.id),
                   reverse=True)
    return ForgetPlan(customer, where, policy, timezone, now, tuple(decisions))
