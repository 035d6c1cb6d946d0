"""Restores by customer, tier, as-of, target database, single table or folder — as plain
functions; the CLI (`axe restore`, `axe integrity-check`, `axe find-last-valid`) and the Dagster
`restore` job are thin layers over `run_restore`, `run_integrity_check` and `find_last_valid`.

Rules this module keeps:
- Nothing good is destroyed. A database is restored into a new database which is swapped in
  by renaming (the old one stays as `<db>_before_restore_<stamp>`; the output prints the one
  command that undoes the swap). A table is replaced inside one transaction. A folder goes
  into a new folder beside the original unless `in_place`.
- A dump is taken out of the repository with `restic restore` into a temporary folder (never
  `restic dump | pg_restore`: an early-exiting reader kills restic with SIGPIPE and leaves a
  stale lock), which also lets pg_restore work in parallel (`-j` refuses stdin).
- Before anything changes, the archive is read with `pg_restore -l`, so a pg_restore older
  than the dump's format fails with one line and nothing touched.
- After every restore the integrity checks run and their table is reported: row-count and
  SQL checks on the restored copy before the swap (they decide it); post-restore commands and
  command checks after it (a command may reach the live database through an application).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Literal, cast
from zoneinfo import ZoneInfo

from axe_pipelines.config import Customer, Database, IntegrityCommand, Site, tier_timezone
from axe_pipelines.errors import ItemFailed
from axe_pipelines.integrity import (
    ROW_COUNTS,
    CheckResult,
    count_rows,
    dump_time_counts,
    expected_counts,
    recorded_counts_soon,
    run_checks,
)
from axe_pipelines.postgres import Connection, PostgresError, count_script_rows, find_bin_dir
from axe_pipelines.restic import Restic, ResticError, Snapshot
from axe_pipelines.sets import AsOfError, BackupSet, list_sets, parse_as_of, select_as_of
from axe_pipelines.staging import Staging
from axe_pipelines.tiers import TierName, TierUnavailable, open_tier, resolve_tier

Say = Callable[[str], None]
LAST_VALID = "last-valid"


class RestoreError(ItemFailed):
    """A restore step failed or was refused. The message is one operator line: what, where,
    what to do, and whether anything was changed."""


def _quiet(_: str) -> None:
    pass


def qident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qliteral(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- options and report ------------------------------------------------------------------------


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
class Step:
    name: str
    seconds: float


TargetKind = Literal["database", "table", "folder", "roles"]


@dataclass
class TargetReport:
    """The outcome for one database, table or folder."""

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
class RestoreReport:
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
        return [c for t in self.targets for c in t.checks]

    @property
    def failed(self) -> list[TargetReport]:
        return [t for t in self.targets if t.error]

    @property
    def ok(self) -> bool:
        return not self.failed and all(c.passed for c in self.checks)


class _Timer:
    def __init__(self, report: RestoreReport | None, say: Say):
        self.report = report
        self.say = say

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"{name} …")
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - started
            if self.report is not None:
                self.report.steps.append(Step(name, seconds))


# --- targets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kind: Literal["database", "folder"]
    name: str  # the config name


def valid_targets(customer: Customer) -> list[str]:
    """Every name `--target` accepts, for error messages."""
    names: list[str] = []
    for db_name, db in customer.databases.items():
        names += [db_name, f"{db_name}-postgres", *db.aliases]
    names += list(customer.folders)
    return sorted(set(names))


def resolve_target(customer_name: str, customer: Customer, target: str) -> Target:
    """Maps `--target` (config name, `<db>-postgres` as the runbook names them, an alias, a
    database's real name, or a folder) to a Target; RestoreError lists the valid ones."""
    for db_name, db in customer.databases.items():
        if target in (db_name, f"{db_name}-postgres", *db.aliases):
            return Target("database", db_name)
    if target in customer.folders:
        return Target("folder", target)
    for db_name in customer.databases:
        if customer.database_name(db_name) == target:
            return Target("database", db_name)
    raise RestoreError(f"unknown target {target!r} for customer {customer_name} "
                       f"(valid: {', '.join(valid_targets(customer))})")


def connection_for(customer: Customer, db_name: str) -> Connection:
    db = customer.databases[db_name]
    return Connection(db.server, customer.servers[db.server], customer.database_name(db_name))


# --- the repository side -----------------------------------------------------------------------


def open_source(config: Site, customer_name: str, tier: str | None,
                source: str | None) -> tuple[TierName, str | None, Restic]:
    """Resolves `--tier`/`--from` and opens that tier's repository (through tiers.open_tier,
    so ring and cold work as soon as tiers.py provides them)."""
    name, peer = resolve_tier(config, tier, source)
    try:
        return name, peer, open_tier(config, customer_name, name, peer)
    except TierUnavailable as exc:
        raise RestoreError(f"tier {name}: {exc}; nothing was changed") from None


def tier_label(tier: str, peer: str | None) -> str:
    return f"tier {tier}" + (f" (peer {peer})" if peer else "")


def load_sets(restic: Restic, customer_name: str, where: str) -> list[BackupSet]:
    """The customer's sets in the repository; repository problems become RestoreError."""
    try:
        return list_sets(restic, customer_name)
    except ResticError as exc:
        raise RestoreError(f"{where}: {_first(exc)}; nothing was changed") from None


def choose_set(sets: list[BackupSet], as_of: str, timezone: str, where: str) -> BackupSet:
    """The newest set at or before `as_of` (see sets.parse_as_of); RestoreError with the
    existing range otherwise."""
    try:
        return select_as_of(sets, parse_as_of(as_of, timezone), where=where)
    except AsOfError as exc:
        raise RestoreError(f"{exc}; nothing was changed") from None


def member(the_set: BackupSet, kind: str, name: str, where: str) -> Snapshot:
    snap = the_set.member(kind, name)
    if snap is None:
        raise RestoreError(f"the set of {the_set.time:%Y-%m-%d %H:%M} in {where} holds no "
                           f"{kind} snapshot of {name}; pick another --as-of")
    return snap


def dump_path(snap: Snapshot) -> str:
    """The file a dump snapshot holds (`/<db>.pgdump` or `/<db>.sql`)."""
    if not snap.paths:
        raise RestoreError(f"snapshot {snap.short_id} names no path; is it a dump?")
    return snap.paths[0]


def fetch_file(restic: Restic, snap: Snapshot, workdir: Path) -> Path:
    """Restores the single file of a dump snapshot into `workdir`; returns its path."""
    path = dump_path(snap)
    try:
        restic.run(["restore", snap.id, "--target", str(workdir), "--include", path],
                   what=f"restoring {path} from snapshot {snap.short_id}")
    except ResticError as exc:
        raise RestoreError(f"{_first(exc)}; nothing was changed") from None
    out = workdir / path.lstrip("/")
    if not out.is_file():
        raise RestoreError(f"restic restored no {path} from snapshot {snap.short_id}")
    return out


def snapshot_size(snap: Snapshot) -> int:
    return int(snap.summary.get("total_bytes_processed") or 0)


# --- reading the archive -----------------------------------------------------------------------


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
    """Parses `pg_restore -l` output (comments skipped)."""
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


def pg_restore_bin(bin_dir: Path | None = None) -> str:
    """The pg_restore on this machine (`bin_dir`, else the newest installed)."""
    return str(find_bin_dir(bin_dir) / "pg_restore")


def read_toc(dump_file: Path, *, where: str,
             bin_dir: Path | None = None) -> tuple[list[TocEntry], str]:
    """Reads the archive's table of contents with the pg_restore that will restore it;
    returns (entries, raw text). Raises RestoreError, naming that pg_restore's version when it
    is too old for the dump."""
    binary = pg_restore_bin(bin_dir)
    proc = subprocess.run([binary, "-l", str(dump_file)], capture_output=True, text=True)
    if proc.returncode != 0:
        err = _pg_error(proc.stderr)
        if "unsupported version" in err:
            version = subprocess.run([binary, "--version"], capture_output=True,
                                     text=True).stdout.strip()
            raise RestoreError(
                f"{where}: the dump's archive format is newer than this pg_restore reads "
                f"({err}; {binary} is {version}); install a newer PostgreSQL client or set "
                f"bin_dir; nothing was changed")
        raise RestoreError(f"{where}: pg_restore cannot read the dump: {err}; "
                           f"nothing was changed")
    return parse_toc(proc.stdout), proc.stdout


def dump_row_counts(dump_file: Path, fmt: str) -> dict[str, int]:
    """Per-table row counts in the dump's COPY sections (the counts the backup made inside
    its own snapshot; they travel with the dump)."""
    if fmt == "plain":
        with open(dump_file, "rb") as fh:
            return count_script_rows(iter(fh.readline, b""))
    proc = subprocess.Popen([pg_restore_bin(), "-a", "-f", "-", str(dump_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout and proc.stderr
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    try:
        counts = count_script_rows(iter(proc.stdout.readline, b""))
    except PostgresError as exc:
        proc.kill()
        raise RestoreError(f"the dump is truncated: {exc}") from None
    finally:
        proc.stdout.read()
        proc.wait()
        reader.join(5)
    if proc.returncode != 0:
        raise RestoreError(f"pg_restore cannot read the dump: "
                           f"{_pg_error(b''.join(err).decode(errors='replace'))}")
    return counts


# --- running client tools ----------------------------------------------------------------------


def run_tool(argv: Sequence[str], *, env: dict[str, str], stdin: IO[bytes] | int | None = None,
             on_line: Say = _quiet, what: str) -> None:
    """Runs a client tool, passing each stderr line to `on_line` as it comes; raises
    RestoreError naming the first error (or the signal that killed it)."""
    try:
        proc = subprocess.Popen(list(argv), env=env, stdin=stdin if stdin is not None
                                else subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise RestoreError(f"{what}: {exc.filename} not found") from None
    assert proc.stderr is not None
    lines: list[str] = []
    for raw in iter(proc.stderr.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        on_line(line)
    code = proc.wait()
    if code < 0:
        raise RestoreError(f"{what}: {Path(argv[0]).name} was killed "
                           f"({signal.Signals(-code).name})")
    if code != 0:
        raise RestoreError(f"{what}: {_pg_error(chr(10).join(lines))}")


def _pg_error(stderr: str) -> str:
    errors = [ln for ln in stderr.splitlines() if "error:" in ln.lower() or
              ln.startswith(("ERROR", "FATAL", "psql:"))]
    line = (errors or [ln for ln in stderr.splitlines() if ln.strip()] or ["no message"])[0]
    for prefix in ("pg_restore: error: ", "psql: error: ", "pg_restore: "):
        line = line.removeprefix(prefix)
    return line.strip()


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def admin_connection(conn: Connection) -> Connection:
    """The server's maintenance database, for CREATE/ALTER/DROP DATABASE."""
    return conn.with_db("postgres")


def database_exists(conn: Connection) -> bool:
    rows = admin_connection(conn).psql(
        f"SELECT 1 FROM pg_database WHERE datname = {qliteral(conn.dbname)};")
    return bool(rows)


def other_sessions(conn: Connection) -> list[str]:
    """application_name (or client address) of every other session on the database."""
    rows = admin_connection(conn).psql(
        "SELECT coalesce(nullif(application_name, ''), client_addr::text, 'local') "
        f"FROM pg_stat_activity WHERE datname = {qliteral(conn.dbname)} "
        "AND pid <> pg_backend_pid();")
    return [r[0] for r in rows]


def drop_database(conn: Connection, dbname: str) -> None:
    admin_connection(conn).psql(f"DROP DATABASE IF EXISTS {qident(dbname)} WITH (FORCE);")


def stamp(now: datetime | None = None) -> str:
    return (now or datetime.now()).strftime("%Y%m%d%H%M%S")


# --- database restore --------------------------------------------------------------------------


def describe_database(conn: Connection) -> str:
    """Current size and row counts of a live database, for dry-run and reports."""
    try:
        if not database_exists(conn):
            return f"database {conn.dbname} does not exist on {conn.where} (will be created)"
        size = admin_connection(conn).psql(
            f"SELECT pg_size_pretty(pg_database_size({qliteral(conn.dbname)}));")[0][0]
        counts = count_rows(conn)
    except PostgresError as exc:
        return f"database {conn.dbname} on {conn.where}: cannot inspect ({_first(exc)})"
    shown = ", ".join(f"{t} {n}" for t, n in sorted(counts.items())[:12])
    more = f" (+{len(counts) - 12} more)" if len(counts) > 12 else ""
    return (f"database {conn.dbname} on {conn.where}: {size}, {len(counts)} table(s): "
            f"{shown}{more}")


def split_statements(script: str) -> list[str]:
    """The SQL statements of a pg_dump/pg_dumpall script, one string each (comments, blank
    lines and psql meta-commands dropped). Quotes are respected, so a `;` or a newline inside
    a string literal or quoted identifier does not end a statement."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for line in script.splitlines():
        if quote is None and not current and (not line.strip() or line.startswith(("--", "\\"))):
            continue
        current.append(line)
        for ch in line:
            if quote is None and ch in "'\"":
                quote = ch
            elif ch == quote:
                quote = None
        if quote is None and line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    if current:
        statements.append("\n".join(current).strip())
    return statements


def _ident_pattern(name: str) -> str:
    """A regex for `name` as pg_dump writes an identifier (bare when it can be)."""
    quoted = re.escape(qident(name))
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return f"(?:{quoted}|{re.escape(name)})"
    return quoted


_DB_LEVEL = re.compile(r"^(CREATE DATABASE|ALTER DATABASE|COMMENT ON DATABASE|GRANT|REVOKE|"
                       r"ALTER ROLE)\b")


def database_level_statements(script: str, old: str, new: str) -> list[str]:
    """From pg_dump/pg_restore `-C` output for database `old`: the statements about the
    database itself (CREATE with encoding and locale, owner, ALTER DATABASE … SET and
    CONNECTION LIMIT, ALTER ROLE … IN DATABASE … SET, COMMENT, GRANT/REVOKE ON DATABASE),
    renamed to database `new`."""
    ident = _ident_pattern(old)
    target = qident(new)
    out = []
    for stmt in split_statements(script):
        if not _DB_LEVEL.match(stmt):
            continue
        if stmt.startswith(("GRANT", "REVOKE", "ALTER ROLE")) and not re.search(
                rf"\bDATABASE {ident}(?=[\s;])", stmt):
            continue  # a grant on something else
        renamed, n = re.subn(rf"(\bDATABASE ){ident}(?=[\s;])", lambda m: m.group(1) + target,
                             stmt, count=1)
        if n:
            out.append(renamed)
    return out


def database_properties(conn: Connection, dump_file: Path, fmt: str, *, exists: bool,
                        new_name: str, where: str) -> list[str]:
    """The database-level statements for the restored copy `new_name`: read from the live
    database when it exists (its current encoding, locale, owner, settings, grants, comment:
    a restore replaces the contents, not the database's configuration), else from the
    dump's own DATABASE entries (a custom dump keeps them; pg_restore without -C skips them).
    Empty for a plain dump of a database that is gone."""
    if exists:
        argv = [*conn.tool("pg_dump"), *conn.conn_args(), "--no-password", "-s", "-C",
                "--exclude-schema", "*"]
        proc = subprocess.run(argv, capture_output=True, text=True, env=conn.env(),
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RestoreError(f"{where}: cannot read the properties of {conn.dbname} "
                               f"(pg_dump: {_pg_error(proc.stderr)}); nothing was changed")
        return database_level_statements(proc.stdout, conn.dbname, new_name)
    if fmt != "custom":
        return []
    binary = pg_restore_bin(conn.server.bin_dir if not conn.server.exec else None)
    listing = subprocess.run([binary, "-C", "-l", str(dump_file)], capture_output=True,
                             text=True)
    entries = [e for e in parse_toc(listing.stdout)
               if e.desc in ("DATABASE", "DATABASE PROPERTIES")
               or (e.desc in ("COMMENT", "ACL") and e.name.startswith("DATABASE "))]
    database = next((e for e in entries if e.desc == "DATABASE"), None)
    if listing.returncode != 0 or database is None:
        return []
    list_file = dump_file.with_suffix(".database.list")
    list_file.write_text("\n".join(e.line for e in entries) + "\n")
    proc = subprocess.run([binary, "-C", "-L", str(list_file), "-f", "-", str(dump_file)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RestoreError(f"{where}: pg_restore cannot read the dump's database entry: "
                           f"{_pg_error(proc.stderr)}; nothing was changed")
    return database_level_statements(proc.stdout, database.name, new_name)


def restore_database(customer_name: str, customer: Customer, db_name: str, snap: Snapshot,
                     restic: Restic, *, workdir: Path, timer: _Timer, say: Say, force: bool,
                     jobs: int, on_line: Say = _quiet, config_path: Path | None = None,
                     ) -> TargetReport:
    """Restores one database from a dump snapshot into a new database (created with the
    current database's encoding, locale and owner), runs the row-count and SQL checks on it,
    gives it the current database's settings, grants and comment, then swaps names so the
    restored copy is `<db>` and the previous one `<db>_before_restore_<stamp>`.
    Raises RestoreError (the original untouched) when any step before the swap fails.
    Command checks are not run here: they may reach the live database through an
    application, so run_restore runs them after the swap."""
    db: Database = customer.databases[db_name]
    conn = connection_for(customer, db_name)
    where = f"database {db_name}"
    try:
        exists = database_exists(conn)
        sessions = other_sessions(conn) if exists else []
    except PostgresError as exc:
        raise RestoreError(f"{where}: cannot reach {conn.where}: {_first(exc)}; "
                           f"nothing was changed") from None
    if sessions and not force:
        raise RestoreError(
            f"{where}: {len(sessions)} open connection(s) to {conn.dbname} "
            f"({', '.join(sorted(set(sessions)))}); stop those clients or rerun with --force "
            f"to terminate them; nothing was changed")
    recorded = recorded_counts_soon(customer_name, db_name, snap.id)
    with timer.step(f"{where}: fetching {dump_path(snap)} from snapshot {snap.short_id}"):
        dump_file = fetch_file(restic, snap, workdir)
    with timer.step(f"{where}: reading the archive"):
        if db.format == "custom" and not conn.server.exec:
            # The same pg_restore as the restore below: too old for the dump fails here.
            read_toc(dump_file, where=where, bin_dir=conn.server.bin_dir)
        elif db.format == "custom":
            read_toc(dump_file, where=where)
        expected, source = expected_counts(
            customer_name, db_name, snap.id, lambda: dump_row_counts(dump_file, db.format),
            recorded=recorded)
    tag = stamp()
    new_name = f"{conn.dbname}_restoring_{tag}"[:63]
    old_name = f"{conn.dbname}_before_restore_{tag}"[:63]
    new = conn.with_db(new_name)
    admin = admin_connection(conn)
    props = database_properties(conn, dump_file, db.format, exists=exists, new_name=new_name,
                                where=where)
    create = next((p for p in props if p.startswith("CREATE DATABASE")),
                  f"CREATE DATABASE {qident(new_name)} TEMPLATE template0;")
    owner = [p for p in props if re.match(r"ALTER DATABASE \S+ OWNER TO ", p)]
    later = [p for p in props if p != create and p not in owner]
    try:
        admin.psql("\n".join([create, *owner]))
    except PostgresError as exc:
        raise RestoreError(f"{where}: cannot create {new_name} on {conn.where}: "
                           f"{_first(exc)}; nothing was changed") from None
    swapped = False
    try:
        with timer.step(f"{where}: restoring into new database {new_name}"):
            _load_database(new, dump_file, db.format, jobs=jobs, on_line=on_line,
                           what=f"{where}: restore into {new_name}")
        with timer.step(f"{where}: row-count and SQL checks on {new_name}"):
            checks = run_checks(new, db, expected_counts=expected, counts_source=source,
                                sql_only=True)
        failed = [c for c in checks if not c.passed]
        if failed:
            raise RestoreError(
                f"{where}: integrity check(s) failed on the restored copy "
                f"({'; '.join(f'{c.name}: {c.detail}' for c in failed)}); not swapped in")
        if later:
            with timer.step(f"{where}: settings, grants and comment of {conn.dbname} onto "
                            f"{new_name}"):
                admin.psql("\n".join(later))
        with timer.step(f"{where}: swapping {new_name} in for {conn.dbname}"):
            if exists:
                _swap(conn, new_name, old_name, force=force)
            else:
                admin.psql(f"ALTER DATABASE {qident(new_name)} RENAME TO "
                           f"{qident(conn.dbname)};")
            swapped = True
    except (RestoreError, PostgresError) as exc:
        if not swapped:
            try:
                drop_database(conn, new_name)
                cleanup = f"the partial copy {new_name} was dropped"
            except PostgresError:
                cleanup = f"drop the partial copy {new_name} by hand"
            state = (f"the original database {conn.dbname} is untouched" if exists
                     else f"{conn.dbname} was not created")
            raise RestoreError(f"{_first(exc)}; {state}; {cleanup}") from None
        raise
    report = TargetReport("database", db_name, snap.id, changed=True, checks=checks)
    if exists:
        report.undo = undo_command(customer_name, db_name, tag, config_path)
        report.detail = (f"{conn.dbname} now holds snapshot {snap.short_id}; the previous "
                         f"database is kept as {old_name}")
    else:
        report.detail = f"{conn.dbname} created from snapshot {snap.short_id}"
    say(f"{where}: {report.detail}")
    return report


def undo_command(customer_name: str, db_name: str, tag: str,
                 config_path: Path | None = None) -> str:
    """The one command that puts the previous database back (see undo_restore)."""
    import shlex

    return shlex.join(["axe", *(["--config", str(config_path)] if config_path else []),
                       "restore", "--customer", customer_name, "--target", db_name,
                       "--undo", tag])


def undo_restore(config: Site, customer_name: str, target: str, tag: str, *,
                 say: Say = print) -> str:
    """`axe restore --undo <stamp>`: swaps `<db>_before_restore_<stamp>` back in as `<db>`;
    the restored copy is kept as `<db>_restored_<stamp>`. Clients reconnect after a restore,
    and a database with sessions cannot be renamed, so this closes the database to new
    connections, terminates the open ones, renames in one transaction and opens both again.
    Returns the outcome line; raises RestoreError."""
    customer = config.customer(customer_name)
    tgt = resolve_target(customer_name, customer, target)
    if tgt.kind != "database":
        raise RestoreError(f"{target} is a folder; --undo is for database restores")
    conn = connection_for(customer, tgt.name)
    kept = f"{conn.dbname}_before_restore_{tag}"[:63]
    restored = f"{conn.dbname}_restored_{tag}"[:63]
    try:
        prefix = f"{conn.dbname}_before_restore_"
        names = [r[0] for r in admin_connection(conn).psql(
            f"SELECT datname FROM pg_database WHERE left(datname, {len(prefix)}) = "
            f"{qliteral(prefix)} ORDER BY 1;")]
    except PostgresError as exc:
        raise RestoreError(f"database {tgt.name}: cannot reach {conn.where}: "
                           f"{_first(exc)}; nothing was changed") from None
    if kept not in names:
        raise RestoreError(f"database {tgt.name}: no {kept} on {conn.where} (kept copies: "
                           f"{', '.join(names) or 'none'}); nothing was changed")
    say(f"database {tgt.name}: closing {conn.dbname} to new connections and terminating "
        f"open ones to swap {kept} back in")
    try:
        _swap(conn, kept, restored, force=True)
    except PostgresError as exc:
        raise RestoreError(f"database {tgt.name}: the swap back failed: {_first(exc)}; "
                           f"{conn.dbname} is unchanged") from None
    line = (f"{conn.dbname} holds the database from before the restore again; the restored "
            f"copy is kept as {restored}")
    say(f"database {tgt.name}: {line}")
    return line


def _load_database(new: Connection, dump_file: Path, fmt: str, *, jobs: int, on_line: Say,
                   what: str) -> None:
    env = new.env()
    if fmt == "plain":
        argv = [*new.tool("psql"), *new.conn_args(), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "--no-password", "-f", "-"]
        with open(dump_file, "rb") as fh:
            run_tool(argv, env=env, stdin=fh, on_line=on_line, what=what)
        return
    base = [*new.tool("pg_restore"), *new.conn_args(), "--no-password", "--exit-on-error", "-v"]
    if new.server.exec:
        # The tools run elsewhere (a container): feed the archive on stdin (no -j then).
        with open(dump_file, "rb") as fh:
            run_tool(base, env=env, stdin=fh, on_line=on_line, what=what)
    else:
        run_tool([*base, "-j", str(max(1, jobs)), str(dump_file)], env=env, on_line=on_line,
                 what=what)


def _swap(conn: Connection, new_name: str, old_name: str, *, force: bool) -> None:
    """Renames `<db>` to `old_name` and `new_name` to `<db>` in one transaction."""
    admin = admin_connection(conn)
    current = qident(conn.dbname)
    if force:
        # Keep clients from reconnecting between terminate and rename.
        admin.psql(f"ALTER DATABASE {current} WITH ALLOW_CONNECTIONS false;")
        admin.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   f"WHERE datname = {qliteral(conn.dbname)} AND pid <> pg_backend_pid();")
    else:
        sessions = other_sessions(conn)
        if sessions:
            raise RestoreError(
                f"database {conn.dbname}: {len(sessions)} client(s) connected during the "
                f"restore ({', '.join(sorted(set(sessions)))}); rerun with --force")
    try:
        admin.psql(f"BEGIN; ALTER DATABASE {current} RENAME TO {qident(old_name)}; "
                   f"ALTER DATABASE {qident(new_name)} RENAME TO {current}; COMMIT;")
    finally:
        if force:
            # Whichever name the old database has now, let clients in again.
            for db in (old_name, conn.dbname):
                try:
                    admin.psql(f"ALTER DATABASE {qident(db)} WITH ALLOW_CONNECTIONS true;")
                except PostgresError:
                    pass


# --- table restore -----------------------------------------------------------------------------


def find_table(entries: list[TocEntry], wanted: str, where: str) -> TocEntry:
    """The TABLE entry `--table` names (`journal_line`, `public.journal_line`, `axec.employees`,
    or a quoted name); RestoreError listing the tables of the dump otherwise."""
    tables = [e for e in entries if e.desc == "TABLE"]
    schema, _, name = wanted.rpartition(".")
    name = name.strip('"')
    schema = schema.strip('"')
    hits = [e for e in tables if e.name == name and (not schema or e.schema == schema)]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(f"{e.schema}.{e.name}" for e in tables) or "none"
    if not hits:
        raise RestoreError(f"{where}: no table {wanted!r} in the dump (tables: {known}); "
                           f"nothing was changed")
    raise RestoreError(f"{where}: {wanted!r} is ambiguous ({known}); say schema.table")


def _dependencies(dump_file: Path) -> dict[int, set[int]]:
    """Each schema entry's dependencies (dump ids), from the `-- Dependencies:` comments that
    `pg_restore -s -v` writes before every entry."""
    proc = subprocess.run([pg_restore_bin(), "-s", "-v", "-f", "-", str(dump_file)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RestoreError(f"pg_restore cannot read the dump: {_pg_error(proc.stderr)}")
    deps: dict[int, set[int]] = {}
    current: int | None = None
    for line in proc.stdout.splitlines():
        m = re.match(r"^-- TOC entry (\d+) ", line)
        if m:
            current = int(m.group(1))
            deps[current] = set()
        elif current is not None and line.startswith("-- Dependencies: "):
            deps[current] = {int(x) for x in line.split(":", 1)[1].split()}
    return deps


def table_entries(dump_file: Path, entries: list[TocEntry],
                  table: TocEntry) -> tuple[list[TocEntry], list[TocEntry]]:
    """The entries that make up one table, found through the archive's dependencies:
    (its own: the table, owned sequences, defaults, data, sequence values, constraints,
    indexes, triggers, its foreign keys, comments, grants; and the foreign keys and views of
    other objects that depend on it)."""
    deps = _dependencies(dump_file)
    tid = table.dump_id
    sequences = {e.dump_id for e in entries
                 if e.desc == "SEQUENCE" and tid in deps.get(e.dump_id, set())}
    seq_names = {(e.schema, e.name) for e in entries if e.dump_id in sequences}
    own_ids = {tid, *sequences}
    mine: list[TocEntry] = []
    others: list[TocEntry] = []
    for e in entries:
        on = deps.get(e.dump_id, set())
        if e.dump_id in own_ids:
            mine.append(e)
        elif e.desc == "TABLE DATA" and (e.schema, e.name) == (table.schema, table.name):
            mine.append(e)
        elif e.desc in ("SEQUENCE OWNED BY", "SEQUENCE SET") and (e.schema, e.name) in seq_names:
            mine.append(e)
        elif e.desc == "FK CONSTRAINT" and tid in on:
            own = e.schema == table.schema and e.name.startswith(table.name + " ")
            (mine if own else others).append(e)
        elif e.desc in ("DEFAULT", "CONSTRAINT", "INDEX", "TRIGGER", "RULE", "POLICY",
                        "ROW SECURITY") and tid in on:
            mine.append(e)
        elif e.desc in ("VIEW", "MATERIALIZED VIEW") and tid in on:
            others.append(e)
    ids = {e.dump_id for e in mine} | {e.dump_id for e in others}
    for e in entries:
        if e.desc in ("COMMENT", "ACL") and deps.get(e.dump_id, set()) & ids:
            (mine if deps[e.dump_id] & {x.dump_id for x in mine} else others).append(e)
    order = {e.dump_id: i for i, e in enumerate(entries)}
    return (sorted(mine, key=lambda e: order[e.dump_id]),
            sorted(others, key=lambda e: order[e.dump_id]))


def _relation_exists(conn: Connection, relation_sql: str) -> bool:
    return conn.psql(f"SELECT to_regclass({qliteral(relation_sql)}) IS NOT NULL;")[0][0] == "t"


def _missing(conn: Connection, others: list[TocEntry]) -> list[TocEntry]:
    """The foreign keys and views of other objects, dependent on a dropped table, that are
    missing from the live database too (dropped with it by CASCADE); with their comments."""
    keep: list[TocEntry] = []
    for e in others:
        if e.desc == "FK CONSTRAINT":
            table, _, conname = e.name.partition(" ")
            rel = f"{qident(e.schema)}.{qident(table)}"
            rows = conn.psql(f"SELECT 1 FROM pg_constraint WHERE conname = {qliteral(conname)} "
                             f"AND conrelid = to_regclass({qliteral(rel)});")
            if not rows:
                keep.append(e)
        elif e.desc in ("VIEW", "MATERIALIZED VIEW"):
            rel = f"{qident(e.schema)}.{qident(e.name)}"
            if not _relation_exists(conn, rel):
                keep.append(e)
    names = {e.name for e in keep}
    keep += [e for e in others if e.desc in ("COMMENT", "ACL")
             and e.name.split(" ", 1)[-1] in names]
    return keep


def _script(dump_file: Path, entries: list[TocEntry], workdir: Path, name: str) -> Path:
    """Writes the SQL pg_restore would run for `entries` (a `-L` list) to a file."""
    listing = workdir / f"{name}.list"
    listing.write_text("\n".join(e.line for e in entries) + "\n")
    out = workdir / f"{name}.sql"
    proc = subprocess.run([pg_restore_bin(), "-L", str(listing), "-f", str(out),
                           str(dump_file)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RestoreError(f"pg_restore cannot read the dump: {_pg_error(proc.stderr)}")
    return out


def _fk_guard(conn: Connection, table_sql: str) -> str:
    """SQL that raises when any foreign key from or to the table has orphans (the row
    replacement runs with triggers off, so the keys are checked here, in the transaction)."""
    rows = conn.psql(
        # Schema-qualified names: the restore script empties search_path.
        "SELECT c.conname, "
        "(SELECT format('%I.%I', n.nspname, r.relname) FROM pg_class r JOIN pg_namespace n "
        " ON n.oid = r.relnamespace WHERE r.oid = c.conrelid), "
        "(SELECT format('%I.%I', n.nspname, r.relname) FROM pg_class r JOIN pg_namespace n "
        " ON n.oid = r.relnamespace WHERE r.oid = c.confrelid), "
        "(SELECT string_agg(format('c.%I = p.%I', a.attname, b.attname), ' AND ') "
        " FROM unnest(c.conkey, c.confkey) AS k(ck, pk) "
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.ck "
        " JOIN pg_attribute b ON b.attrelid = c.confrelid AND b.attnum = k.pk), "
        "(SELECT string_agg(format('c.%I IS NOT NULL', a.attname), ' AND ') "
        " FROM unnest(c.conkey) AS k(ck) "
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.ck) "
        "FROM pg_constraint c WHERE c.contype = 'f' "
        f"AND (c.conrelid = {qliteral(table_sql)}::regclass "
        f"OR c.confrelid = {qliteral(table_sql)}::regclass);")
    guards = []
    for conname, child, parent, join, notnull in rows:
        message = qliteral(f"axe: foreign key {conname} ({child} -> {parent}) would break")
        guards.append(
            f"DO $axe$ BEGIN IF EXISTS (SELECT 1 FROM {child} c WHERE {notnull} AND NOT EXISTS "
            f"(SELECT 1 FROM {parent} p WHERE {join})) THEN RAISE EXCEPTION {message}; "
            f"END IF; END $axe$;")
    return "\n".join(guards)


def _missing_own(conn: Connection, table_sql: str, mine: list[TocEntry]) -> list[TocEntry]:
    """The table's own indexes, constraints, foreign keys and triggers in the dump that the
    live table lacks (dropped after the backup), with their comments."""
    keep: list[TocEntry] = []
    for e in mine:
        if e.desc == "INDEX":
            if not _relation_exists(conn, f"{qident(e.schema)}.{qident(e.name)}"):
                keep.append(e)
        elif e.desc in ("CONSTRAINT", "FK CONSTRAINT", "TRIGGER"):
            _, _, objname = e.name.partition(" ")
            catalog = ("SELECT 1 FROM pg_trigger WHERE tgname = {n} AND tgrelid = {t}"
                       if e.desc == "TRIGGER" else
                       "SELECT 1 FROM pg_constraint WHERE conname = {n} AND conrelid = {t}")
            if not conn.psql(catalog.format(n=qliteral(objname),
                                            t=f"{qliteral(table_sql)}::regclass") + ";"):
                keep.append(e)
    names = {e.name for e in keep}
    keep += [e for e in mine if e.desc == "COMMENT" and e.name.split(" ", 1)[-1] in names]
    return keep


def _lock_holders(conn: Connection, table_sql: str) -> str:
    """The other sessions holding or waiting for a lock on the table: pid, application,
    state."""
    try:
        rows = conn.psql(
            "SELECT DISTINCT a.pid, coalesce(nullif(a.application_name, ''), 'no name'), "
            "coalesce(a.state, '?') FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            f"WHERE l.relation = {qliteral(table_sql)}::regclass "
            "AND l.pid <> pg_backend_pid() ORDER BY 1;")
    except PostgresError as exc:
        return f"cannot list them: {_first(exc)}"
    return ", ".join(f"pid {pid} ({app}, {state})" for pid, app, state in rows) or \
        "no session holds it any more"


def restore_table(customer: Customer, db_name: str, table_name: str, snap: Snapshot,
                  restic: Restic, *, workdir: Path, timer: _Timer, say: Say,
                  dry_run: bool = False, lock_timeout: float = 10.0) -> TargetReport:
    """Replaces one table's rows with the snapshot's inside one transaction (or, when the
    table was dropped, recreates it with its keys, indexes, constraints and the foreign keys
    that pointed at it). Afterwards the table holds exactly the snapshot's rows, or — on any
    error — is unchanged. Raises RestoreError."""
    db = customer.databases[db_name]
    conn = connection_for(customer, db_name)
    where = f"table {table_name} of database {db_name}"
    if db.format != "custom":
        raise RestoreError(f"{where}: database {db_name} is dumped in plain format; a table "
                           f"restore needs a custom-format dump (restore the database "
                           f"instead); nothing was changed")
    with timer.step(f"{where}: fetching {dump_path(snap)} from snapshot {snap.short_id}"):
        dump_file = fetch_file(restic, snap, workdir)
    entries, _ = read_toc(dump_file, where=where)
    table = find_table(entries, table_name, where)
    # Always quoted in our own SQL: pg_dump's spelling quotes reserved words too.
    table_sql = f"{qident(table.schema)}.{qident(table.name)}"
    try:
        exists = _relation_exists(conn, table_sql)
        # The name as pg_dump and the row counts spell it (public.journal_line).
        table_key = conn.psql(f"SELECT quote_ident({qliteral(table.schema)}) || '.' || "
                              f"quote_ident({qliteral(table.name)});")[0][0]
    except PostgresError as exc:
        raise RestoreError(f"{where}: cannot reach {conn.where}: {_first(exc)}; "
                           f"nothing was changed") from None
    mine, others = table_entries(dump_file, entries, table)
    rebuilt: list[TocEntry] = []
    if exists:
        rebuilt = _missing_own(conn, table_sql, mine)
        order = {e.dump_id: i for i, e in enumerate(entries)}
        chosen = sorted([e for e in mine if e.desc in ("TABLE DATA", "SEQUENCE SET")]
                        + rebuilt, key=lambda e: order[e.dump_id])
    else:
        chosen = mine + _missing(conn, others)
    brought = ", ".join(f"{e.desc.lower()} {e.name.split(' ', 1)[-1]}" for e in rebuilt
                        if e.desc != "COMMENT")
    if dry_run:
        steps = [f"replace the rows of {table_key} inside one transaction (triggers off, "
                 f"foreign keys to and from it re-checked before commit)"
                 + (f", recreating its missing {brought}" if brought else "") if exists else
                 f"recreate the dropped table {table_key} with " +
                 ", ".join(sorted({e.desc for e in chosen}))]
        return TargetReport("table", table_key, snap.id, detail="; ".join(steps))
    script = _script(dump_file, chosen, workdir, "table")
    with open(script, "rb") as fh:
        # The script holds exactly one table's data.
        expected = sum(count_script_rows(iter(fh.readline, b"")).values())
    body = script.read_bytes()
    if exists:
        referenced = conn.psql("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND "
                               f"confrelid = {qliteral(table_sql)}::regclass;")[0][0] != "0"
        # TRUNCATE is much faster but refuses a table other tables' foreign keys point at;
        # both are undone by a rollback.
        empty = "DELETE FROM" if referenced else "TRUNCATE"
        # A client holding the table (an open transaction) must not make this hang: the
        # lock is waited for lock_timeout seconds, then the restore is refused.
        prefix = (f"SET LOCAL lock_timeout = '{max(1, int(lock_timeout * 1000))}ms';\n"
                  f"LOCK TABLE {table_sql} IN ACCESS EXCLUSIVE MODE;\n"
                  f"SET LOCAL lock_timeout = 0;\n"
                  f"SET LOCAL session_replication_role = replica;\n"
                  f"{empty} {table_sql};\n")
        suffix = _fk_guard(conn, table_sql)
    else:
        prefix, suffix = "", ""
    message = qliteral(f"axe: {table_key} would not hold the {expected} rows of the snapshot")
    count_guard = (f"DO $axe$ BEGIN IF (SELECT count(*) FROM {table_sql}) <> {expected} THEN "
                   f"RAISE EXCEPTION {message}; END IF; END $axe$;")
    full = workdir / "table-restore.sql"
    full.write_bytes(prefix.encode() + body + b"\n" + suffix.encode() + b"\n"
                     + count_guard.encode() + b"\n")
    argv = [*conn.tool("psql"), *conn.conn_args(), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1",
            "--no-password", "-f", "-"]
    with timer.step(f"{where}: replacing the rows in one transaction" if exists else
                    f"{where}: recreating the table in one transaction"):
        with open(full, "rb") as fh:
            try:
                run_tool(argv, env=conn.env(), stdin=fh, what=f"{where}")
            except RestoreError as exc:
                if exists and "lock timeout" in str(exc):
                    raise RestoreError(
                        f"{where}: {table_key} stayed locked for {lock_timeout:g} s by "
                        f"{_lock_holders(conn, table_sql)}; nothing was changed, "
                        f"{table_key} is unchanged; end those transactions (or stop the "
                        f"clients) and rerun, or raise --lock-timeout") from None
                raise RestoreError(f"{_first(exc)}; the transaction was rolled back, "
                                   f"{table_key} is unchanged") from None
    with timer.step(f"{where}: row-count and SQL checks"):
        checks = run_checks(conn, db, expected_counts={table_key: expected},
                            count_tables=[table_key], sql_only=True)
    detail = (f"{table_key} now holds the {expected} rows of snapshot {snap.short_id}"
              + (f"; recreated its missing {brought}" if brought else "")
              if exists else f"{table_key} recreated with {expected} rows from snapshot "
                             f"{snap.short_id}")
    say(f"{where}: {detail}")
    return TargetReport("table", table_key, snap.id, changed=True, detail=detail,
                        checks=checks)


# --- folders and roles -------------------------------------------------------------------------


def restore_folder(customer: Customer, folder_name: str, snap: Snapshot, restic: Restic, *,
                   timer: _Timer, say: Say, in_place: bool, dest: str | None,
                   dry_run: bool = False) -> TargetReport:
    """`restic restore` of a folder snapshot into `dest` (default: a new folder beside the
    original, `<path>.restored-<stamp>`), or over the original with `in_place`."""
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
        target = home.with_name(f"{home.name}.restored-{stamp()}")
    if not in_place and target.exists() and any(target.iterdir()):
        raise RestoreError(f"folder {folder_name}: {target} exists and is not empty; choose "
                           f"another --dest (or --in-place to restore over the original)")
    detail = f"snapshot {snap.short_id} of {original} into {target}" + (
        " (in place: changed files overwritten, other files kept)" if in_place else "")
    if dry_run:
        return TargetReport("folder", folder_name, snap.id, detail=detail)
    with timer.step(f"folder {folder_name}: restoring {detail}"):
        try:
            restic.run(["restore", f"{snap.id}:{original}", "--target", str(target)],
                       what=f"restoring folder {original}")
        except ResticError as exc:
            raise RestoreError(f"folder {folder_name}: {_first(exc)}") from None
    files = sum(1 for p in target.rglob("*") if p.is_file())
    check = CheckResult("files", "builtin", files > 0 or not snap.summary.get(
        "total_files_processed"), f"{files} file(s) in {target}")
    say(f"folder {folder_name}: restored into {target}")
    return TargetReport("folder", folder_name, snap.id, changed=True, detail=detail,
                        checks=[check])


_ROLE_NAME = r'("(?:[^"]|"")+"|[^\s;"]+)'
_ROLE_STMT = re.compile(rf"^(?:CREATE|ALTER) ROLE {_ROLE_NAME}|^COMMENT ON ROLE {_ROLE_NAME}")
_GRANT_ROLE = re.compile(rf"^GRANT {_ROLE_NAME} TO {_ROLE_NAME}")


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def missing_roles_script(script: str, existing: set[str]) -> tuple[str, list[str], list[str]]:
    """From `pg_dumpall --globals-only` output: only the statements that create the roles
    missing on the server (CREATE ROLE, its ALTER ROLE with password and settings, comment)
    and the memberships that involve them. Statements about roles that exist are dropped:
    replaying `ALTER ROLE … PASSWORD` would reset a password changed since the backup.
    Returns (script, missing roles, existing roles in the dump)."""
    missing: list[str] = []
    kept_existing: list[str] = []
    out: list[str] = []
    for stmt in split_statements(script):
        m = _ROLE_STMT.match(stmt)
        if m:
            role = _unquote(m.group(1) or m.group(2))
            if role in existing:
                if role not in kept_existing:
                    kept_existing.append(role)
                continue
            if stmt.startswith("CREATE ROLE") and role not in missing:
                missing.append(role)
            out.append(stmt)
            continue
        g = _GRANT_ROLE.match(stmt)
        if g:
            if {_unquote(g.group(1)), _unquote(g.group(2))} & set(missing):
                out.append(stmt)
            continue
        if stmt.startswith("SET "):
            out.append(stmt)
        # Anything else (tablespaces, which need their folders) is left to the operator.
    return "\n".join(out) + "\n", missing, kept_existing


def restore_roles(customer: Customer, server_name: str, snap: Snapshot, restic: Restic, *,
                  workdir: Path, timer: _Timer, say: Say) -> TargetReport:
    """Creates the roles of a server's `pg_dumpall --globals-only` that are missing on it (so
    a fresh server can take the dumps' owners), with their memberships. Roles that exist are
    left exactly as they are, passwords included."""
    server = customer.servers[server_name]
    db_name = next(n for n, d in customer.databases.items() if d.server == server_name)
    conn = Connection(server_name, server, customer.database_name(db_name))
    admin = admin_connection(conn)
    where = f"roles of {server_name}"
    try:
        existing = {r[0] for r in admin.psql("SELECT rolname FROM pg_roles;")}
    except PostgresError as exc:
        raise RestoreError(f"{where}: cannot reach {conn.where}: {_first(exc)}; "
                           f"nothing was changed") from None
    with timer.step(f"{where}: fetching from snapshot {snap.short_id}"):
        dumped = fetch_file(restic, snap, workdir)
    script, missing, present = missing_roles_script(
        dumped.read_text(errors="replace"), existing)
    errors: list[str] = []
    if missing:
        argv = [*conn.tool("psql"), *admin.conn_args(), "-X", "-q", "--no-password", "-f", "-"]
        with timer.step(f"{where}: creating {len(missing)} missing role(s)"):
            proc = subprocess.run(argv, input=script, capture_output=True, text=True,
                                  env=conn.env())
        errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
        if proc.returncode != 0 and not errors:
            errors = [_pg_error(proc.stderr)]
    detail = (f"created {len(missing)} missing role(s)"
              + (f" ({', '.join(missing)})" if missing else "")
              + f"; {len(present)} existing role(s) left as they are (passwords unchanged)"
              + (f"; {len(errors)} error(s): {errors[0]}" if errors else ""))
    say(f"{where}: {detail}")
    return TargetReport("roles", server_name, snap.id, changed=bool(missing), detail=detail,
                        checks=[CheckResult(f"roles-{server_name}", "builtin", not errors,
                                            detail)])


def run_post_restore(commands: list[list[str]], say: Say) -> list[str]:
    """Runs a database's configured post-restore commands (argv lists); returns one line each."""
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


# --- the whole command -------------------------------------------------------------------------


@contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="axe-restore-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _split_qualified(text: str) -> tuple[str, str]:
    """`public.journal_line`, `journal_line`, `"My Schema"."T.x"` -> (schema or "", name)."""
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


def _table_matches(wanted: str, schema: str, name: str) -> bool:
    w_schema, w_name = _split_qualified(wanted)
    return w_name == name and (not w_schema or w_schema == schema)


def locate_table(customer_name: str, customer: Customer, the_set: BackupSet, table: str,
                 restic: Restic, *, workdir: Path, say: Say, where: str) -> str:
    """`--table` without `--target`: the one database of the set whose dump holds the table
    (from the tier-A row counts recorded for the dump's snapshot, else from the dump's own
    table of contents). RestoreError listing the candidates when none or several hold it."""
    candidates: list[str] = []
    searched: list[str] = []
    for db_name, db in customer.databases.items():
        snap = the_set.member("pgdump", db_name)
        if snap is None:
            continue
        searched.append(db_name)
        counts = dump_time_counts(customer_name, db_name, snap.id)
        if counts is not None:
            tables = [_split_qualified(key) for key in counts]
        elif db.format == "custom":
            sub = workdir / f"locate-{db_name}"
            sub.mkdir(exist_ok=True)
            dump_file = fetch_file(restic, snap, sub)
            entries, _ = read_toc(dump_file, where=f"database {db_name}")
            tables = [(e.schema, e.name) for e in entries if e.desc == "TABLE"]
            shutil.rmtree(sub, ignore_errors=True)
        else:
            continue  # a plain dump cannot give one table back anyway
        if any(_table_matches(table, sch, name) for sch, name in tables):
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


_SNAPSHOT_KIND = {"roles": "roles", "database": "pgdump", "table": "pgdump", "folder": "files"}


def run_restore(config: Site, opts: RestoreOptions, *, say: Say = print,
                on_line: Say = _quiet, now: datetime | None = None) -> RestoreReport:
    """`axe restore`: picks the set (as-of, or last-valid with a check), then restores the
    target database, table or folder — or, with no target, every member of the set (roles
    first). `--table` without `--target` finds the database whose dump holds the table.
    With `dry_run` it prints the plan and changes nothing.

    A single target that fails raises RestoreError. With no target every member is tried;
    a failing one is recorded in its TargetReport (`error`) and the rest go on, so the undo
    commands of those already swapped are never lost."""
    customer = config.customer(opts.customer)
    if not customer.backs_up:
        raise RestoreError(f"{opts.customer} has no tiers.local; nothing to restore")
    target = resolve_target(opts.customer, customer, opts.target) if opts.target else None
    if opts.table and target is not None and target.kind != "database":
        raise RestoreError(f"--table needs a database; {opts.target} is a folder")
    if opts.as_of == LAST_VALID and not opts.check:
        db_names = [target.name] if target and target.kind == "database" else \
            list(customer.databases)
        known = "; ".join(f"{n}: {', '.join(check_names(customer.databases[n]))}"
                          for n in db_names)
        raise RestoreError(f"--as-of last-valid needs --check NAME, the check the good "
                           f"snapshot must pass (checks: {known}); or find the time with "
                           f"`axe find-last-valid` and give it to --as-of")
    tz = tier_timezone(customer)
    tier, peer, restic = open_source(config, opts.customer, opts.tier, opts.source)
    where = f"{tier_label(tier, peer)} of {opts.customer}"
    sets = load_sets(restic, opts.customer, where)
    if opts.table and target is None:
        # Which database: looked up in the set the restore would use (for last-valid, the
        # newest: tables rarely move between databases).
        probe = sets[-1] if opts.as_of == LAST_VALID and sets else choose_set(
            sets, opts.as_of, tz, where)
        with _workdir() as wd:
            target = Target("database", locate_table(opts.customer, customer, probe,
                                                     opts.table, restic, workdir=wd, say=say,
                                                     where=where))
    search: list[str] = []
    if opts.as_of == LAST_VALID:
        if target is None or target.kind != "database":
            raise RestoreError("--as-of last-valid needs --target DATABASE (or --table) and "
                               "--check NAME (a check configured for it, or row-counts)")
        assert opts.check is not None
        the_set, search = find_last_valid(opts.customer, customer, target.name, opts.check,
                                          sets, restic, say=say, where=where)
    else:
        the_set = choose_set(sets, opts.as_of, tz, where)
    report = RestoreReport(opts.customer, tier, peer, the_set.time, the_set.run_id,
                           opts.dry_run, search=search)
    timer = _Timer(report, say)
    zone = ZoneInfo(tz)
    age = (now or datetime.now(zone)) - the_set.time
    say(f"set {the_set.run_id[:12]} of {the_set.time.astimezone(zone):%Y-%m-%d %H:%M:%S %Z} "
        f"from {where} (age {_age(age.total_seconds())})")

    work: list[tuple[str, str]] = []  # (kind, name) in restore order
    if target is None:
        servers = sorted({d.server for d in customer.databases.values()})
        work += [("roles", s) for s in servers if the_set.member("roles", s)]
        work += [("database", d) for d in customer.databases]
        work += [("folder", f) for f in customer.folders]
    elif target.kind == "database":
        work.append(("table" if opts.table else "database", target.name))
    else:
        work.append(("folder", target.name))

    for kind, name in work:
        snap = member(the_set, _SNAPSHOT_KIND[kind], name, where)
        size = snapshot_size(snap)
        report.plan.append(
            f"{kind} {opts.table + ' of ' if kind == 'table' else ''}{name}: snapshot "
            f"{snap.short_id} ({tier_label(tier, peer)}, "
            f"{snap.time.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}, {_size(size)})")
    if opts.dry_run:
        _dry_run(customer, opts, the_set, work, report, restic, timer, where, say)
        return report

    whole_set = target is None
    with _workdir() as workdir:
        for kind, name in work:
            snap = member(the_set, _SNAPSHOT_KIND[kind], name, where)
            sub = workdir / f"{kind}-{name}"
            sub.mkdir()
            try:
                if kind == "roles":
                    result = restore_roles(customer, name, snap, restic, workdir=sub,
                                           timer=timer, say=say)
                elif kind == "database":
                    result = restore_database(opts.customer, customer, name, snap, restic,
                                              workdir=sub, timer=timer, say=say,
                                              force=opts.force, jobs=opts.jobs,
                                              on_line=on_line, config_path=config.path)
                elif kind == "table":
                    result = restore_table(customer, name, opts.table or "", snap, restic,
                                           workdir=sub, timer=timer, say=say,
                                           lock_timeout=opts.lock_timeout)
                else:
                    result = restore_folder(customer, name, snap, restic, timer=timer,
                                            say=say, in_place=opts.in_place, dest=opts.dest)
            except (RestoreError, PostgresError, ResticError) as exc:
                if not whole_set:
                    raise
                message = _first(exc)
                say(f"{kind} {name}: FAILED: {message}")
                report.targets.append(TargetReport(cast(TargetKind, kind), name, snap.id,
                                                   error=message))
                continue
            finally:
                shutil.rmtree(sub, ignore_errors=True)
            report.targets.append(result)
            if kind in ("database", "table"):
                after_restore(customer, name, result, timer, say)
    return report


def after_restore(customer: Customer, db_name: str, result: TargetReport, timer: _Timer,
                  say: Say) -> None:
    """After a database or table is in place: the post-restore commands (e.g. restarting the
    application), then the command checks (which may go through that application, so they
    run against what is live now). Their results join the target's check table."""
    db = customer.databases[db_name]
    result.post_restore = run_post_restore(db.post_restore, say)
    if any(isinstance(c, IntegrityCommand) for c in db.integrity):
        conn = connection_for(customer, db_name)
        with timer.step(f"database {db_name}: command checks against {conn.dbname}"):
            result.checks += run_checks(conn, db, expected_counts=None, commands_only=True)


def _dry_run(customer: Customer, opts: RestoreOptions, the_set: BackupSet,
             work: list[tuple[str, str]], report: RestoreReport, restic: Restic,
             timer: _Timer, where: str, say: Say) -> None:
    say("dry run: nothing will be changed")
    for (kind, name), line in zip(work, report.plan, strict=True):
        say(f"  would restore {line}")
        snap = member(the_set, _SNAPSHOT_KIND[kind], name, where)
        if kind == "database":
            conn = connection_for(customer, name)
            say(f"    would replace {describe_database(conn)}")
            say(f"    steps: fetch the dump; check it with pg_restore -l; create "
                f"{conn.dbname}_restoring_<stamp> with the current database's encoding, "
                f"locale and owner; restore into it; run the row-count and SQL checks; give it "
                f"the current settings, grants and comment; rename {conn.dbname} to "
                f"{conn.dbname}_before_restore_<stamp> and the new one to {conn.dbname}")
        elif kind == "table":
            with _workdir() as wd:
                t = restore_table(customer, name, opts.table or "", snap, restic,
                                  workdir=wd, timer=_Timer(None, _quiet), say=_quiet,
                                  dry_run=True)
            conn = connection_for(customer, name)
            current = _table_rows(conn, t.name)
            say(f"    would replace table {t.name} of {conn.dbname} (now {current}): "
                f"{t.detail}")
        elif kind == "folder":
            t = restore_folder(customer, name, snap, restic, timer=timer, say=_quiet,
                               in_place=opts.in_place, dest=opts.dest, dry_run=True)
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


def _table_rows(conn: Connection, table_sql: str) -> str:
    try:
        if not _relation_exists(conn, table_sql):
            return "missing"
        return f"{conn.psql(f'SELECT count(*) FROM {table_sql};')[0][0]} rows"
    except PostgresError as exc:
        return f"cannot inspect: {_first(exc)}"


def _age(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"


def _size(n: int) -> str:
    from axe_pipelines.progress import human_bytes

    return human_bytes(n) if n else "size unknown"


# --- staging: integrity-check and last-valid ---------------------------------------------------


def stage_and_check(customer_name: str, customer: Customer, db_name: str, snap: Snapshot,
                    restic: Restic, staging: Staging, *, only: Sequence[str] | None = None,
                    label: str = "") -> list[CheckResult]:
    """Restores a dump snapshot into a new database on the staging server (owners and grants
    dropped: staging has no roles) and runs the checks; returns their results."""
    db = customer.databases[db_name]
    with _workdir() as workdir:
        recorded = recorded_counts_soon(customer_name, db_name, snap.id)
        dump_file = fetch_file(restic, snap, workdir)
        where = f"database {db_name} ({snap.short_id})"
        if db.format == "custom":
            read_toc(dump_file, where=where)
        expected, source = expected_counts(
            customer_name, db_name, snap.id, lambda: dump_row_counts(dump_file, db.format),
            recorded=recorded)
        name = f"{customer.database_name(db_name)}_{snap.short_id}{label}"[:63]
        conn = staging.connection(name)
        admin_connection(conn).psql(f"DROP DATABASE IF EXISTS {qident(name)}; "
                                    f"CREATE DATABASE {qident(name)};")
        if db.format == "plain":
            argv = [*conn.tool("psql"), *conn.conn_args(), "-X", "-q", "-f", str(dump_file)]
        else:
            argv = [*conn.tool("pg_restore"), *conn.conn_args(), "--no-owner",
                    "--no-privileges", "-j", "2", str(dump_file)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=conn.env())
        # Without owners some statements (e.g. extensions' comments) may warn; an archive
        # that cannot be read at all shows up in the row-count check.
        problems = _pg_error(proc.stderr) if proc.returncode != 0 else ""
        results = run_checks(conn, db, expected_counts=expected, only=only,
                             counts_source=source)
        if problems:
            results.insert(0, CheckResult("restore", "builtin", False,
                                          f"pg_restore reported: {problems}"))
        try:
            admin_connection(conn).psql(f"DROP DATABASE IF EXISTS {qident(name)} WITH (FORCE);")
        except PostgresError:
            pass
        return results


def check_names(database: Database) -> list[str]:
    return [ROW_COUNTS, *(c.name for c in database.integrity)]


def find_last_valid(customer_name: str, customer: Customer, db_name: str, check: str,
                    sets: list[BackupSet],
                    restic: Restic, *, say: Say = print, where: str = "",
                    staging: Staging | None = None) -> tuple[BackupSet, list[str]]:
    """The newest set whose dump of `db_name` passes `check`, found by binary search over the
    sets (silent corruption, once in, stays in later snapshots): the newest set first, then
    halving — about log2(n) staging restores instead of n. Returns (set, probe lines);
    RestoreError when no set passes."""
    db = customer.databases[db_name]
    names = check_names(db)
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
                                  only=[check])
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
    customer: str
    tier: str
    target: str
    snapshot_id: str
    set_time: datetime
    live: bool
    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)


def run_integrity_check(config: Site, customer_name: str, target: str, *,
                        as_of: str = "latest", tier: str | None = None,
                        source: str | None = None, live: bool = False,
                        only: Sequence[str] | None = None,
                        say: Say = print) -> IntegrityReport:
    """`axe integrity-check`: restores the target's dump of the chosen set into a throwaway
    staging server and runs the checks there; with `live`, runs the SQL checks (and the
    row-count check against the dump) on the live database instead."""
    customer = config.customer(customer_name)
    tgt = resolve_target(customer_name, customer, target)
    if tgt.kind != "database":
        raise RestoreError(f"{target} is a folder; integrity checks are for databases")
    db = customer.databases[tgt.name]
    if only:
        unknown = [c for c in only if c not in check_names(db)]
        if unknown:
            raise RestoreError(f"database {tgt.name} has no check {unknown[0]!r} (checks: "
                               f"{', '.join(check_names(db))})")
    tier_name, peer, restic = open_source(config, customer_name, tier, source)
    where = f"{tier_label(tier_name, peer)} of {customer_name}"
    the_set = choose_set(load_sets(restic, customer_name, where), as_of,
                         tier_timezone(customer), where)
    snap = member(the_set, "pgdump", tgt.name, where)
    say(f"snapshot {snap.short_id} of {tgt.name} from set {the_set.time:%Y-%m-%d %H:%M} "
        f"({where})")
    if live:
        conn = connection_for(customer, tgt.name)
        checks = run_checks(conn, db, expected_counts=None, only=only, sql_only=True)
    else:
        say("starting a staging PostgreSQL …")
        with Staging() as staging:
            checks = stage_and_check(customer_name, customer, tgt.name, snap, restic,
                                     staging, only=only)
    return IntegrityReport(customer_name, tier_name, tgt.name, snap.id, the_set.time, live,
                           checks)


