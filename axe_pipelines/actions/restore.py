"""`axe restore` as a plain function, shared by the CLI and the Dagster `restore` job: by
customer, tier, as-of, target database, single table or folder, with dry run and undo.

Rules it keeps:
- Nothing good is destroyed. A database is restored into a new database which is swapped in
  by renaming (the old one stays as `<db>_before_restore_<stamp>`; the output prints the one
  command that undoes the swap). A table is replaced inside one transaction. A folder goes
  into a new folder beside the original unless `in_place`.
- Before anything changes, the archive is read with `pg_restore -l`, so a pg_restore older
  than the dump's format fails with one line and nothing touched.
- After every restore the integrity checks run and their table is reported: row-count and
  SQL checks on the restored copy before the swap (they decide it); post-restore commands and
  command checks after it (a command may reach the live database through an application).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

from axe_pipelines.actions.integrity import find_last_valid
from axe_pipelines.actions.restore_early import EarlyFetch
from axe_pipelines.actions.restore_items import (
    ItemContext,
    Say,
    Step,
    Steps,
    TargetKind,
    TargetReport,
    after_restore,
    quiet,
    restore_database,
    restore_folder,
    restore_roles,
    restore_table,
)
from axe_pipelines.actions.selection import (
    RestoreError,
    Target,
    as_of_moment,
    choose_set,
    load_sets,
    member,
    open_source,
    pick_member,
    resolve_database,
    resolve_target,
    scratch_dir,
    server_databases,
    snapshot_size,
    tier_label,
)
from axe_pipelines.actions.table_lookup import locate_table
from axe_pipelines.config import Customer, IntegrityCommand, Site, tier_timezone
from axe_pipelines.integrity import NO_HISTORY, CheckResult, DumpHistory, check_names
from axe_pipelines.postgres.client import PostgresError, connection_for, first_line
from axe_pipelines.postgres.restore import describe_database, swap_back
from axe_pipelines.postgres.table import describe_table
from axe_pipelines.progress import human_bytes
from axe_pipelines.restic import Restic, ResticError, Snapshot
from axe_pipelines.safe_paths import remove_tree
from axe_pipelines.sets import BackupSet, newest_holding

LAST_VALID = "last-valid"
SNAPSHOT_KIND = {"roles": "roles", "database": "pgdump", "table": "pgdump", "folder": "files"}


@dataclass
class RestoreOptions:
    """What the operator asked for; mirrors `axe restore`'s flags and the job's Config."""

    customer: str
    tier: str | None = None
    source: str | None = None  # --from: a tier word or a ring peer
    as_of: str = "latest"
    target: str | None = None
    table: str | None = None
    dry_run: bool = False
    force: bool = False
    in_place: bool = False
    dest: str | None = None  # folder restore: where to put it
    check: str | None = None  # with as_of=last-valid: the check that must pass
    jobs: int = 2
    lock_timeout: float = 10.0  # table restore: seconds to wait for the table's lock
    pitr: bool = False  # replay WAL to --as-of (actions/restore_pitr.py)


@dataclass
class RestoreReport:
    """What a restore did: the set it used, one TargetReport per member, the timed steps,
    the plan (dry run) and the last-valid probes."""

    customer: str
    tier: str
    peer: str | None
    set_time: datetime
    run_id: str
    dry_run: bool
    targets: list[TargetReport] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)  # last-valid probes

    @property
    def checks(self) -> list[CheckResult]:
        """Every target's checks, in order."""
        return [c for t in self.targets for c in t.checks]

    @property
    def failed(self) -> list[TargetReport]:
        """The targets that failed (a whole-set restore goes on past them)."""
        return [t for t in self.targets if t.error]

    @property
    def ok(self) -> bool:
        """Whether every target was restored and every check passed."""
        return not self.failed and all(c.passed for c in self.checks)


def run_restore(config: Site, opts: RestoreOptions, *, history: DumpHistory = NO_HISTORY,
                say: Say = print, on_line: Say = quiet,
                now: datetime | None = None) -> RestoreReport:
    """Given the site and the options, pick what to restore — for `--as-of`, per item: each
    database, folder and server's roles from the newest set at or before that time holding a
    good snapshot of it (a night that failed an item leaves it to an earlier set); for
    last-valid, the newest snapshot passing the check — then restore the target database,
    table or folder, or with no target every item (roles first), and return the report.
    `--table` without `--target` finds the database whose dump holds the table; `history`
    gives the dump-time row counts the restore is compared with. With `dry_run` say the plan
    and change nothing.

    Raise RestoreError, PostgresError or ResticError if a single target fails (or has no
    snapshot: the message lists the --as-of values that would work). With no target every
    item is tried; a failing or missing one is recorded in its TargetReport (`error`) and the
    rest go on, so the undo commands of those already swapped are never lost."""
    customer = config.customer(opts.customer)
    target = _check_options(customer, opts)
    from axe_pipelines.actions.restore_pitr import run_pitr, wants_pitr  # it imports this one

    if wants_pitr(config, opts):
        return run_pitr(config, opts, history=history, say=say)
    tier, peer, restic = open_source(config, opts.customer, opts.tier, opts.source)
    # One database as it is now: fetch its newest dump beside the listing (restore_early.py).
    # A table reads only what it needs of the picked dump instead (table_stream.py).
    early = EarlyFetch(restic, opts.customer, customer, target.name) if (
        opts.as_of == "latest" and not opts.dry_run and target is not None
        and target.kind == "database" and not opts.table) else None  # a table streams
    try:
        return _restore_from(config, opts, customer, target, (tier, peer, restic), early,
                             history=history, say=say, on_line=on_line, now=now)
    finally:
        if early is not None:
            early.close()


def _restore_from(config: Site, opts: RestoreOptions, customer: Customer, target: Target | None,
                  source: tuple[str, str | None, Restic], early: EarlyFetch | None, *,
                  history: DumpHistory, say: Say, on_line: Say,
                  now: datetime | None) -> RestoreReport:
    tier, peer, restic = source
    tz = tier_timezone(customer)
    zone = ZoneInfo(tz)
    where = f"{tier_label(tier, peer)} of {opts.customer}"
    sets = load_sets(restic, opts.customer, where)
    moment = None if opts.as_of == LAST_VALID else as_of_moment(opts.as_of, tz)
    if opts.table and target is None:
        # Which database: each one's dump as the restore would pick it (for last-valid, the
        # newest: tables rarely move between databases).
        dumps = {db: found.snapshot for db in customer.databases
                 if (found := _pick(sets, moment, "pgdump", db)) is not None}
        with scratch_dir() as wd:
            target = Target("database", locate_table(
                opts.customer, customer, dumps, opts.table, restic, workdir=wd, say=say,
                where=where, history=history))
    search: list[str] = []
    if moment is None:
        if target is None or target.kind != "database":
            raise RestoreError("--as-of last-valid needs --target DATABASE (or --table) and "
                               "--check NAME (a check configured for it, or row-counts)")
        assert opts.check is not None
        the_set, search = find_last_valid(opts.customer, customer, target.name, opts.check,
                                          sets, restic, say=say, where=where, history=history)
        picks = [Pick("table" if opts.table else "database", target.name, the_set,
                      member(the_set, "pgdump", target.name, where))]
    else:
        the_set = choose_set(sets, opts.as_of, tz, where)
        picks = _picks(customer, sets, moment, target, opts, where)
    report = RestoreReport(opts.customer, tier, peer, the_set.time, the_set.run_id,
                           opts.dry_run, search=search)
    age = (now or datetime.now(zone)) - the_set.time
    say(f"set {the_set.run_id[:12]} of {the_set.time.astimezone(zone):%Y-%m-%d %H:%M:%S %Z} "
        f"from {where} (age {_age(age.total_seconds())})")
    for p in picks:
        if p.source is not None and p.source.run_id != the_set.run_id:
            say(f"{p.kind} {p.name}: not in that set; from the set of "
                f"{p.source.time.astimezone(zone):%Y-%m-%d %H:%M:%S %Z} (run "
                f"{p.source.run_id[:12]}), its newest at or before --as-of")
        report.plan.append(_plan_line(p, opts, tier_label(tier, peer), zone))
    ctx = ItemContext(opts.customer, customer, restic, Steps(say, report.steps), say, history,
                      on_line, config.path,
                      prefetched=(lambda snap: early.take(snap, sets)) if early else None)
    if opts.dry_run:
        _dry_run(ctx, opts, picks, report)
    else:
        _restore_all(ctx, opts, picks, report, zone,
                     whole_set=target is None or target.kind == "server")
    return report


@dataclass(frozen=True)
class Pick:
    """Where one item of a restore comes from: the set and snapshot, or why there is none."""

    kind: str  # roles, database, table, folder
    name: str
    source: BackupSet | None = None
    snapshot: Snapshot | None = None
    error: str = ""


def _pick(sets: list[BackupSet], moment: datetime | None, kind: str, name: str) -> Pick | None:
    """The newest set at or before `moment` (None: any) holding the item, as a Pick."""
    found = newest_holding(sets, kind, name, moment)
    snap = found.member(kind, name) if found else None
    return Pick(kind, name, found, snap) if found and snap else None


def _picks(customer: Customer, sets: list[BackupSet], moment: datetime,
           target: Target | None, opts: RestoreOptions, where: str) -> list[Pick]:
    """Every item to restore, in restore order (roles first), each from its newest set at or
    before `moment`. A single target without one raises RestoreError; in a whole-set restore
    a missing item is a Pick with its `error`, and the others go on."""
    if target is None:
        servers = sorted({d.server for d in customer.databases.values()})
        work = [*(("roles", s) for s in servers if _pick(sets, moment, "roles", s)),
                *(("database", d) for d in customer.databases),
                *(("folder", f) for f in customer.folders)]
    elif target.kind == "database":
        work = [("table" if opts.table else "database", target.name)]
    elif target.kind == "server":  # the server's roles, then every database on it
        work = [*((("roles", target.name),) if _pick(sets, moment, "roles", target.name)
                  else ()), *(("database", d) for d in server_databases(customer)[target.name])]
    else:
        work = [("folder", target.name)]
    picks = []
    for kind, name in work:
        try:
            source, snap = pick_member(sets, moment, SNAPSHOT_KIND[kind], name, where)
        except RestoreError as exc:
            if target is not None and target.kind != "server":
                raise
            picks.append(Pick(kind, name, error=str(exc).removesuffix("; nothing was changed")))
            continue
        picks.append(Pick(kind, name, source, snap))
    return picks


def _plan_line(p: Pick, opts: RestoreOptions, label: str, zone: ZoneInfo) -> str:
    what = f"{p.kind} {opts.table + ' of ' if p.kind == 'table' else ''}{p.name}"
    if p.snapshot is None or p.source is None:
        return f"{what}: nothing to restore: {p.error}"
    return (f"{what}: set {p.source.run_id[:12]}, snapshot {p.snapshot.short_id} ({label}, "
            f"{p.snapshot.time.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}, "
            f"{_size(snapshot_size(p.snapshot))})")


def _check_options(customer: Customer, opts: RestoreOptions) -> Target | None:
    """The target, after refusing option combinations that cannot work."""
    if not customer.backs_up:
        raise RestoreError(f"{opts.customer} has no tiers.local; nothing to restore")
    target = resolve_target(opts.customer, customer, opts.target) if opts.target else None
    if opts.table and target is not None and target.kind != "database":
        raise RestoreError(f"--table needs a database; {opts.target} is a {target.kind}")
    if opts.as_of == LAST_VALID and not opts.check:
        db_names = [target.name] if target and target.kind == "database" else \
            list(customer.databases)
        known = "; ".join(f"{n}: {', '.join(check_names(customer.databases[n]))}"
                          for n in db_names)
        raise RestoreError(f"--as-of last-valid needs --check NAME, the check the good "
                           f"snapshot must pass (checks: {known}); or find the time with "
                           f"`axe find-last-valid` and give it to --as-of")
    return target


def _restore_one(ctx: ItemContext, opts: RestoreOptions, p: Pick, sub: Path) -> TargetReport:
    assert p.snapshot is not None
    if p.kind == "roles":
        return restore_roles(ctx, p.name, p.snapshot, sub)
    if p.kind == "database":
        return restore_database(ctx, p.name, p.snapshot, sub, force=opts.force, jobs=opts.jobs)
    if p.kind == "table":
        return restore_table(ctx, p.name, opts.table or "", p.snapshot, sub,
                             lock_timeout=opts.lock_timeout)
    return restore_folder(ctx, p.name, p.snapshot, in_place=opts.in_place, dest=opts.dest)


def _restore_all(ctx: ItemContext, opts: RestoreOptions, picks: list[Pick],
                 report: RestoreReport, zone: ZoneInfo, *, whole_set: bool) -> None:
    with scratch_dir() as workdir:
        for p in picks:
            kind = cast(TargetKind, p.kind)
            if p.snapshot is None or p.source is None:
                ctx.say(f"{p.kind} {p.name}: FAILED: {p.error}")
                report.targets.append(TargetReport(kind, p.name, "", error=p.error))
                continue
            sub = workdir / f"{p.kind}-{p.name}"
            sub.mkdir()
            try:
                result = _restore_one(ctx, opts, p, sub)
            except (RestoreError, PostgresError, ResticError) as exc:
                if not whole_set:
                    raise
                message = first_line(exc)
                ctx.say(f"{p.kind} {p.name}: FAILED: {message}")
                report.targets.append(TargetReport(kind, p.name, p.snapshot.id, error=message))
                continue
            finally:
                remove_tree(sub, inside=workdir)
            result.detail += f" (set of {p.source.time.astimezone(zone):%Y-%m-%d %H:%M %Z})"
            report.targets.append(result)
            if p.kind in ("database", "table"):
                after_restore(ctx, p.name, result)


def _dry_run(ctx: ItemContext, opts: RestoreOptions, picks: list[Pick],
             report: RestoreReport) -> None:
    say, customer = ctx.say, ctx.customer
    silent = replace(ctx, steps=Steps(quiet), say=quiet)
    say("dry run: nothing will be changed")
    for p, line in zip(picks, report.plan, strict=True):
        kind, name, snap = p.kind, p.name, p.snapshot
        if snap is None:
            say(f"  would skip {line}")
            continue
        say(f"  would restore {line}")
        if kind == "database":
            conn = connection_for(customer, name)
            say(f"    would replace {describe_database(conn)}")
            say(f"    steps: fetch the dump; check it with pg_restore -l; create "
                f"{conn.dbname}_restoring_<stamp> with the current database's encoding, "
                f"locale and owner; restore into it; run the row-count and SQL checks; give it "
                f"the current settings, grants and comment; rename {conn.dbname} to "
                f"{conn.dbname}_before_restore_<stamp> and the new one to {conn.dbname}")
        elif kind == "table":
            with scratch_dir() as wd:
                t = restore_table(silent, name, opts.table or "", snap, wd, dry_run=True)
            conn = connection_for(customer, name)
            say(f"    would replace table {t.name} of {conn.dbname} "
                f"(now {describe_table(conn, t.name)}): {t.detail}")
        elif kind == "folder":
            t = restore_folder(replace(ctx, say=quiet), name, snap, in_place=opts.in_place,
                               dest=opts.dest, dry_run=True)
            say(f"    would restore folder {t.detail}")
        else:
            say(f"    would create the roles of server {name} that are missing (existing "
                f"roles and their passwords kept)")
        if kind in ("database", "table"):
            db = customer.databases[name]
            commands = [c.name for c in db.integrity if isinstance(c, IntegrityCommand)]
            sql = [n for n in check_names(db) if n not in commands]
            say(f"    then checks: {', '.join(sql)}"
                + (f"; post-restore: {'; '.join(' '.join(c) for c in db.post_restore)}"
                   if db.post_restore else "")
                + (f"; then command checks: {', '.join(commands)}" if commands else ""))


def _age(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"


def _size(n: int) -> str:
    return human_bytes(n) if n else "size unknown"


# --- undo --------------------------------------------------------------------------------------


def undo_restore(config: Site, customer_name: str, target: str, tag: str, *,
                 say: Say = print) -> str:
    """Given `axe restore --undo <stamp>`, swap `<db>_before_restore_<stamp>` back in as
    `<db>` and keep the restored copy as `<db>_restored_<stamp>`. Clients reconnect after a
    restore, and a database with sessions cannot be renamed, so this closes the database to
    new connections, terminates the open ones, renames in one transaction and opens both
    again. Return the outcome line. Raise RestoreError or PostgresError (nothing changed) if
    the target is no database, or there is no such kept copy, or the swap fails."""
    customer = config.customer(customer_name)
    db_name = resolve_database(customer_name, customer, target, "--undo is for database "
                               "restores")
    where = f"database {db_name}"
    line = swap_back(connection_for(customer, db_name), tag, where=where, say=say)
    say(f"{where}: {line}")
    return line
