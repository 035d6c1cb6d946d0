"""What `axe status` does: per customer and tier — tier A, each ring peer, each cold volume
(the mounted ones read now, the others from the Dagster history) — the newest set (logical
time in the customer's zone, age), complete or what it lacks, the repository's size, the last
`restic check` and the last drill with their age, stale locks; and runs that look stuck.
Made for cron and monitoring: exit 1 when anything is stale, failing or unknown.

Cost: one `restic snapshots` per repository (each restic process spends ~0.5 s deriving the
key), all repositories read side by side; size and lock files of a repository on a local disk
come from its folder; `restic stats` only with `sizes=True`. A ring peer is reached with the
ssh bounds of tiers.ring (connect_timeout_s per address), so one that does not answer is its
own UNREACHABLE row within seconds, not a failed command. What the Dagster instance knows
(checks, drills, cold syncs, runs) comes in as an `OpsHistory` (checks/history.py reads it):
this module never imports Dagster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from axe_pipelines.actions.snapshots import describe_set, on_disk
from axe_pipelines.actions.status_model import (
    CustomerStatus,
    NoHistory,
    OpsHistory,
    SiteStatus,
    TierRow,
    hours,
)
from axe_pipelines.backup import local_restic
from axe_pipelines.cold import find_volumes, read_marker, volume_restic
from axe_pipelines.config import Customer, Site, tier_timezone
from axe_pipelines.damage import recorded_damage
from axe_pipelines.peer import RingError, link
from axe_pipelines.physical_item import newest_nightly
from axe_pipelines.restic import Restic, ResticError
from axe_pipelines.ring import ring_peers
from axe_pipelines.rotation import first_turn_ends, overdue_volumes
from axe_pipelines.sets import BackupSet, list_sets

CHECK_DUE_DAYS = 8  # the weekly `restic check`, and a day of slack
DRILL_DUE_DAYS = 92 + 14  # the quarterly drill, and two weeks of slack
STUCK_AFTER = timedelta(hours=12)  # a run in progress (or queued) longer than this is stuck
RESTIC_TIMEOUT_S = 120.0  # bound on one restic call of `axe status`


# --- reading each tier (I/O; runs in threads) ---------------------------------------------------


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _fill(row: TierRow, customer: Customer, restic: Restic, sizes: bool,
          customer_name: str) -> None:
    """List the customer's sets in `restic` into the row; `restic stats` when `sizes`."""
    restic.timeout = min(restic.timeout or RESTIC_TIMEOUT_S, RESTIC_TIMEOUT_S)
    try:
        sets: list[BackupSet] = list_sets(restic, customer_name)
    except ResticError as exc:
        row.error = _one_line(exc)
        return
    row.sets = len(sets)
    if sets:
        row.newest = describe_set(customer, newest_nightly(customer, sets))  # physical_item
        row.first = sets[0].time
    if sizes:
        try:
            stats = json.loads(restic.run(["stats", "--mode", "raw-data", "--json", "--no-lock"],
                                          what="reading the repository's size"))
            row.raw_bytes = int(stats.get("total_uncompressed_size") or 0) or None
            row.stored_bytes = int(stats.get("total_size") or 0) or None
        except (ResticError, ValueError) as exc:
            row.note = f"size unknown: {_one_line(exc)}"


def _disk(row: TierRow, path: Path) -> None:
    """Size (unless restic stats gave it) and lock files of a repository on a local disk."""
    disk = on_disk(path)
    if disk is not None:
        row.stored_bytes = row.stored_bytes or disk.stored_bytes
        row.locks, row.stale_locks = disk.locks, disk.stale_locks


def read_local(site: Site, name: str, sizes: bool) -> TierRow:
    """Given a customer with tier A, return its tier-A row as read now (not judged)."""
    customer = site.customers[name]
    restic = local_restic(name, customer)
    row = TierRow(name, "local", "local", restic.repo.location)
    _fill(row, customer, restic, sizes, name)
    _disk(row, Path(restic.repo.location))
    return row


def read_ring(site: Site, name: str, peer: str, sizes: bool) -> TierRow:
    """Given a customer and a ring peer, return the row of our repository there: reached over
    ssh (bounded by tiers.ring's ssh settings: connect_timeout_s for the fqdn and for
    ssh_ip), or UNREACHABLE with ssh's reason."""
    row = TierRow(name, "ring", peer)
    try:
        pl = link(site, name, peer)
        host = pl.probe().host
    except RingError as exc:
        row.error = _one_line(exc)
        row.state = "UNREACHABLE"
        return row
    row.repository = pl.location(host)
    _fill(row, site.customers[name], pl.restic(host), sizes, name)
    return row


def read_cold(site: Site, name: str, synced: dict[int, datetime],
              sizes: bool) -> list[TierRow]:
    """Given a customer with tier C and the last sync per volume the Dagster history holds,
    return one row per mounted volume (read now) and one per volume of the rotation that is
    not mounted."""
    customer = site.customers[name]
    assert customer.tiers is not None and customer.tiers.cold is not None
    cold = customer.tiers.cold
    rows: list[TierRow] = []
    for volume in find_volumes(cold):
        row = TierRow(name, "cold", volume.name, str(volume.repo_path), volume=volume.number)
        when = ((read_marker(volume.path) or {}).get("last_sync") or {}).get(name)
        marked = datetime.fromisoformat(when) if when else None
        recorded = synced.get(volume.number) if volume.number else None
        row.last_sync = max((t for t in (marked, recorded) if t), default=None)
        if (volume.repo_path / "config").is_file():
            _fill(row, customer, volume_restic(volume, cold), sizes, name)
            _disk(row, volume.repo_path)
        else:
            row.note = "mounted, no repository yet (the next sync creates it)"
        rows.append(row)
    seen = {r.volume for r in rows}
    rows += [TierRow(name, "cold", f"#{n}", volume=n, state="offline", last_sync=synced.get(n),
                     note="not mounted") for n in range(1, cold.volumes + 1) if n not in seen]
    return rows


# --- judging (pure) ------------------------------------------------------------------------------


def judge_row(row: TierRow, customer: Customer, now: datetime) -> None:
    """Given a row as read and its customer, record its problems: unreadable, no backup,
    stale, incomplete, a failed or overdue `restic check`, stale locks."""
    assert customer.tiers is not None
    if row.error:
        row.problem("UNREACHABLE" if row.state == "UNREACHABLE" else "UNAVAILABLE", row.error)
        return
    if row.tier == "cold" and row.state == "offline":
        return  # judged with the whole rotation (judge_rotation)
    if row.newest is None:
        if row.tier != "cold":
            row.problem("NO BACKUP", f"no set yet in {row.repository}")
        return
    # Tier B's asset fails freshness an hour after tier A's (it runs after it).
    limit = timedelta(hours=customer.tiers.local.freshness_hours + (1 if row.tier == "ring"
                                                                     else 0))
    age = now - row.newest.time
    if row.tier != "cold" and age > limit:
        row.problem("STALE", f"newest set {hours(age):.1f} h old (limit {hours(limit):g} h)")
    for reason in row.newest.missing:
        row.problem("INCOMPLETE", f"missing {reason}")
    _judge_check(row, now, ZoneInfo(tier_timezone(customer)))
    if row.stale_locks:
        row.problem("STALE LOCK", f"{row.stale_locks} lock(s) not refreshed for 30 min in "
                                  f"{row.repository}; a run died holding them (`restic "
                                  f"unlock` removes stale locks only)")


def _judge_check(row: TierRow, now: datetime, zone: ZoneInfo) -> None:
    due = timedelta(days=CHECK_DUE_DAYS)
    check = row.check
    if check is not None and check.result == "FAILED":
        row.problem("CHECK FAILED", f"restic check of {check.at.astimezone(zone):%Y-%m-%d}: "
                                    f"{check.summary}")
    elif row.tier == "cold":
        return  # a cold volume is checked when it is mounted, not on a clock
    elif check is None and row.first is not None and now - row.first > due:
        row.problem("CHECK OVERDUE", f"no restic check recorded, sets since "
                                     f"{row.first.astimezone(zone):%Y-%m-%d}")
    elif check is not None and check.result != "running" and now - check.at > due:
        row.problem("CHECK OVERDUE", f"last restic check {(now - check.at).days} days ago")


def judge_rotation(rows: list[TierRow], customer: Customer, now: datetime) -> None:
    """Given a customer's cold rows, record OVERDUE on each volume not synced within its
    rotation (the volumes_current rule; a volume whose first turn has not come is not due)."""
    assert customer.tiers is not None and customer.tiers.cold is not None
    cold = customer.tiers.cold
    numbered = {r.volume: r for r in rows if r.volume}
    last = {n: r.last_sync for n, r in numbered.items() if r.last_sync}
    late, _ = overdue_volumes(last, cold.volumes, cold.overdue_days, now,
                              first_turn_ends(cold.volumes, cold.rotation_origin,
                                              tier_timezone(customer)))
    for words in late:
        n = int(words[1:].split()[0])
        if n in numbered:
            numbered[n].problem("OVERDUE", f"volume {words} (limit {cold.overdue_days:g} "
                                           f"days); mount that SSD")


def judge_drill(status: CustomerStatus, tier_a: TierRow, now: datetime) -> None:
    """Given a customer's status and its tier-A row, record a failed drill, or none recorded
    in DRILL_DUE_DAYS while tier A has held sets for longer."""
    drill, due = status.drill, timedelta(days=DRILL_DUE_DAYS)
    zone = ZoneInfo(status.timezone)
    if drill is not None and drill.result == "FAILED":
        status.problems.append(f"DRILL FAILED: drill of {drill.at.astimezone(zone):%Y-%m-%d}: "
                               f"{drill.summary}")
    elif drill is None and tier_a.first is not None and now - tier_a.first > due:
        status.problems.append(f"DRILL OVERDUE: no restore drill recorded, sets since "
                               f"{tier_a.first.astimezone(zone):%Y-%m-%d}")
    elif drill is not None and drill.result != "running" and now - drill.at > due:
        status.problems.append(f"DRILL OVERDUE: last drill {(now - drill.at).days} days ago")


# --- the whole site -----------------------------------------------------------------------------


def _readers(site: Site, name: str, synced: dict[int, datetime],
             sizes: bool) -> list[Callable[[], list[TierRow]]]:
    """One callable per repository of the customer (tier A, each peer, the cold volumes)."""
    customer = site.customers[name]
    assert customer.tiers is not None
    calls: list[Callable[[], list[TierRow]]] = [lambda: [read_local(site, name, sizes)]]
    if customer.tiers.ring is not None:
        try:
            peers = ring_peers(site, name)
        except RingError as exc:
            bad = TierRow(name, "ring", "-", error=_one_line(exc))
            peers, calls = [], [*calls, lambda: [bad]]
        for peer in peers:
            calls.append(lambda peer=peer: [read_ring(site, name, peer, sizes)])
    if customer.tiers.cold is not None:
        calls.append(lambda: read_cold(site, name, synced, sizes))
    return calls


def site_status(site: Site, names: list[str], history: OpsHistory | None = None, *,
                now: datetime | None = None, sizes: bool = False) -> SiteStatus:
    """Given customers with tier A, read every tier of each (side by side, one restic call per
    repository; `sizes` adds `restic stats`) and return the judged SiteStatus as of `now`.
    Nothing here raises for a repository or peer that cannot be read: that is a row's
    problem."""
    history = history or NoHistory()
    now = now or datetime.now(UTC)
    # The Dagster instance is read here, in this thread; only restic and ssh run in the pool.
    synced = {name: history.volume_syncs(name) for name in names}
    calls = {name: _readers(site, name, synced[name], sizes) for name in names}
    workers = max(1, min(4, sum(len(c) for c in calls.values())))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="axe-status") as pool:
        futures = {name: [pool.submit(c) for c in cs] for name, cs in calls.items()}
        drills = {name: history.last_drill(name) for name in names}
        stuck = history.stuck_runs(STUCK_AFTER, now)
        rows = {name: [r for f in fs for r in f.result()] for name, fs in futures.items()}
    status = SiteStatus(now, stuck=stuck, history_error=history.unreadable())
    for name in names:
        customer = site.customers[name]
        cs = CustomerStatus(name, tier_timezone(customer), rows[name], drills[name])
        for row in cs.rows:
            _recall(row, history, cs.timezone)
            judge_row(row, customer, now)
        cold = [r for r in cs.rows if r.tier == "cold"]
        if cold:
            judge_rotation(cold, customer, now)
        judge_drill(cs, cs.rows[0], now)
        status.customers.append(cs)
    return status


def _recall(row: TierRow, history: OpsHistory, zone: str) -> None:
    """What the Dagster history adds to a row read now: its tier's last `restic check`, and
    for a peer that cannot be reached the last set pushed there (in the customer's zone)."""
    row.check = history.last_check(row.customer, row.tier,
                                   row.where if row.tier == "ring" else None)
    if row.repository and (damage := recorded_damage(row.repository)):
        row.problem("DAMAGED", damage)  # seen by a read-back or restore (damage.py)
    if row.state == "UNREACHABLE" and (last := history.last_push(row.customer, row.where)):
        row.note = f"last push recorded: set of {last.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M}"
