"""The dump side: the exported-snapshot session that makes row counts exact, the pg_dump and
pg_dumpall command lines, and counting rows — live, in a dump script, or in a whole dump read
back through pg_restore.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from axe_pipelines import interrupt
from axe_pipelines.postgres.archive_stream import ScriptChecker, StreamError
from axe_pipelines.postgres.client import (
    PSQL_FLAGS,
    Connection,
    PostgresError,
    first_error,
    local_tool,
    quote_literal,
    spawn_tool,
)

MARKER = "__axe_end_of_result__"

COUNTABLE_TABLES_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1;
"""


def count_rows_sql(tables: Iterable[str]) -> str:
    """Given quoted table names (`public."Weird Name"`), return one query that yields
    (name, row count) for each, keyed as pg_dump's COPY lines name them."""
    return "\nUNION ALL ".join(
        f"SELECT {quote_literal(t)}, count(*) FROM {t}" for t in tables) + ";"


def count_rows(conn: Connection, tables: Iterable[str] | None = None) -> dict[str, int]:
    """Given a connection (and optionally quoted table names), return the row count of every
    ordinary table of the database (or of `tables`). Raise PostgresError if a query fails."""
    names = list(tables) if tables is not None else [r[0] for r in conn.psql(COUNTABLE_TABLES_SQL)]
    if not names:
        return {}
    return {name: int(n) for name, n in conn.psql(count_rows_sql(names))}


# --- content digests (checksum_tables) ---------------------------------------------------------

# A row's text form depends on these settings (timestamptz on TimeZone, floats on
# extra_float_digits …): the dump side and a restored copy pin the same values, so the
# same rows give the same digest on any server.
DIGEST_SETTINGS = ("TimeZone = 'UTC'", "DateStyle = 'ISO, YMD'", "IntervalStyle = 'postgres'",
                   "bytea_output = 'hex'", "extra_float_digits = 1", "lc_monetary = 'C'")
Query = Callable[[str], "list[list[str]]"]


def digest_settings_sql(*, local: bool) -> str:
    """Given whether the caller is inside a transaction (`SET LOCAL`, ended with it) or owns
    its session (`SET`), return the statements that pin the settings a digest depends on."""
    verb = "SET LOCAL" if local else "SET"
    return "".join(f"{verb} {setting};\n" for setting in DIGEST_SETTINGS)


def resolve_table_sql(name: str) -> str:
    """Given a table as customers.yaml names it (`evidence_blob`, `public.evidence_blob`),
    return the query yielding it as pg_dump names it (`public.evidence_blob`), quoted — no row
    when there is no such table. Only that quoted form ever reaches a FROM clause."""
    return ("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.oid = to_regclass({quote_literal(name)});")


def columns_sql(table: str) -> str:
    """Given a quoted table name (resolve_table_sql), return the query yielding its columns
    in order: quoted name, and whether it is bytea."""
    return ("SELECT quote_ident(attname), atttypid = 'bytea'::regtype FROM pg_attribute "
            f"WHERE attrelid = {quote_literal(table)}::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum;")


def table_digest_sql(table: str, columns: list[tuple[str, bool]]) -> str:
    """Given a quoted table name and its columns (columns_sql), return the query yielding its
    rows and the sums of the first and the second half of every row's hash.

    A row's hash is the md5 of its columns' md5s (bytea hashed as bytes, every other type as
    its text form; NULL as `-`), not of the row's text: the row's text form escapes every
    character of a long bytea one by one, about 5x slower. The sum is order-free: no primary
    key, sort or memory for the whole table is needed, and the same rows give the same sums
    in any physical order. It is a check against damage and lost or changed rows, not
    against someone forging rows on purpose."""
    parts = " || ".join(f"coalesce(md5({name}{'' if raw else '::text'}), '-')"
                        for name, raw in columns) or "''"
    return ("SELECT count(*), coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint), 0), "
            "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint), 0) "
            f"FROM (SELECT md5({parts}) AS h FROM {table}) s;")


def table_digests(query: Query, names: Iterable[str]) -> dict[str, str | None]:
    """Given a way to run SQL (a SnapshotSession's query inside the dump's snapshot, or a
    restored copy's psql — with the digest settings pinned) and the configured table names,
    return each name's digest (`<rows>:<32 hex>`), or None for a table that does not exist.
    Raise PostgresError if a query fails."""
    out: dict[str, str | None] = {}
    for name in names:
        found = query(resolve_table_sql(name))
        if not found:
            out[name] = None
            continue
        table = found[0][0]
        columns = [(name, raw == "t") for name, raw in query(columns_sql(table))]
        count, high, low = query(table_digest_sql(table, columns))[0]
        out[name] = f"{count}:" + hashlib.sha256(f"{count}:{high}:{low}".encode()).hexdigest()[:32]
    return out


# --- dumping -----------------------------------------------------------------------------------


def pg_dump_argv(conn: Connection, *, snapshot: str | None, fmt: str = "custom") -> list[str]:
    """Given a connection, an exported snapshot (or None) and `custom` or `plain`, return the
    pg_dump command line (custom format without compression: restic compresses)."""
    argv = [*conn.tool("pg_dump"), *conn.conn_args(), "--no-password"]
    argv += ["-Fc", "-Z0"] if fmt == "custom" else ["-Fp"]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return argv


def pg_dumpall_argv(conn: Connection, *, globals_only: bool) -> list[str]:
    """Given a connection, return the pg_dumpall command line for the whole server (only
    roles and tablespaces with `globals_only`)."""
    argv = [*conn.tool("pg_dumpall"), *conn.conn_args(with_db=False), "--no-password",
            "-l", conn.dbname]
    if globals_only:
        argv.append("--globals-only")
    return argv


@dataclass
class SnapshotInfo:
    """An exported snapshot: its name for `pg_dump --snapshot`, the server's version and the
    row counts taken inside it."""

    snapshot: str
    server_version: str
    row_counts: dict[str, int] = field(default_factory=dict)
    table_digests: dict[str, str | None] = field(default_factory=dict)


class SnapshotSession:
    """Holds a REPEATABLE READ transaction open and exports its snapshot, so that row counts
    taken here and `pg_dump --snapshot` see exactly the same data. Use as a context manager;
    the transaction ends when the block does."""

    def __init__(self, conn: Connection, *, timeout: float = 600):
        self.conn = conn
        self.timeout = timeout
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SnapshotSession:
        self._proc = spawn_tool([*self.conn.tool("psql"), *self.conn.conn_args(), *PSQL_FLAGS],
                                what=self.conn.where, env=self.conn.env(), text=True)
        # Ctrl-C / SIGTERM end the session at once (interrupt.py): the server then ends the
        # transaction, so no "idle in transaction" stays behind on a production database.
        self._watch = interrupt.watched(self._proc, sig=signal.SIGTERM)
        self._watch.__enter__()
        return self

    def query(self, sql: str) -> list[list[str]]:
        """Given SQL, run it inside the held transaction and return the rows. Raise
        PostgresError if it fails or outlives the session's timeout."""
        proc = self._proc
        assert proc is not None and proc.stdin and proc.stdout
        try:
            proc.stdin.write(f"{sql.rstrip()}\n\\echo {MARKER}\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        rows: list[list[str]] = []
        timer = threading.Timer(self.timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                if line == MARKER:
                    return rows
                if line:
                    rows.append(line.split("\t"))
        finally:
            timer.cancel()
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait()
        raise PostgresError(f"{self.conn.where}/{self.conn.dbname}: {first_error(err)}")

    def export(self, *, count_rows: bool = True,
               digest_tables: Iterable[str] = ()) -> SnapshotInfo:
        """Start the transaction, export its snapshot and (optionally) count every table's
        rows and digest `digest_tables` (see table_digests) inside it; return them. Raise
        PostgresError if a query fails."""
        self.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")
        snapshot = self.query("SELECT pg_export_snapshot();")[0][0]
        version = self.query("SHOW server_version;")[0][0]
        info = SnapshotInfo(snapshot=snapshot, server_version=version)
        if count_rows:
            tables = [r[0] for r in self.query(COUNTABLE_TABLES_SQL)]
            if tables:
                for name, count in self.query(count_rows_sql(tables)):
                    info.row_counts[name] = int(count)
        digest_tables = list(digest_tables)
        if digest_tables:
            self.query(digest_settings_sql(local=True))
            info.table_digests = table_digests(self.query, digest_tables)
        return info

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin:
                proc.stdin.write("COMMIT;\n\\q\n")
                proc.stdin.close()
            proc.wait(timeout=30)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
            self._watch.__exit__(None, None, None)


# --- reading a dump back -----------------------------------------------------------------------

BLOCK = 1 << 20


@dataclass
class DumpContents:
    """What a dump holds: per table, the number of rows in its COPY section."""

    tables: dict[str, int]
    bytes: int


def count_script_rows(chunks: Iterable[bytes]) -> dict[str, int]:
    """Given a plain SQL dump script in blocks of any size, return the rows per table in its
    COPY … FROM stdin sections. Raise PostgresError if the script ends inside a COPY section.

    Inside a COPY section every line is one row (COPY escapes newlines in values) and the
    section ends with a line holding only `\\.`, so rows are counted with bytes.count on whole
    blocks instead of line by line (archive_stream.ScriptChecker, which the dump's verifier
    runs too).
    """
    checker = ScriptChecker()
    for chunk in chunks:
        checker.feed(chunk)
    try:
        return checker.finish(complete=False).tables
    except StreamError as exc:
        raise PostgresError(str(exc)) from None


def read_dump(source: IO[bytes] | Path, *, fmt: str,
              bin_dir: Path | None = None) -> DumpContents:
    """Given a dump (a stream, read to its end, or a file) and its format, return its tables
    with their row counts and its size.

    A custom-format dump is run through `pg_restore -a -f -` (the data it would load), which
    reads every data block. Raise PostgresError if the dump is truncated or corrupt.
    """
    if fmt == "plain":
        if isinstance(source, Path):
            with open(source, "rb") as fh:
                return _read_plain(fh)
        return _read_plain(source)
    argv = [local_tool("pg_restore", bin_dir), "-a", "-f", "-"]
    if isinstance(source, Path):
        proc = spawn_tool([*argv, str(source)], what="pg_restore", stdin=subprocess.DEVNULL)
        return _count_output(proc, None, source.stat().st_size)
    return _count_output(spawn_tool(argv, what="pg_restore"), source, 0)


def _read_plain(stream: IO[bytes]) -> DumpContents:
    total = 0

    def chunks() -> Iterator[bytes]:
        nonlocal total
        while chunk := stream.read(BLOCK):
            total += len(chunk)
            yield chunk
    tables = count_script_rows(chunks())
    return DumpContents(tables=tables, bytes=total)


def _count_output(proc: subprocess.Popen, feed_from: IO[bytes] | None,
                  size: int) -> DumpContents:
    """Counts the rows in pg_restore's output while (when `feed_from` is given) a thread
    feeds it the archive, draining the source even when pg_restore stops early."""
    assert proc.stdout and proc.stderr
    total = size
    err_chunks: list[bytes] = []

    def feed() -> None:
        nonlocal total
        broken = False
        assert feed_from is not None and proc.stdin is not None
        while chunk := feed_from.read(BLOCK):
            total += len(chunk)
            if broken:
                continue  # keep draining the source
            try:
                proc.stdin.write(chunk)
            except OSError:  # BrokenPipeError: pg_restore gave up
                broken = True
        try:
            proc.stdin.close()
        except OSError:
            pass

    threads = [threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()),
                                daemon=True)]
    if feed_from is not None:
        threads.append(threading.Thread(target=feed, daemon=True))
    for thread in threads:
        thread.start()
    try:
        tables: dict[str, int] | None = count_script_rows(
            iter(lambda: proc.stdout.read(BLOCK), b""))
    except PostgresError:
        tables = None
    finally:
        while proc.stdout.read(BLOCK):
            pass
    code = proc.wait()
    err_reader, *feeder = threads
    for thread in feeder:
        thread.join()
    err_reader.join(5)
    if code != 0 or tables is None:
        reason = first_error(b"".join(err_chunks).decode(errors="replace"))
        raise PostgresError("pg_restore cannot read the dump: "
                            + (reason if reason != "no message" else "truncated archive"))
    return DumpContents(tables=tables, bytes=total)
