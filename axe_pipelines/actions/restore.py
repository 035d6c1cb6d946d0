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
    choose_set,
    fetch_file,
    load_sets,
    member,
    open_source,
    resolve_database,
    resolve_target,
    scratch_dir,
    server_databases,
    snapshot_size,
    tier_label,
)
from axe_pipelines.config import Customer, IntegrityCommand, Site, tier_timezone
from axe_pipelines.integrity import NO_HISTORY, CheckResult, DumpHistory, check_names
from axe_pipelines.postgres.client import PostgresError, connection_for, first_line
from axe_pipelines.postgres.restore import describe_database, read_toc, swap_back
from axe_pipelines.postgres.table import describe_table
from axe_pipelines.progress import human_bytes
from axe_pipelines.restic import Restic, ResticError
from axe_pipelines.safe_paths import remove_tree
from axe_pipelines.sets import BackupSet

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
    """Given the site and the options, pick the set (as-of, or last-valid with a check), then
    restore the target database, table or folder — or, with no target, every member of the
    set (roles first) — and return the report. `--table` without `--target` finds the
    database whose dump holds the table; `history` gives the dump-time row counts the restore
    is compared with. With `dry_run` say the plan and change nothing.

    Raise RestoreError, PostgresError or ResticError if a single target fails. With no target
    every member is tried; a failing one is recorded in its TargetReport (`error`) and the
    rest go on, so the undo commands of those already swapped are never lost."""
    customer = config.customer(opts.customer)
    target = _check_options(customer, opts)
    tz = tier_timezone(customer)
    tier, peer, restic = open_source(config, opts.customer, opts.tier, opts.source)
    where = f"{tier_label(tier, peer)} of {opts.customer}"
    sets = load_sets(restic, opts.customer, where)
    if opts.table and target is None:
        # Which database: looked up in the set the restore would use (for last-valid, the
        # newest: tables rarely move between databases).
        probe = sets[-1] if opts.as_of == LAST_VALID and sets else choose_set(
            sets, opts.as_of, tz, where)
        with scratch_dir() as wd:
            target = Target("database", locate_table(
                opts.customer, customer, probe, opts.table, restic, workdir=wd, say=say,
                where=where, history=history))
    search: list[str] = []
    if opts.as_of == LAST_VALID:
        if target is None or target.kind != "database":
            raise RestoreError("--as-of last-valid needs --target DATABASE (or --table) and "
                               "--check NAME (a check configured for it, or row-counts)")
        assert opts.check is not None
        the_set, search = find_last_valid(opts.customer, customer, target.name, opts.check,
                                          sets, restic, say=say, where=where, history=history)
    else:
        the_set = choose_set(sets, opts.as_of, tz, where)
    report = RestoreReport(opts.customer, tier, peer, the_set.time, the_set.run_id,
                           opts.dry_run, search=search)
    zone = ZoneInfo(tz)
    age = (now or datetime.now(zone)) - the_set.time
    say(f"set {the_set.run_id[:12]} of {the_set.time.astimezone(zone):%Y-%m-%d %H:%M:%S %Z} "
        f"from {where} (age {_age(age.total_seconds())})")
    work = _work(customer, the_set, target, opts)
    for kind, name in work:
        snap = member(the_set, SNAPSHOT_KIND[kind], name, where)
        report.plan.append(
            f"{kind} {opts.table + ' of ' if kind == 'table' else ''}{name}: snapshot "
            f"{snap.short_id} ({tier_label(tier, peer)}, "
            f"{snap.time.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}, {_size(snapshot_size(snap))})")
    ctx = ItemContext(opts.customer, customer, restic, Steps(say, report.steps), say, history,
                      on_line, config.path)
    if opts.dry_run:
        _dry_run(ctx, opts, the_set, work, report, where)
    else:
        _restore_all(ctx, opts, the_set, work, report, where,
                     whole_set=target is None or target.kind == "server")
    return report


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


def _work(customer: Customer, the_set: BackupSet, target: Target | None,
          opts: RestoreOptions) -> list[tuple[str, str]]:
    """(kind, name) of every item to restore, in restore order: roles first."""
    if target is None:
        servers = sorted({d.server for d in customer.databases.values()})
        return [*(("roles", s) for s in servers if the_set.member("roles", s)),
                *(("database", d) for d in customer.databases),
                *(("folder", f) for f in customer.folders)]
    if target.kind == "database":
        return [("table" if opts.table else "database", target.name)]
    if target.kind == "server":  # the server's roles, then every database on it
        return [*((("roles", target.name),) if the_set.member("roles", target.name) else ()),
                *(("database", d) for d in server_databases(customer)[target.name])]
    return [("folder", target.name)]


def _restore_all(ctx: ItemContext, opts: RestoreOptions, the_set: BackupSet,
                 work: list[tuple[str, str]], report: RestoreReport, where: str, *,
                 whole_set: bool) -> None:
    with scratch_dir() as workdir:
        for kind, name in work:
            snap = member(the_set, SNAPSHOT_KIND[kind], name, where)
            sub = workdir / f"{kind}-{name}"
            sub.mkdir()
            try:
                if kind == "roles":
                    result = restore_roles(ctx, name, snap, sub)
                elif kind == "database":
                    result = restore_database(ctx, name, snap, sub, force=opts.force,
                                              jobs=opts.jobs)
                elif kind == "table":
                    result = restore_table(ctx, name, opts.table or "", snap, sub,
                                           lock_timeout=opts.lock_timeout)
                else:
                    result = restore_folder(ctx, name, snap, in_place=opts.in_place,
                                            dest=opts.dest)
            except (RestoreError, PostgresError, ResticError) as exc:
                if not whole_set:
                    raise
                message = first_line(exc)
                ctx.say(f"{kind} {name}: FAILED: {message}")
                report.targets.append(TargetReport(cast(TargetKind, kind), name, snap.id,
                                                   error=message))
                continue
            finally:
                remove_tree(sub, inside=workdir)
            report.targets.append(result)
            if kind in ("database", "table"):
                after_restore(ctx, name, result)


def _dry_run(ctx: ItemContext, opts: RestoreOptions, the_set: BackupSet,
             work: list[tuple[str, str]], report: RestoreReport, where: str) -> None:
    say, customer = ctx.say, ctx.customer
    silent = replace(ctx, steps=Steps(quiet), say=quiet)
    say("dry run: nothing will be changed")
    for (kind, name), line in zip(work, report.plan, strict=True):
        say(f"  would restore {line}")
        snap = member(the_set, SNAPSHOT_KIND[kind], name, where)
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


# --- --table without --target ------------------------------------------------------------------


def split_qualified(text: str) -> tuple[str, str]:
    """Given a table name as typed or as pg_dump writes it (`public.journal_line`,
    `journal_line`, `"My Schema"."T.x"`), return (schema or "", name), unquoted."""
    parts: list[str] = []
    current, quoted, i = "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and text[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return (parts[-2] if len(parts) > 1 else ""), parts[-1]


def table_matches(wanted: str, schema: str, name: str) -> bool:
    """Given `--table` and a table's schema and name, return whether it names that table."""
    w_schema, w_name = split_qualified(wanted)
    return w_name == name and (not w_schema or w_schema == schema)


def locate_table(customer_name: str, customer: Customer, the_set: BackupSet, table: str,
                 restic: Restic, *, workdir: Path, say: Say, where: str,
                 history: DumpHistory = NO_HISTORY) -> str:
    """Given a set and `--table` without `--target`, return the one database whose dump holds
    the table (from the row counts `history` recorded for the dump's snapshot, else from the
    dump's own table of contents). Raise RestoreError listing the candidates if none or
    several hold it."""
    candidates: list[str] = []
    searched: list[str] = []
    for db_name, db in customer.databases.items():
        snap = the_set.member("pgdump", db_name)
        if snap is None:
            continue
        searched.append(db_name)
        counts = history.counts_for(customer_name, db_name, snap.id)
        if counts is not None:
            tables = [split_qualified(key) for key in counts]
        elif db.format == "custom":
            sub = workdir / f"locate-{db_name}"
            sub.mkdir(exist_ok=True)
            entries, _ = read_toc(fetch_file(restic, snap, sub), where=f"database {db_name}")
            tables = [(e.schema, e.name) for e in entries if e.desc == "TABLE"]
            remove_tree(sub, inside=workdir)
        else:
            continue  # a plain dump cannot give one table back anyway
        if any(table_matches(table, sch, name) for sch, name in tables):
            candidates.append(db_name)
    if len(candidates) == 1:
        say(f"table {table} is in database {candidates[0]} (the only dump of the set holding "
            f"it)")
        return candidates[0]
    if not candidates:
        raise RestoreError(f"no database dump in the set of {the_set.time:%Y-%m-%d %H:%M} "
                           f"({where}) holds a table {table!r} (searched: "
                           f"{', '.join(searched) or 'none'}); check the name or pass "
                           f"--target; nothing was changed")
    raise RestoreError(f"table {table!r} is in more than one database ("
                       f"{', '.join(candidates)}); say which with --target; nothing was "
                       f"changed")


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
