"""Loading one table's rows from a dump inside one transaction, streamed: `pg_restore -L`
writes the table's SQL and psql runs it, with our SQL before (lock, empty the table, its
rebuildable indexes dropped) and after it (those indexes built again, the guards, COMMIT).

Nothing is spooled: the script goes from pg_restore through this process into psql, which
counts its COPY rows on the way (archive_stream.ScriptChecker). The transaction is opened
by our own `BEGIN` and only our `COMMIT`, written once pg_restore ended well, the script was
complete and the count guard knows its rows, can end it: if pg_restore fails, the script is
cut short, or this process dies, psql reaches the end of its input without a COMMIT and
the server rolls the transaction back.

Indexes: rows copied into a table keep every index up to date row by row, about twice the
time of loading them bare and building the index once (what pg_restore does for a whole
database). So an index that nothing else depends on is dropped after the table is emptied
and built again from its own definition before the guards run, in the same transaction
(rebuildable_indexes says which; the others are kept and maintained).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from axe_pipelines.postgres.archive_stream import ScriptChecker, StreamError
from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    first_error,
    local_tool,
    quote_literal,
)

CHUNK = 1 << 20

# An index is dropped and built again only when that gives back the same thing: valid, not
# the clustering or replica-identity index, in the default tablespace, no comment, no
# per-column statistics target, no extension owning it, nothing depending on it (a foreign
# key of another table uses its unique index), not part of a partitioned index, and for a
# constraint's index a primary key or unique constraint that nothing depends on either.
# The definitions are taken with an empty search_path, so every name in them is qualified
# as the pg_restore script (which empties search_path) needs.
_INDEXES_SQL = """SELECT pg_catalog.set_config('search_path', '', false);
SELECT pg_catalog.format('%I.%I', n.nspname, ic.relname), pg_catalog.quote_ident(c.conname),
       pg_catalog.pg_get_indexdef(i.indexrelid), pg_catalog.pg_get_constraintdef(c.oid)
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
LEFT JOIN pg_catalog.pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE i.indrelid = {table}::regclass
  AND i.indisvalid AND i.indisready AND i.indislive
  AND NOT i.indisclustered AND NOT i.indisreplident
  AND ic.reltablespace = 0
  AND (c.oid IS NULL OR c.contype IN ('p', 'u'))
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_description d
                  WHERE d.objoid = i.indexrelid OR d.objoid = c.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = i.indexrelid
                  AND coalesce(a.attstattarget, -1) <> -1)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                  WHERE e.classid = 'pg_catalog.pg_class'::regclass
                  AND e.objid = i.indexrelid AND e.deptype = 'e')
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h
                  WHERE h.inhrelid = i.indexrelid OR h.inhparent = i.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend r
                  WHERE r.refclassid = 'pg_catalog.pg_class'::regclass
                  AND r.refobjid = i.indexrelid
                  AND NOT (r.classid = 'pg_catalog.pg_class'::regclass
                           AND r.objid = i.indexrelid))
  AND (c.oid IS NULL OR NOT EXISTS (
         SELECT 1 FROM pg_catalog.pg_depend r
         WHERE r.refclassid = 'pg_catalog.pg_constraint'::regclass AND r.refobjid = c.oid
         AND NOT (r.classid = 'pg_catalog.pg_class'::regclass AND r.objid = i.indexrelid)))
ORDER BY c.contype NULLS LAST, ic.relname;"""


@dataclass(frozen=True)
class Rebuilt:
    """One index dropped before the rows are loaded and built again after them."""

    name: str
    drop: str
    create: str


def rebuildable_indexes(conn: Connection, table_sql: str) -> list[Rebuilt]:
    """Given the live database and a quoted table name, return its indexes that can be
    dropped and built again from their definitions (module docstring), with the SQL to do
    each. Raise PostgresError if the catalog cannot be read."""
    rows = conn.psql(_INDEXES_SQL.format(table=quote_literal(table_sql)))
    out = []
    for row in rows:
        if len(row) != 4:
            continue  # set_config's own row
        index, conname, indexdef, condef = row  # index and conname come quoted
        if conname:
            out.append(Rebuilt(index, f"ALTER TABLE {table_sql} DROP CONSTRAINT {conname};",
                               f"ALTER TABLE {table_sql} ADD CONSTRAINT {conname} {condef};"))
        else:
            out.append(Rebuilt(index, f"DROP INDEX {index};", f"{indexdef};"))
    return out


def load_rows(conn: Connection, dump_file: Path, listing: Path, *, before: str,
              after: Callable[[int], str], what: str,
              feed: Callable[[IO[bytes]], None] | None = None) -> int:
    """Given the live database, a custom-format dump and a `-L` list of its entries, run in
    one transaction `before`, the entries' SQL as pg_restore writes it, and `after(rows)`
    (rows: the COPY rows the script held), then COMMIT; return the rows. With `feed`, the
    dump is not read from `dump_file` but streamed into pg_restore's stdin by `feed` (the
    entries in dump order: pg_restore reads up to the last one's data and exits). Raise
    PostgresError — the transaction rolled back — if pg_restore or psql fails or the script
    is cut short (module docstring)."""
    restore = subprocess.Popen([local_tool("pg_restore"), "-L", str(listing), "-f", "-",
                                *([] if feed else [str(dump_file)])],
                               stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    psql = subprocess.Popen([*conn.tool("psql"), *conn.conn_args(), "-X", "-q", "-v",
                             "ON_ERROR_STOP=1", "--no-password", "-f", "-"],
                            env=conn.env(), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert restore.stdout and restore.stderr and psql.stdin and psql.stderr
    errors: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, p=p: errors.__setitem__(k, p.read()),
                                daemon=True)
               for k, p in (("pg_restore", restore.stderr), ("psql", psql.stderr))]
    if feed is not None:
        readers.append(threading.Thread(target=_feed, args=(feed, restore.stdin), daemon=True))
    for reader in readers:
        reader.start()
    checker, committed, killed, broke, rows = ScriptChecker(), False, False, False, 0
    try:
        try:
            psql.stdin.write(b"BEGIN;\n" + before.encode() + b"\n")
            while chunk := restore.stdout.read(CHUNK):
                checker.feed(chunk)
                psql.stdin.write(chunk)
            if restore.wait() == 0:
                rows = sum(checker.finish(complete=False).tables.values())
                psql.stdin.write(b"\n" + after(rows).encode() + b"\nCOMMIT;\n")
                committed = True
        except BrokenPipeError:
            broke = True  # psql stopped on an error: its stderr says which
        except StreamError:
            pass  # the script was cut short
        finally:
            if not committed and not broke:
                psql.kill()  # no COMMIT was written: the server rolls back
                killed = True
            try:
                psql.stdin.close()
            except OSError:
                pass
        psql_code = psql.wait()
    finally:
        for proc in (restore, psql):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for reader in readers:
            reader.join(5)
    if psql_code != 0 and not killed:  # psql stopped on an error (then pg_restore was)
        psql_err = errors.get("psql", b"").decode(errors="replace")
        raise PostgresError(f"{what}: {first_error(psql_err)}" if psql_err.strip() else
                            f"{what}: psql exited with status {psql_code}")
    if restore.returncode != 0:
        restore_err = errors.get("pg_restore", b"").decode(errors="replace")
        raise PostgresError(f"{what}: pg_restore cannot read the dump: "
                            f"{first_error(restore_err)}")
    if not committed:
        raise PostgresError(f"{what}: the table's SQL from the dump ends inside its data: "
                            f"the dump is truncated")
    return rows


def _feed(feed: Callable[[IO[bytes]], None], stdin: IO[bytes] | None) -> None:
    assert stdin is not None
    try:
        feed(stdin)
    finally:
        try:
            stdin.close()
        except OSError:
            pass  # pg_restore stopped reading: it had what it needed
