"""`axe restore --table` without `--target`: which database's dump holds the table, found from
the dump-time row counts the history recorded, else from each dump's table of contents.
Each database's dump is the one the restore would use (per item, at or before `--as-of`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from axe_pipelines.actions.selection import RestoreError, fetch_file
from axe_pipelines.config import Customer
from axe_pipelines.integrity import NO_HISTORY, DumpHistory
from axe_pipelines.postgres.restore import read_toc
from axe_pipelines.restic import Restic, Snapshot
from axe_pipelines.safe_paths import remove_tree

Say = Callable[[str], None]


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


def locate_table(customer_name: str, customer: Customer, dumps: dict[str, Snapshot],
                 table: str, restic: Restic, *, workdir: Path, say: Say, where: str,
                 history: DumpHistory = NO_HISTORY) -> str:
    """Given each database's dump snapshot (the one the restore would use) and `--table`
    without `--target`, return the one database whose dump holds the table (from the row
    counts `history` recorded for the dump's snapshot, else from the dump's own table of
    contents). Raise RestoreError listing the databases searched if none holds it, or the
    candidates if several do."""
    candidates: list[str] = []
    for db_name, snap in dumps.items():
        counts = history.counts_for(customer_name, db_name, snap.id)
        if counts is not None:
            tables = [split_qualified(key) for key in counts]
        elif customer.databases[db_name].format == "custom":
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
        say(f"table {table} is in database {candidates[0]} (the only dump holding it)")
        return candidates[0]
    if not candidates:
        searched = ", ".join(dumps) or "none: no dump at or before --as-of"
        raise RestoreError(f"no database dump in {where} holds a table {table!r} (searched: "
                           f"{searched}; each database's newest dump at or before --as-of); "
                           f"check the name or pass --target; nothing was changed")
    raise RestoreError(f"table {table!r} is in more than one database ("
                       f"{', '.join(candidates)}); say which with --target; nothing was "
                       f"changed")
