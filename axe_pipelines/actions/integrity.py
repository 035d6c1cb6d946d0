"""`axe integrity-check` and `axe find-last-valid` as plain functions: a dump restored into a
throwaway staging PostgreSQL (or, with `--live`, the live database) and checked; and the
binary search for the newest set whose dump passes a check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from axe_pipelines.actions.selection import (
    RestoreError,
    as_of_moment,
    choose_set,
    fetch_file,
    load_sets,
    member,
    open_source,
    pick_member,
    resolve_database,
    scratch_dir,
    tier_label,
)
from axe_pipelines.config import Customer, Site, tier_timezone
from axe_pipelines.integrity import (
    CHECKSUM_TABLES,
    NO_HISTORY,
    CheckResult,
    DumpHistory,
    check_names,
    digest_check,
    expected_counts,
    recorded_counts_soon,
    recorded_digests,
    run_checks,
)
from axe_pipelines.postgres.client import connection_for
from axe_pipelines.postgres.cluster import Staging
from axe_pipelines.postgres.dump import read_dump
from axe_pipelines.postgres.restore import read_toc
from axe_pipelines.restic import Restic, Snapshot
from axe_pipelines.set_meta import SetMetaHistory
from axe_pipelines.sets import BackupSet, parse_as_of

Say = Callable[[str], None]


def stage_and_check(customer_name: str, customer: Customer, db_name: str, snap: Snapshot,
                    restic: Restic, staging: Staging, *, only: Sequence[str] | None = None,
                    label: str = "", history: DumpHistory = NO_HISTORY) -> list[CheckResult]:
    """Given a dump snapshot and a running staging server, restore the dump into a new
    database there (owners and grants dropped: staging has no roles), run the checks (`only`
    those names, when given) and return their results; a failed load is a failed `restore`
    check. Raise RestoreError or PostgresError if the dump cannot be fetched or read."""
    db = customer.databases[db_name]
    with scratch_dir() as workdir:
        recorded = recorded_counts_soon(history, customer_name, db_name, snap.id)
        dump_file = fetch_file(restic, snap, workdir)
        if db.format == "custom":
            read_toc(dump_file, where=f"database {db_name} ({snap.short_id})")
        expected, source = expected_counts(
            recorded, lambda: read_dump(dump_file, fmt=db.format).tables)
        name = f"{customer.database_name(db_name)}_{snap.short_id}{label}"[:63]
        conn, problems = staging.load(name, dump_file, db.format)
        results = run_checks(conn, db, expected_counts=expected, only=only,
                             counts_source=source)
        if db.checksum_tables and (only is None or CHECKSUM_TABLES in only):
            # Copies in tiers B and C keep the tier-A snapshot id as `original`.
            recorded = recorded_digests(history, customer_name, db_name, snap.original or snap.id)
            after_counts = int(bool(results) and results[0].kind == "builtin")
            results.insert(after_counts, digest_check(conn, db.checksum_tables, recorded))
        if problems:
            results.insert(0, CheckResult("restore", "builtin", False,
                                          f"pg_restore reported: {problems}"))
        staging.drop(name)
        return results


def find_last_valid(customer_name: str, customer: Customer, db_name: str, check: str,
                    sets: list[BackupSet], restic: Restic, *, say: Say = print,
                    where: str = "", staging: Staging | None = None,
                    history: DumpHistory = NO_HISTORY) -> tuple[BackupSet, list[str]]:
    """Given the sets and a check of `db_name`, return (the newest set whose dump passes it,
    one line per probe), found by binary search (silent corruption, once in, stays in later
    snapshots): the newest set first, then halving — about log2(n) staging restores instead
    of n. Raise RestoreError if the check is unknown, no set holds a dump, or none passes."""
    names = check_names(customer.databases[db_name])
    if check not in names:
        raise RestoreError(f"database {db_name} has no check {check!r} (checks: "
                           f"{', '.join(names)})")
    candidates = [s for s in sets if s.member("pgdump", db_name)]
    if not candidates:
        raise RestoreError(f"{where} holds no dump of {db_name}")
    probes: list[str] = []

    def passes(i: int, stage: Staging) -> bool:
        snap = candidates[i].member("pgdump", db_name)
        assert snap is not None
        results = stage_and_check(customer_name, customer, db_name, snap, restic, stage,
                                  only=[check],
                                  history=SetMetaHistory(history, restic, candidates))
        ok = bool(results) and all(r.passed for r in results)
        line = (f"{candidates[i].time:%Y-%m-%d %H:%M} ({snap.short_id}): "
                f"{'passes' if ok else 'fails'} {check}"
                + ("" if ok else f" ({'; '.join(r.detail for r in results if not r.passed)})"))
        say(f"last-valid: {line}")
        probes.append(line)
        return ok

    def search(stage: Staging) -> BackupSet:
        last = len(candidates) - 1
        if passes(last, stage):
            return candidates[last]
        lo, hi = -1, last  # candidates[hi] fails; everything above lo is unknown or failing
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes(mid, stage):
                lo = mid
            else:
                hi = mid
        if lo < 0:
            raise RestoreError(f"no set in {where} passes {check} for {db_name} (searched "
                               f"{len(probes)} of {len(candidates)} sets); nothing was changed")
        return candidates[lo]

    if staging is not None:
        found = search(staging)
    else:
        with Staging() as stage:
            found = search(stage)
    say(f"last-valid: {found.time:%Y-%m-%d %H:%M} after {len(probes)} of "
        f"{len(candidates)} set(s) tested")
    return found, probes


@dataclass
class IntegrityReport:
    """What `axe integrity-check` found: the snapshot checked, where, and the check table."""

    customer: str
    tier: str
    target: str
    snapshot_id: str
    set_time: datetime
    live: bool
    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(c.passed for c in self.checks)


def run_integrity_check(config: Site, customer_name: str, target: str, *,
                        as_of: str = "latest", tier: str | None = None,
                        source: str | None = None, live: bool = False,
                        only: Sequence[str] | None = None, say: Say = print,
                        history: DumpHistory = NO_HISTORY) -> IntegrityReport:
    """Given `axe integrity-check`'s options, restore the target's dump of the chosen set into
    a throwaway staging server and run the checks there (`only` those names, when given);
    with `live`, run the SQL checks on the live database instead. Return the report. Raise
    RestoreError if the target, a check, the tier or the set does not exist."""
    customer = config.customer(customer_name)
    db_name = resolve_database(customer_name, customer, target,
                               "integrity checks are for databases")
    db = customer.databases[db_name]
    unknown = [c for c in only or () if c not in check_names(db)]
    if unknown:
        raise RestoreError(f"database {db_name} has no check {unknown[0]!r} (checks: "
                           f"{', '.join(check_names(db))})")
    tier_name, peer, restic = open_source(config, customer_name, tier, source)
    where = f"{tier_label(tier_name, peer)} of {customer_name}"
    sets, tz = load_sets(restic, customer_name, where), tier_timezone(customer)
    choose_set(sets, as_of, tz, where)  # no set at all at or before: the range that exists
    # Per item: a night that failed this database leaves it to an earlier set.
    the_set, snap = pick_member(sets, as_of_moment(as_of, tz), "pgdump", db_name, where)
    say(f"snapshot {snap.short_id} of {db_name} from set {the_set.time:%Y-%m-%d %H:%M} "
        f"({where})")
    if live:
        checks = run_checks(connection_for(customer, db_name), db, expected_counts=None,
                            only=only, sql_only=True)
    else:
        say("starting a staging PostgreSQL …")
        with Staging() as staging:
            checks = stage_and_check(customer_name, customer, db_name, snap, restic, staging,
                                     only=only,
                                     history=SetMetaHistory(history, restic, [the_set]))
    return IntegrityReport(customer_name, tier_name, db_name, snap.id, the_set.time, live,
                           checks)


@dataclass
class LastValid:
    """What `axe find-last-valid` found: the tier searched, the set, its dump snapshot, the
    probe lines and how many sets there were to search."""

    tier: str
    found: BackupSet
    snapshot: Snapshot
    probes: list[str]
    sets: int


def run_find_last_valid(config: Site, customer_name: str, target: str, check: str, *,
                        tier: str | None = None, source: str | None = None,
                        before: str | None = None, say: Say = print,
                        history: DumpHistory = NO_HISTORY) -> LastValid:
    """Given `axe find-last-valid`'s options, search the tier's sets (those at or before
    `before`, when given) for the newest whose dump of the target passes `check` (see
    find_last_valid) and return it. Raise RestoreError if the target is no database, or the
    tier, a dump or a passing set is missing."""
    customer = config.customer(customer_name)
    db_name = resolve_database(customer_name, customer, target, "last-valid needs a database")
    tier_name, peer, restic = open_source(config, customer_name, tier, source)
    where = f"{tier_label(tier_name, peer)} of {customer_name}"
    sets = load_sets(restic, customer_name, where)
    if before:
        limit = parse_as_of(before, tier_timezone(customer))
        sets = [s for s in sets if s.time <= limit]
    found, probes = find_last_valid(customer_name, customer, db_name, check, sets, restic,
                                    say=say, where=where, history=history)
    return LastValid(tier_name, found, member(found, "pgdump", db_name, where), probes,
                     len(sets))
