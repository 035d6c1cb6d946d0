"""The restore side of a whole database: reading the archive's table of contents, restoring
into a new database with the current one's properties, swapping it in by renaming, and the
swap back (undo).

Nothing good is destroyed: the restored copy is built beside the live database, checked, and
only then swapped in; the previous database stays as `<db>_before_restore_<stamp>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    Say,
    first_error,
    first_line,
    local_tool,
    quote_ident,
    quote_literal,
    run_tool,
)
from axe_pipelines.postgres.dump import count_rows
from axe_pipelines.postgres.properties import Properties, database_properties

StepFn = Callable[[str], AbstractContextManager[None]]
Verify = Callable[[Connection], list[str]]


def no_step(_: str) -> AbstractContextManager[None]:
    """Given a step name, return a context that records nothing (the default StepFn)."""
    return nullcontext()


def _quiet(_: str) -> None:
    pass


# --- the archive -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TocEntry:
    """One line of `pg_restore -l`: `3372; 0 16397 TABLE DATA public journal_line postgres`."""

    line: str
    dump_id: int
    desc: str
    schema: str
    name: str


# Longest first, so "TABLE DATA" wins over "TABLE".
_TOC_DESCS = sorted(["TABLE", "TABLE DATA", "SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET",
                     "DEFAULT", "CONSTRAINT", "FK CONSTRAINT", "INDEX", "TRIGGER", "VIEW",
                     "MATERIALIZED VIEW", "SCHEMA", "COMMENT", "ACL", "EXTENSION", "TYPE",
                     "FUNCTION", "POLICY", "ROW SECURITY", "RULE", "DOMAIN",
                     "INDEX ATTACH", "MATERIALIZED VIEW DATA", "BLOB", "BLOBS",
                     "DATABASE", "DATABASE PROPERTIES", "ENCODING", "STDSTRINGS",
                     "SEARCHPATH"],
                    key=len, reverse=True)
_TOC_RE = re.compile(r"^(\d+); \d+ \d+ (.*)$")


def parse_toc(text: str) -> list[TocEntry]:
    """Given `pg_restore -l` output, return its entries in order (comments skipped)."""
    entries = []
    for line in text.splitlines():
        m = _TOC_RE.match(line)
        if not m:
            continue
        rest = m.group(2)
        desc = next((d for d in _TOC_DESCS if rest.startswith(d + " ")), rest.split(" ")[0])
        parts = rest[len(desc) + 1:].split(" ")
        # "<schema> <name…> <owner>"; names may hold spaces, owners and schemas rarely do.
        schema = parts[0] if len(parts) > 2 else ""
        name = " ".join(parts[1:-1]) if len(parts) > 2 else " ".join(parts[:-1])
        entries.append(TocEntry(line, int(m.group(1)), desc, schema, name))
    return entries


def read_toc(dump_file: Path, *, where: str,
             bin_dir: Path | None = None) -> tuple[list[TocEntry], str]:
    """Given a custom-format dump file, return its table of contents (entries, raw text), read
    with the pg_restore that will restore it. Raise PostgresError if that pg_restore cannot
    read it, naming its version when it is too old for the dump's format."""
    binary = local_tool("pg_restore", bin_dir)
    result = run_tool([binary, "-l", str(dump_file)], capture=True, check=False,
                      what=f"{where}: pg_restore")
    if result.code != 0:
        err = first_error(result.stderr)
        if "unsupported version" in err:
            version = run_tool([binary, "--version"], capture=True, check=False,
                               what=binary).stdout.strip()
            raise PostgresError(
                f"{where}: the dump's archive format is newer than this pg_restore reads "
                f"({err}; {binary} is {version}); install a newer PostgreSQL client or set "
                f"bin_dir; nothing was changed")
        raise PostgresError(f"{where}: pg_restore cannot read the dump: {err}; "
                            f"nothing was changed")
    return parse_toc(result.stdout), result.stdout


def pg_restore_script(dump_file: Path, entries: list[TocEntry], out: Path, *,
                      create: bool = False, bin_dir: Path | None = None) -> None:
    """Given a dump file and some of its entries, write the SQL pg_restore would run for them
    (a `-L` list; with `create`, `-C` for database entries) to `out`. Raise PostgresError if
    pg_restore cannot read the dump."""
    listing = out.with_suffix(".list")
    listing.write_text("\n".join(e.line for e in entries) + "\n")
    result = run_tool([local_tool("pg_restore", bin_dir), *(["-C"] if create else []),
                       "-L", str(listing), "-f", str(out), str(dump_file)], check=False,
                      what="pg_restore")
    if result.code != 0:
        raise PostgresError(f"pg_restore cannot read the dump: {first_error(result.stderr)}")


# --- the live database -------------------------------------------------------------------------


def stamp(now: datetime | None = None, zone: str | None = None) -> str:
    """Return the time (default now) as the `<stamp>` of restore names, 20260520030042, on
    the wall clock of `zone` (the customer's, so names read like its --as-of times; default
    this machine's)."""
    tz = ZoneInfo(zone) if zone else None
    if now is None:
        now = datetime.now(tz)
    elif tz is not None and now.tzinfo is not None:
        now = now.astimezone(tz)
    return now.strftime("%Y%m%d%H%M%S")


def database_exists(conn: Connection) -> bool:
    """Given a connection, return whether its database exists. Raise PostgresError if the
    server cannot be asked."""
    return bool(conn.admin().psql(
        f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(conn.dbname)};"))


def other_sessions(conn: Connection) -> list[str]:
    """Given a connection, return the application_name (or client address) of every other
    session on its database. Raise PostgresError if the server cannot be asked."""
    rows = conn.admin().psql(
        "SELECT coalesce(nullif(application_name, ''), client_addr::text, 'local') "
        f"FROM pg_stat_activity WHERE datname = {quote_literal(conn.dbname)} "
        "AND pid <> pg_backend_pid();")
    return [r[0] for r in rows]


def drop_database(conn: Connection, dbname: str) -> None:
    """Given a connection and a database name on its server, drop that database (its
    sessions terminated). Raise PostgresError if that fails."""
    conn.admin().psql(f"DROP DATABASE IF EXISTS {quote_ident(dbname)} WITH (FORCE);")


def describe_database(conn: Connection) -> str:
    """Given a connection, return one line with the live database's size and row counts (or
    why it cannot be inspected), for dry runs."""
    try:
        if not database_exists(conn):
            return f"database {conn.dbname} does not exist on {conn.where} (will be created)"
        size = conn.admin().psql(
            f"SELECT pg_size_pretty(pg_database_size({quote_literal(conn.dbname)}));")[0][0]
        counts = count_rows(conn)
    except PostgresError as exc:
        return f"database {conn.dbname} on {conn.where}: cannot inspect ({first_line(exc)})"
    shown = ", ".join(f"{t} {n}" for t, n in sorted(counts.items())[:12])
    more = f" (+{len(counts) - 12} more)" if len(counts) > 12 else ""
    return (f"database {conn.dbname} on {conn.where}: {size}, {len(counts)} table(s): "
            f"{shown}{more}")


def check_sessions(conn: Connection, *, force: bool, where: str) -> bool:
    """Given the database about to be restored, return whether it exists. Raise
    PostgresError (nothing changed) if the server cannot be reached, or if other clients are
    connected and `force` is not set."""
    try:
        exists = database_exists(conn)
        sessions = other_sessions(conn) if exists else []
    except PostgresError as exc:
        raise PostgresError(f"{where}: cannot reach {conn.where}: {first_line(exc)}; "
                            f"nothing was changed") from None
    if sessions and not force:
        raise PostgresError(
            f"{where}: {len(sessions)} open connection(s) to {conn.dbname} "
            f"({', '.join(sorted(set(sessions)))}); stop those clients or rerun with --force "
            f"to terminate them; nothing was changed")
    return exists


# --- restore, swap, undo -----------------------------------------------------------------------


@dataclass(frozen=True)
class RestoredDatabase:
    """A database restore that was swapped in: its stamp and where the previous one is kept
    (None when the database did not exist before)."""

    tag: str
    kept: str | None


def restore_database(conn: Connection, dump_file: Path, fmt: str, *, exists: bool,
                     force: bool, jobs: int, verify: Verify, where: str,
                     step: StepFn = no_step, on_line: Say = _quiet,
                     zone: str | None = None,
                     properties: Properties | None = None) -> RestoredDatabase:
    """Given the database (`exists`: whether it does now) and a dump file, restore the dump
    into a new database with the current one's encoding, locale and owner, call `verify` on
    it (it returns the failed checks), give it the current settings, grants and comment, then
    swap names so the copy is `<db>` and the previous one `<db>_before_restore_<stamp>`.
    Return the stamp (on `zone`'s clock, see stamp) and the kept name (`properties`: read
    them this way, see properties_soon; default database_properties). Raise PostgresError —
    the original untouched, the partial copy dropped — if any step before the swap fails."""
    tag = stamp(zone=zone)
    new_name = f"{conn.dbname}_restoring_{tag}"[:63]
    old_name = f"{conn.dbname}_before_restore_{tag}"[:63]
    props = (properties or database_properties)(conn, dump_file, fmt, exists=exists,
                                                new_name=new_name, where=where)
    create = next((p for p in props if p.startswith("CREATE DATABASE")),
                  f"CREATE DATABASE {quote_ident(new_name)} TEMPLATE template0;")
    owner = [p for p in props if re.match(r"ALTER DATABASE \S+ OWNER TO ", p)]
    later = [p for p in props if p != create and p not in owner]
    admin = conn.admin()
    try:
        admin.psql("\n".join([create, *owner]))
    except PostgresError as exc:
        raise PostgresError(f"{where}: cannot create {new_name} on {conn.where}: "
                            f"{first_line(exc)}; nothing was changed") from None
    try:
        with step(f"{where}: restoring into new database {new_name}"):
            load_database(conn.with_db(new_name), dump_file, fmt, jobs=jobs, on_line=on_line,
                          what=f"{where}: restore into {new_name}")
        with step(f"{where}: row-count and SQL checks on {new_name}"):
            problems = verify(conn.with_db(new_name))
        if problems:
            raise PostgresError(f"{where}: integrity check(s) failed on the restored copy "
                                f"({'; '.join(problems)}); not swapped in")
        # The copy's settings, grants and comment go in with the swap: one psql call.
        with step(f"{where}: swapping {new_name} in for {conn.dbname}"):
            if exists:
                swap(conn, new_name, old_name, force=force, before=later)
            else:
                admin.psql("\n".join([*later, f"ALTER DATABASE {quote_ident(new_name)} "
                                                f"RENAME TO {quote_ident(conn.dbname)};"]))
    except PostgresError as exc:
        try:
            drop_database(conn, new_name)
            cleanup = f"the partial copy {new_name} was dropped"
        except PostgresError:
            cleanup = f"drop the partial copy {new_name} by hand"
        state = (f"the original database {conn.dbname} is untouched" if exists
                 else f"{conn.dbname} was not created")
        raise PostgresError(f"{first_line(exc)}; {state}; {cleanup}") from None
    return RestoredDatabase(tag, old_name if exists else None)


def load_database(new: Connection, dump_file: Path, fmt: str, *, jobs: int, on_line: Say,
                  what: str) -> None:
    """Given an empty database and a dump file, load the dump into it (psql for a plain
    dump, else pg_restore, in `jobs` parallel jobs when it runs on this machine), passing each
    line the tool says to `on_line`. Raise PostgresError if the tool fails or is killed."""
    env = new.env()
    if fmt == "plain":
        argv = [*new.tool("psql"), *new.conn_args(), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "--no-password", "-f", "-"]
    else:
        argv = [*new.tool("pg_restore"), *new.conn_args(), "--no-password", "--exit-on-error",
                "-v"]
        if not new.server.exec:
            run_tool([*argv, "-j", str(max(1, jobs)), str(dump_file)], env=env,
                     on_line=on_line, what=what)
            return
    # psql, or tools that run elsewhere (a container): the archive goes in on stdin (no -j).
    with open(dump_file, "rb") as fh:
        run_tool(argv, env=env, stdin=fh, on_line=on_line, what=what)


def swap(conn: Connection, new_name: str, old_name: str, *, force: bool,
         before: Sequence[str] = ()) -> None:
    """Given the live database, run the statements `before` (the copy's settings, grants and
    comment), then rename the live database to `old_name` and `new_name` to it in one
    transaction — all in one psql call, which stops at the first error. With `force`, other
    sessions are terminated (and new ones refused until the rename is done); without it, a
    connected client refuses the swap. Raise PostgresError if clients are connected without
    `force`, or if any statement fails (then nothing was renamed, and clients may connect to
    the live database again)."""
    admin = conn.admin()
    current, name = quote_ident(conn.dbname), quote_literal(conn.dbname)
    others = f"FROM pg_stat_activity WHERE datname = {name} AND pid <> pg_backend_pid()"
    if force:
        # Keep clients from reconnecting between terminate and rename (its own commit).
        guard = [f"ALTER DATABASE {current} WITH ALLOW_CONNECTIONS false;",
                 f"SELECT pg_terminate_backend(pid) {others};"]
    else:
        guard = [_raise_if_sql(
            f"EXISTS (SELECT 1 {others})",
            f"(SELECT count(*) || ' client(s) connected during the restore (' || "
            f"string_agg(DISTINCT coalesce(nullif(application_name, ''), client_addr::text, "
            f"'local'), ', ') || '); rerun with --force' {others})")]
    script = [*before, *guard, "BEGIN;", f"ALTER DATABASE {current} RENAME TO "
              f"{quote_ident(old_name)};", f"ALTER DATABASE {quote_ident(new_name)} RENAME TO "
              f"{current};", "COMMIT;"]
    if force:
        script.append(f"ALTER DATABASE {quote_ident(old_name)} WITH ALLOW_CONNECTIONS true;")
    try:
        admin.psql("\n".join(script))
    except PostgresError as exc:
        if not force:
            if "axe: " in str(exc):  # the guard: clients connected
                raise PostgresError(f"database {conn.dbname}: "
                                    f"{str(exc).split('axe: ', 1)[1]}") from None
            raise
        # Stopped somewhere: whichever name the old database has now, let clients in again.
        found = _reopen(admin, [old_name, conn.dbname, new_name])
        if found is None or new_name in found:  # the copy still has its name: not swapped
            raise
        # Only letting clients in again failed, and that is done now: the swap stands.


def _reopen(admin: Connection, names: list[str]) -> set[str] | None:
    """Given database names, allow connections to those that exist; return which exist
    (None when the server cannot be asked)."""
    try:
        found = {r[0] for r in admin.psql(
            "SELECT datname FROM pg_database WHERE datname IN ("
            + ", ".join(quote_literal(n) for n in names) + ");")}
    except PostgresError:
        return None
    for db in found:
        try:
            admin.psql(f"ALTER DATABASE {quote_ident(db)} WITH ALLOW_CONNECTIONS true;")
        except PostgresError:
            pass
    return found


def _raise_if_sql(condition: str, message_sql: str) -> str:
    """A DO block raising `axe: <message_sql's value>` when `condition` holds."""
    return (f"DO $axe$ BEGIN IF {condition} THEN RAISE EXCEPTION 'axe: %', {message_sql}; "
            f"END IF; END $axe$;")


def swap_back(conn: Connection, tag: str, *, where: str, say: Say = _quiet) -> str:
    """Given the restored database and the restore's stamp, put `<db>_before_restore_<stamp>`
    back as `<db>` and keep the restored copy as `<db>_restored_<stamp>` (open sessions are
    terminated: a database with sessions cannot be renamed). Return the outcome line. Raise
    PostgresError (nothing changed) if there is no such kept copy or the swap fails."""
    kept = f"{conn.dbname}_before_restore_{tag}"[:63]
    restored = f"{conn.dbname}_restored_{tag}"[:63]
    prefix = f"{conn.dbname}_before_restore_"
    try:
        names = [r[0] for r in conn.admin().psql(
            f"SELECT datname FROM pg_database WHERE left(datname, {len(prefix)}) = "
            f"{quote_literal(prefix)} ORDER BY 1;")]
    except PostgresError as exc:
        raise PostgresError(f"{where}: cannot reach {conn.where}: {first_line(exc)}; "
                            f"nothing was changed") from None
    if kept not in names:
        raise PostgresError(f"{where}: no {kept} on {conn.where} (kept copies: "
                            f"{', '.join(names) or 'none'}); nothing was changed")
    say(f"{where}: closing {conn.dbname} to new connections and terminating open ones to "
        f"swap {kept} back in")
    try:
        swap(conn, kept, restored, force=True)
    except PostgresError as exc:
        raise PostgresError(f"{where}: the swap back failed: {first_line(exc)}; "
                            f"{conn.dbname} is unchanged") from None
    return (f"{conn.dbname} holds the database from before the restore again; the restored "
            f"copy is kept as {restored}")
