"""A database's own properties across a restore: the database-level statements (encoding,
locale, owner, settings, grants, comment) the restored copy gets, read from the live database
or from the dump's DATABASE entries, and `properties_soon`, which reads the live ones in a
thread while restic fetches the dump (issue 12: one serial step fewer)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    first_error,
    first_line,
    local_tool,
    run_tool,
)
from axe_pipelines.postgres.sql import database_level_statements


def database_properties(conn: Connection, dump_file: Path, fmt: str, *, exists: bool,
                        new_name: str, where: str) -> list[str]:
    """Given the database to restore and its dump, return the database-level statements for
    the restored copy `new_name`: read from the live database when it exists (its current
    encoding, locale, owner, settings, grants, comment: a restore replaces the contents, not
    the database's configuration), else from the dump's own DATABASE entries (pg_restore
    without -C skips them); empty for a plain dump of a database that is gone. Raise
    PostgresError if they cannot be read."""
    if exists:
        return database_level_statements(_live_properties(conn, where), conn.dbname, new_name)
    if fmt != "custom":
        return []
    bin_dir = conn.server.bin_dir if not conn.server.exec else None
    from axe_pipelines.postgres.restore import parse_toc, pg_restore_script  # it imports us

    listing = run_tool([local_tool("pg_restore", bin_dir), "-C", "-l", str(dump_file)],
                       capture=True, check=False, what=f"{where}: pg_restore")
    entries = [e for e in parse_toc(listing.stdout)
               if e.desc in ("DATABASE", "DATABASE PROPERTIES")
               or (e.desc in ("COMMENT", "ACL") and e.name.startswith("DATABASE "))]
    database = next((e for e in entries if e.desc == "DATABASE"), None)
    if listing.code != 0 or database is None:
        return []
    script = dump_file.with_suffix(".database.sql")
    try:
        pg_restore_script(dump_file, entries, script, create=True, bin_dir=bin_dir)
    except PostgresError as exc:
        raise PostgresError(f"{where}: {first_line(exc)} (its database entry); "
                            f"nothing was changed") from None
    return database_level_statements(script.read_text(), database.name, new_name)


def _live_properties(conn: Connection, where: str) -> str:
    """The live database's `pg_dump -s -C` without any schema: its database-level SQL."""
    result = run_tool([*conn.tool("pg_dump"), *conn.conn_args(), "--no-password", "-s",
                       "-C", "--exclude-schema", "*"], capture=True, check=False,
                      env=conn.env(), what=f"{where}: pg_dump")
    if result.code != 0:
        raise PostgresError(f"{where}: cannot read the properties of {conn.dbname} "
                            f"(pg_dump: {first_error(result.stderr)}); nothing was changed")
    return result.stdout


Properties = Callable[..., list[str]]  # database_properties' signature


def properties_soon(conn: Connection, *, exists: bool, where: str) -> Properties:
    """Given the database about to be restored, start reading its properties in a thread
    when it exists (so pg_dump runs while restic fetches the dump), and return the call
    that stands in for database_properties: it waits for them, raising what pg_dump's
    failure raised there."""
    if not exists:
        return database_properties
    box: dict[str, object] = {}

    def read() -> None:
        try:
            box["text"] = _live_properties(conn, where)
        except PostgresError as exc:
            box["error"] = exc

    worker = threading.Thread(target=read, name=f"properties-{conn.dbname}", daemon=True)
    worker.start()

    def properties(_conn: Connection, _dump: Path, _fmt: str, *, exists: bool,
                   new_name: str, where: str) -> list[str]:
        worker.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return database_level_statements(str(box["text"]), conn.dbname, new_name)
    return properties
