"""Restoring one table inside one transaction: its rows replaced with the dump's (or, when it
was dropped, the table recreated with its keys, indexes, constraints and the foreign keys and
views that pointed at it). Afterwards the table holds exactly the dump's rows, or — on any
error — is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    first_error,
    first_line,
    local_tool,
    quote_ident,
    quote_literal,
    run_tool,
)
from axe_pipelines.postgres.restore import StepFn, TocEntry, no_step, read_toc
from axe_pipelines.postgres.table_load import load_rows, rebuildable_indexes

Feed = Callable[[IO[bytes]], None]  # writes a dump into pg_restore's stdin (table_stream.py)

# The table's own entries besides itself, its data and its sequences.
_OWN = ("DEFAULT", "CONSTRAINT", "INDEX", "TRIGGER", "RULE", "POLICY", "ROW SECURITY")


def find_table(entries: list[TocEntry], wanted: str, where: str) -> TocEntry:
    """Given a dump's entries and `--table` (`journal_line`, `public.journal_line`,
    `axec.employees`, or a quoted name), return its TABLE entry. Raise PostgresError listing
    the dump's tables if there is none, or if the name is ambiguous."""
    tables = [e for e in entries if e.desc == "TABLE"]
    schema, _, name = wanted.rpartition(".")
    name = name.strip('"')
    schema = schema.strip('"')
    hits = [e for e in tables if e.name == name and (not schema or e.schema == schema)]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(f"{e.schema}.{e.name}" for e in tables) or "none"
    if not hits:
        raise PostgresError(f"{where}: no table {wanted!r} in the dump (tables: {known}); "
                            f"nothing was changed")
    raise PostgresError(f"{where}: {wanted!r} is ambiguous ({known}); say schema.table")


def parse_dependencies(text: str) -> dict[int, set[int]]:
    """Given `pg_restore -s -v` output, return each entry's dependencies (dump ids), from the
    `-- Dependencies:` comments it writes before every entry."""
    deps: dict[int, set[int]] = {}
    current: int | None = None
    for line in text.splitlines():
        m = re.match(r"^-- TOC entry (\d+) ", line)
        if m:
            current = int(m.group(1))
            deps[current] = set()
        elif current is not None and line.startswith("-- Dependencies: "):
            deps[current] = {int(x) for x in line.split(":", 1)[1].split()}
    return deps


def _dependencies(dump_file: Path) -> dict[int, set[int]]:
    result = run_tool([local_tool("pg_restore"), "-s", "-v", "-f", "-", str(dump_file)],
                      capture=True, check=False, what="pg_restore")
    if result.code != 0:
        raise PostgresError(f"pg_restore cannot read the dump: {first_error(result.stderr)}")
    return parse_dependencies(result.stdout)


def table_entries(entries: list[TocEntry], deps: dict[int, set[int]],
                  table: TocEntry) -> tuple[list[TocEntry], list[TocEntry]]:
    """Given a dump's entries, their dependencies and one TABLE entry, return (its own
    entries: the table, owned sequences, defaults, data, sequence values, constraints,
    indexes, triggers, its foreign keys, comments, grants; the foreign keys and views of other
    objects that depend on it), each in dump order."""
    tid = table.dump_id
    sequences = {e.dump_id for e in entries
                 if e.desc == "SEQUENCE" and tid in deps.get(e.dump_id, set())}
    seq_names = {(e.schema, e.name) for e in entries if e.dump_id in sequences}
    mine: list[TocEntry] = []
    others: list[TocEntry] = []
    for e in entries:
        on = deps.get(e.dump_id, set())
        if e.dump_id in {tid, *sequences}:
            mine.append(e)
        elif e.desc == "TABLE DATA" and (e.schema, e.name) == (table.schema, table.name):
            mine.append(e)
        elif e.desc in ("SEQUENCE OWNED BY", "SEQUENCE SET") and (e.schema, e.name) in seq_names:
            mine.append(e)
        elif e.desc == "FK CONSTRAINT" and tid in on:
            own = e.schema == table.schema and e.name.startswith(table.name + " ")
            (mine if own else others).append(e)
        elif e.desc in _OWN and tid in on:
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


def relation_exists(conn: Connection, relation_sql: str) -> bool:
    """Given a quoted relation name, return whether the database has it. Raise
    PostgresError if it cannot be asked."""
    return conn.psql(
        f"SELECT to_regclass({quote_literal(relation_sql)}) IS NOT NULL;")[0][0] == "t"


def _with_comments(keep: list[TocEntry], pool: list[TocEntry], descs: tuple[str, ...],
                   ) -> list[TocEntry]:
    names = {e.name for e in keep}
    return keep + [e for e in pool if e.desc in descs and e.name.split(" ", 1)[-1] in names]


def _missing(conn: Connection, others: list[TocEntry]) -> list[TocEntry]:
    """The foreign keys and views of other objects, dependent on a dropped table, that are
    missing from the live database too (dropped with it by CASCADE); with their comments."""
    keep: list[TocEntry] = []
    for e in others:
        if e.desc == "FK CONSTRAINT":
            table, _, conname = e.name.partition(" ")
            rel = f"{quote_ident(e.schema)}.{quote_ident(table)}"
            if not conn.psql(f"SELECT 1 FROM pg_constraint WHERE conname = "
                             f"{quote_literal(conname)} AND conrelid = "
                             f"to_regclass({quote_literal(rel)});"):
                keep.append(e)
        elif e.desc in ("VIEW", "MATERIALIZED VIEW"):
            if not relation_exists(conn, f"{quote_ident(e.schema)}.{quote_ident(e.name)}"):
                keep.append(e)
    return _with_comments(keep, others, ("COMMENT", "ACL"))


def _missing_own(conn: Connection, table_sql: str, mine: list[TocEntry]) -> list[TocEntry]:
    """The table's own indexes, constraints, foreign keys and triggers in the dump that the
    live table lacks (dropped after the backup), with their comments."""
    keep: list[TocEntry] = []
    for e in mine:
        if e.desc == "INDEX":
            if not relation_exists(conn, f"{quote_ident(e.schema)}.{quote_ident(e.name)}"):
                keep.append(e)
        elif e.desc in ("CONSTRAINT", "FK CONSTRAINT", "TRIGGER"):
            _, _, objname = e.name.partition(" ")
            catalog = ("SELECT 1 FROM pg_trigger WHERE tgname = {n} AND tgrelid = {t}"
                       if e.desc == "TRIGGER" else
                       "SELECT 1 FROM pg_constraint WHERE conname = {n} AND conrelid = {t}")
            if not conn.psql(catalog.format(n=quote_literal(objname),
                                            t=f"{quote_literal(table_sql)}::regclass") + ";"):
                keep.append(e)
    return _with_comments(keep, mine, ("COMMENT",))


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
        f"AND (c.conrelid = {quote_literal(table_sql)}::regclass "
        f"OR c.confrelid = {quote_literal(table_sql)}::regclass);")
    return "\n".join(
        _raise_if(f"EXISTS (SELECT 1 FROM {child} c WHERE {notnull} AND NOT EXISTS "
                  f"(SELECT 1 FROM {parent} p WHERE {join}))",
                  f"axe: foreign key {conname} ({child} -> {parent}) would break")
        for conname, child, parent, join, notnull in rows)


def _raise_if(condition: str, message: str) -> str:
    return (f"DO $axe$ BEGIN IF {condition} THEN RAISE EXCEPTION {quote_literal(message)}; "
            f"END IF; END $axe$;")


def _lock_holders(conn: Connection, table_sql: str) -> str:
    """The other sessions holding or waiting for a lock on the table: pid, application,
    state."""
    try:
        rows = conn.psql(
            "SELECT DISTINCT a.pid, coalesce(nullif(a.application_name, ''), 'no name'), "
            "coalesce(a.state, '?') FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            f"WHERE l.relation = {quote_literal(table_sql)}::regclass "
            "AND l.pid <> pg_backend_pid() ORDER BY 1;")
    except PostgresError as exc:
        return f"cannot list them: {first_line(exc)}"
    return ", ".join(f"pid {pid} ({app}, {state})" for pid, app, state in rows) or \
        "no session holds it any more"


def describe_table(conn: Connection, table_sql: str) -> str:
    """Given a quoted table name, return `N rows`, `missing`, or why it cannot be inspected
    (for dry runs)."""
    try:
        if not relation_exists(conn, table_sql):
            return "missing"
        return f"{conn.psql(f'SELECT count(*) FROM {table_sql};')[0][0]} rows"
    except PostgresError as exc:
        return f"cannot inspect: {first_line(exc)}"


# --- plan and restore --------------------------------------------------------------------------


@dataclass
class TablePlan:
    """What a table restore will do: the table (`key` as pg_dump and the row counts spell it,
    `sql` always quoted), whether it exists now, the dump entries to run and the missing
    indexes/constraints it brings back."""

    key: str
    sql: str
    exists: bool
    chosen: list[TocEntry]
    brought: str

    def describe(self) -> str:
        """Return the plan as one line, for dry runs."""
        if not self.exists:
            return (f"recreate the dropped table {self.key} with "
                    + ", ".join(sorted({e.desc for e in self.chosen})))
        return (f"replace the rows of {self.key} inside one transaction (triggers off, "
                f"foreign keys to and from it re-checked before commit)"
                + (f", recreating its missing {self.brought}" if self.brought else ""))

    def outcome(self, rows: int, snapshot: str) -> str:
        """Given the rows restored and the snapshot's short id, return the result line."""
        if not self.exists:
            return f"{self.key} recreated with {rows} rows from snapshot {snapshot}"
        return (f"{self.key} now holds the {rows} rows of snapshot {snapshot}"
                + (f"; recreated its missing {self.brought}" if self.brought else ""))


def plan_table(conn: Connection, dump_file: Path, table_name: str, *, where: str) -> TablePlan:
    """Given the live database, a custom-format dump and `--table`, return what restoring
    that table will run. Raise PostgresError (nothing changed) if the dump cannot be read,
    holds no such table, or the server cannot be reached."""
    entries, _ = read_toc(dump_file, where=where)
    table = find_table(entries, table_name, where)
    # Always quoted in our own SQL: pg_dump's spelling quotes reserved words too.
    table_sql = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
    try:
        exists = relation_exists(conn, table_sql)
        # The name as pg_dump and the row counts spell it (public.journal_line).
        table_key = conn.psql(f"SELECT quote_ident({quote_literal(table.schema)}) || '.' || "
                              f"quote_ident({quote_literal(table.name)});")[0][0]
    except PostgresError as exc:
        raise PostgresError(f"{where}: cannot reach {conn.where}: {first_line(exc)}; "
                            f"nothing was changed") from None
    mine, others = table_entries(entries, _dependencies(dump_file), table)
    if not exists:
        return TablePlan(table_key, table_sql, False, mine + _missing(conn, others), "")
    rebuilt = _missing_own(conn, table_sql, mine)
    order = {e.dump_id: i for i, e in enumerate(entries)}
    chosen = sorted([e for e in mine if e.desc in ("TABLE DATA", "SEQUENCE SET")] + rebuilt,
                    key=lambda e: order[e.dump_id])
    brought = ", ".join(f"{e.desc.lower()} {e.name.split(' ', 1)[-1]}" for e in rebuilt
                        if e.desc != "COMMENT")
    return TablePlan(table_key, table_sql, True, chosen, brought)


def restore_table(conn: Connection, dump_file: Path, plan: TablePlan, *, workdir: Path,
                  lock_timeout: float, where: str, step: StepFn = no_step,
                  feed: Feed | None = None) -> int:
    """Given the live database, the dump and a plan (plan_table), run it in one transaction
    and return the number of rows the table now holds (the dump's). Raise PostgresError —
    the transaction rolled back, the table unchanged — if anything fails, or if another
    session holds the table's lock longer than `lock_timeout` seconds (naming it). The
    dump's SQL streams from pg_restore into psql (table_load.load_rows); the table's
    rebuildable indexes are built once after the rows instead of row by row. With `feed`
    the dump streams in (load_rows) instead of being read from `dump_file`."""
    listing = workdir / "table.list"
    listing.write_text("\n".join(e.line for e in plan.chosen) + "\n")
    prefix, suffix = (_replace_rows(conn, plan.sql, lock_timeout) if plan.exists else ("", ""))

    def after(rows: int) -> str:
        # The script holds exactly one table's data: its rows must all be there.
        return suffix + "\n" + _raise_if(
            f"(SELECT count(*) FROM {plan.sql}) <> {rows}",
            f"axe: {plan.key} would not hold the {rows} rows of the snapshot")

    with step(f"{where}: replacing the rows in one transaction" if plan.exists else
              f"{where}: recreating the table in one transaction"):
        try:
            return load_rows(conn, dump_file, listing, before=prefix, after=after, what=where,
                             feed=feed)
        except PostgresError as exc:
            if plan.exists and "lock timeout" in str(exc):
                raise PostgresError(
                    f"{where}: {plan.key} stayed locked for {lock_timeout:g} s by "
                    f"{_lock_holders(conn, plan.sql)}; nothing was changed, {plan.key} is "
                    f"unchanged; end those transactions (or stop the clients) and rerun, or "
                    f"raise --lock-timeout") from None
            raise PostgresError(f"{first_line(exc)}; the transaction was rolled back, "
                                f"{plan.key} is unchanged") from None


def _replace_rows(conn: Connection, table_sql: str, lock_timeout: float) -> tuple[str, str]:
    """The SQL before the dump's rows (lock, triggers off, empty the table, drop its
    rebuildable indexes) and after them (those indexes built again, foreign keys
    re-checked)."""
    referenced = conn.psql("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND "
                           f"confrelid = {quote_literal(table_sql)}::regclass;")[0][0] != "0"
    # TRUNCATE is much faster but refuses a table other tables' foreign keys point at; both
    # are undone by a rollback.
    empty = "DELETE FROM" if referenced else "TRUNCATE"
    rebuilt = rebuildable_indexes(conn, table_sql)
    # A client holding the table (an open transaction) must not make this hang: the lock is
    # waited for lock_timeout seconds, then the restore is refused.
    prefix = (f"SET LOCAL lock_timeout = '{max(1, int(lock_timeout * 1000))}ms';\n"
              f"LOCK TABLE {table_sql} IN ACCESS EXCLUSIVE MODE;\n"
              f"SET LOCAL lock_timeout = 0;\n"
              f"SET LOCAL session_replication_role = replica;\n"
              f"{empty} {table_sql};\n" + "".join(f"{r.drop}\n" for r in rebuilt))
    return prefix, "".join(f"{r.create}\n" for r in rebuilt) + _fk_guard(conn, table_sql)
