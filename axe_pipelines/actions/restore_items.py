"""Restoring one member of a set — a database, one table, a server's roles, a folder — and
what follows it (post-restore commands, command checks), each returning a TargetReport.

The PostgreSQL mechanics are in postgres/; this module fetches the snapshot, decides the
counts to compare with, runs the checks and words the outcome.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from axe_pipelines.actions.selection import RestoreError, dump_path, fetch_file
from axe_pipelines.actions.table_stream import DumpStream
from axe_pipelines.config import Customer, IntegrityCommand, tier_timezone
from axe_pipelines.damage import explain_damage
from axe_pipelines.integrity import (
    CheckResult,
    DumpHistory,
    Recorded,
    expected_counts,
    recorded_counts_soon,
    run_checks,
)
from axe_pipelines.postgres import restore as pg_restore
from axe_pipelines.postgres import table as pg_table
from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    connection_for,
    first_line,
    server_connection,
)
from axe_pipelines.postgres.dump import read_dump
from axe_pipelines.postgres.properties import Properties, properties_soon
from axe_pipelines.postgres.roles import existing_roles, missing_roles_script, run_roles_script
from axe_pipelines.restic import RepositoryDamaged, Restic, ResticError, Snapshot

Say = Callable[[str], None]
TargetKind = Literal["database", "table", "folder", "roles"]


def quiet(_: str) -> None:
    """Given a line, say nothing (the default `say` and `on_line`)."""


@dataclass
class Step:
    """One timed step of a restore, as the report lists it."""

    name: str
    seconds: float


class Steps:
    """Says each step as it starts and records how long it took (into `record`)."""

    def __init__(self, say: Say, record: list[Step] | None = None):
        self.say = say
        self.record = record

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Given a step's name, say it, time the block and record it."""
        self.say(f"{name} …")
        started = time.monotonic()
        try:
            yield
        finally:
            if self.record is not None:
                self.record.append(Step(name, time.monotonic() - started))


@dataclass
class TargetReport:
    """The outcome for one database, table, folder or server's roles."""

    kind: TargetKind
    name: str
    snapshot_id: str
    changed: bool = False
    detail: str = ""
    undo: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    post_restore: list[str] = field(default_factory=list)
    error: str | None = None  # set when this target failed (a whole-set restore goes on)


@dataclass
class ItemContext:
    """What every item restore of one run shares."""

    customer_name: str
    customer: Customer
    restic: Restic
    steps: Steps
    say: Say
    history: DumpHistory
    on_line: Say = quiet
    config_path: Path | None = None
    # Given the picked dump snapshot, its file when it was fetched already (restore_early).
    prefetched: Callable[[Snapshot], Path | None] | None = None

    def fetch(self, snap: Snapshot, workdir: Path) -> Path:
        """Given a dump snapshot, return its file: the one fetched early when that is this
        snapshot's, else restored into `workdir` now (fetch_file)."""
        early = self.prefetched(snap) if self.prefetched else None
        return early or fetch_file(self.restic, snap, workdir)


def undo_command(customer_name: str, db_name: str, tag: str,
                 config_path: Path | None = None) -> str:
    """Given a database restore's stamp, return the one command that puts the previous
    database back (`axe restore --undo`)."""
    return shlex.join(["axe", *(["--config", str(config_path)] if config_path else []),
                       "restore", "--customer", customer_name, "--target", db_name,
                       "--undo", tag])


def restore_database(ctx: ItemContext, db_name: str, snap: Snapshot, workdir: Path, *,
                     force: bool, jobs: int) -> TargetReport:
    """Given a database and its dump snapshot, restore it into a new database, check it with
    the row-count and SQL checks (the dump-time counts when the history has them) and swap
    it in (postgres.restore.restore_database); return the report with the undo command.
    Command checks are not run here: they may reach the live database through an
    application, so after_restore runs them after the swap. Raise PostgresError or
    RestoreError (the original untouched) if any step before the swap fails."""
    db = ctx.customer.databases[db_name]
    conn = connection_for(ctx.customer, db_name)
    where = f"database {db_name}"
    exists = pg_restore.check_sessions(conn, force=force, where=where)
    # The recorded counts (Dagster's history) and the live database's properties are read
    # while restic fetches the dump, and waited for only when needed (issue 12).
    recorded = recorded_counts_soon(ctx.history, ctx.customer_name, db_name, snap.id)
    properties = properties_soon(conn, exists=exists, where=where)
    with ctx.steps.step(f"{where}: fetching {dump_path(snap)} from snapshot {snap.short_id}"):
        dump_file = ctx.fetch(snap, workdir)
    return restore_database_file(ctx, db_name, dump_file, DumpSource(
        snap.id, f"snapshot {snap.short_id}", recorded, db.format), exists=exists,
        force=force, jobs=jobs, properties=properties)


@dataclass(frozen=True)
class DumpSource:
    """Where a dump file came from: an id for the report, how messages name it ("snapshot
    1a2b3c4d"), the call that gives the row counts it is known to hold (recorded_counts_soon;
    None from it: read them from the dump), its format, and where known counts were taken."""

    id: str
    label: str
    counts: Recorded
    format: str
    counted_where: str = "counted in the dump's snapshot"


def restore_database_file(ctx: ItemContext, db_name: str, dump_file: Path,
                          source: DumpSource, *, exists: bool, force: bool, jobs: int,
                          properties: Properties | None = None) -> TargetReport:
    """Given a database (`exists`: whether it does now) and a dump file of it, restore the
    file into a new database, check it with the row-count (the source's counts, else the
    dump's) and SQL checks, and swap it in; return the report with the undo command. Raise
    PostgresError or RestoreError (the original untouched) if any step before the swap
    fails."""
    db = ctx.customer.databases[db_name]
    conn = connection_for(ctx.customer, db_name)
    where = f"database {db_name}"
    if source.format == "custom":
        with ctx.steps.step(f"{where}: reading the archive"):
            # The same pg_restore as the restore: one too old for the dump fails here.
            pg_restore.read_toc(dump_file, where=where,
                                bin_dir=None if conn.server.exec else conn.server.bin_dir)
    checks: list[CheckResult] = []

    def verify(copy: Connection) -> list[str]:
        # The counts are waited for (or read from the dump) only now, off the restore's
        # critical path (issue 12).
        expected, counted = expected_counts(
            source.counts, lambda: read_dump(dump_file, fmt=source.format).tables)
        if counted != "counted in the dump":
            counted = source.counted_where
        checks[:] = run_checks(copy, db, expected_counts=expected, counts_source=counted,
                               sql_only=True)
        return [f"{c.name}: {c.detail}" for c in checks if not c.passed]

    done = pg_restore.restore_database(conn, dump_file, source.format, exists=exists,
                                       force=force, jobs=jobs, verify=verify, where=where,
                                       step=ctx.steps.step, on_line=ctx.on_line,
                                       zone=tier_timezone(ctx.customer), properties=properties)
    report = TargetReport("database", db_name, source.id, changed=True, checks=checks)
    if done.kept:
        report.undo = undo_command(ctx.customer_name, db_name, done.tag, ctx.config_path)
        report.detail = (f"{conn.dbname} now holds {source.label}; the previous "
                         f"database is kept as {done.kept}")
    else:
        report.detail = f"{conn.dbname} created from {source.label}"
    ctx.say(f"{where}: {report.detail}")
    return report


def restore_table(ctx: ItemContext, db_name: str, table_name: str, snap: Snapshot,
                  workdir: Path, *, lock_timeout: float = 10.0,
                  dry_run: bool = False) -> TargetReport:
    """Given a database, `--table` and the dump snapshot, replace that table's rows with the
    snapshot's in one transaction (or recreate it when it was dropped), then run the
    row-count and SQL checks; with `dry_run` only say what would be done. Return the report.
    Raise RestoreError or PostgresError (the table unchanged) if any step fails."""
    db = ctx.customer.databases[db_name]
    where = f"table {table_name} of database {db_name}"
    if db.format != "custom":
        raise RestoreError(f"{where}: database {db_name} is dumped in plain format; a table "
                           f"restore needs a custom-format dump (restore the database "
                           f"instead); nothing was changed")
    # Only as much of the dump as the table needs is read, streamed (table_stream.py).
    with ctx.steps.step(f"{where}: reading the table of contents of {dump_path(snap)} from "
                        f"snapshot {snap.short_id}"):
        stream = DumpStream(ctx.restic, snap, workdir)
    try:
        return restore_table_file(ctx, db_name, table_name, stream.head_file, snap.id,
                                  snap.short_id, workdir, lock_timeout=lock_timeout,
                                  dry_run=dry_run, feed=stream.feed)
    except PostgresError as exc:
        cut = stream.failure()  # restic failed mid-way: its error says why
        if cut is None:
            raise
        raise RestoreError(f"{where}: {cut}; the transaction was rolled back, the table is "
                           f"unchanged") from exc
    finally:
        stream.close()


def restore_table_file(ctx: ItemContext, db_name: str, table_name: str, dump_file: Path,
                       source_id: str, source_label: str, workdir: Path, *,
                       lock_timeout: float = 10.0, dry_run: bool = False,
                       feed: pg_table.Feed | None = None) -> TargetReport:
    """Given a database, `--table` and a custom-format dump file (`source_label` names it in
    the outcome), replace that table's rows with the dump's in one transaction (or recreate
    it), then run the row-count and SQL checks; with `dry_run` only say what would be done.
    Return the report (`feed`: the rest of the dump streams in, dump_file is its head).
    Raise RestoreError or PostgresError (the table unchanged) if any step fails."""
    db = ctx.customer.databases[db_name]
    conn = connection_for(ctx.customer, db_name)
    where = f"table {table_name} of database {db_name}"
    plan = pg_table.plan_table(conn, dump_file, table_name, where=where)
    if dry_run:
        return TargetReport("table", plan.key, source_id, detail=plan.describe())
    rows = pg_table.restore_table(conn, dump_file, plan, workdir=workdir,
                                  lock_timeout=lock_timeout, where=where, step=ctx.steps.step,
                                  feed=feed)
    with ctx.steps.step(f"{where}: row-count and SQL checks"):
        checks = run_checks(conn, db, expected_counts={plan.key: rows},
                            count_tables=[plan.key], sql_only=True)
    detail = plan.outcome(rows, source_label)
    ctx.say(f"{where}: {detail}")
    return TargetReport("table", plan.key, source_id, changed=True, detail=detail,
                        checks=checks)


def restore_roles(ctx: ItemContext, server_name: str, snap: Snapshot,
                  workdir: Path) -> TargetReport:
    """Given a server and its roles snapshot (`pg_dumpall --globals-only`), create the roles
    missing on the server, with their memberships; roles that exist are left exactly as they
    are, passwords included. Return the report (its check fails when psql reported errors).
    Raise PostgresError or RestoreError (nothing changed) if the server or the snapshot
    cannot be read."""
    conn = server_connection(ctx.customer, server_name)
    where = f"roles of {server_name}"
    existing = existing_roles(conn, where=where)
    with ctx.steps.step(f"{where}: fetching from snapshot {snap.short_id}"):
        dumped = fetch_file(ctx.restic, snap, workdir)
    script, missing, present = missing_roles_script(dumped.read_text(errors="replace"),
                                                    existing)
    errors: list[str] = []
    if missing:
        with ctx.steps.step(f"{where}: creating {len(missing)} missing role(s)"):
            errors = run_roles_script(conn, script)
    detail = (f"created {len(missing)} missing role(s)"
              + (f" ({', '.join(missing)})" if missing else "")
              + f"; {len(present)} existing role(s) left as they are (passwords unchanged)"
              + (f"; {len(errors)} error(s): {errors[0]}" if errors else ""))
    ctx.say(f"{where}: {detail}")
    return TargetReport("roles", server_name, snap.id, changed=bool(missing), detail=detail,
                        checks=[CheckResult(f"roles-{server_name}", "builtin", not errors,
                                            detail)])


def folder_destination(customer: Customer, folder_name: str, snap: Snapshot, *,
                       in_place: bool, dest: str | None) -> tuple[Path, Path]:
    """Given a folder snapshot and the options, return (the path it recorded, where to restore
    it): `dest`, the folder itself with `in_place`, else a new `<path>.restored-<stamp>`
    beside the folder as configured now. Raise RestoreError if neither the snapshot nor the
    configuration names a path, or the destination exists and is not empty."""
    configured = customer.folders.get(folder_name)
    if snap.paths:
        original = Path(snap.paths[0])
    elif configured is not None:
        original = configured.path.expanduser()
    else:
        raise RestoreError(f"folder {folder_name}: snapshot {snap.short_id} names no path and "
                           f"no folder {folder_name} is configured; pass --dest")
    # "Beside the original" means beside the folder as configured now (`~` expanded, as the
    # backup does): on a rebuilt machine it may live elsewhere than the recorded path.
    home = configured.path.expanduser() if configured else original
    if in_place:
        target = home
    elif dest:
        target = Path(dest).expanduser()
    else:
        target = home.with_name(
            f"{home.name}.restored-{pg_restore.stamp(zone=tier_timezone(customer))}")
    if not in_place and target.exists() and any(target.iterdir()):
        raise RestoreError(f"folder {folder_name}: {target} exists and is not empty; choose "
                           f"another --dest (or --in-place to restore over the original)")
    return original, target


def restore_folder(ctx: ItemContext, folder_name: str, snap: Snapshot, *, in_place: bool,
                   dest: str | None, dry_run: bool = False) -> TargetReport:
    """Given a folder snapshot, `restic restore` it (see folder_destination; in place,
    changed files are overwritten and other files kept); with `dry_run` only say where.
    Return the report. Raise RestoreError if the destination is refused or restic fails."""
    original, target = folder_destination(ctx.customer, folder_name, snap, in_place=in_place,
                                          dest=dest)
    detail = f"snapshot {snap.short_id} of {original} into {target}" + (
        " (in place: changed files overwritten, other files kept)" if in_place else "")
    if dry_run:
        return TargetReport("folder", folder_name, snap.id, detail=detail)
    with ctx.steps.step(f"folder {folder_name}: restoring {detail}"):
        try:
            ctx.restic.run(["restore", f"{snap.id}:{original}", "--target", str(target)],
                           what=f"restoring folder {original}")
        except RepositoryDamaged as exc:
            raise RestoreError(f"folder {folder_name}: " + explain_damage(
                ctx.restic, exc, snap.id, f"a restore of folder {folder_name}")) from None
        except ResticError as exc:
            raise RestoreError(f"folder {folder_name}: {first_line(exc)}") from None
    files = sum(1 for p in target.rglob("*") if p.is_file())
    check = CheckResult("files", "builtin", files > 0 or not snap.summary.get(
        "total_files_processed"), f"{files} file(s) in {target}")
    ctx.say(f"folder {folder_name}: restored into {target}")
    return TargetReport("folder", folder_name, snap.id, changed=True, detail=detail,
                        checks=[check])


def run_post_restore(commands: list[list[str]], say: Say) -> list[str]:
    """Given a database's post-restore commands (argv lists, never a shell), run each and
    return one outcome line per command."""
    lines = []
    for argv in commands:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                                  stdin=subprocess.DEVNULL)
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: " + (
                (proc.stderr or proc.stdout).strip().splitlines() or [""])[-1][:200]
        except FileNotFoundError:
            status = f"{argv[0]!r} not found"
        except subprocess.TimeoutExpired:
            status = "did not finish within 600 s"
        line = f"{' '.join(argv)}: {status}"
        say(f"post-restore: {line}")
        lines.append(line)
    return lines


def after_restore(ctx: ItemContext, db_name: str, result: TargetReport) -> None:
    """Given a database or table that is in place now, run its post-restore commands (e.g.
    restarting the application), then its command checks (which may go through that
    application, so they run against what is live now); their results join the report."""
    db = ctx.customer.databases[db_name]
    result.post_restore = run_post_restore(db.post_restore, ctx.say)
    if any(isinstance(c, IntegrityCommand) for c in db.integrity):
        conn = connection_for(ctx.customer, db_name)
        with ctx.steps.step(f"database {db_name}: command checks against {conn.dbname}"):
            result.checks += run_checks(conn, db, expected_counts=None, commands_only=True)
