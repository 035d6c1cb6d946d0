"""What a server says about its WAL archiving: the settings `axe doctor` checks and the
archiver's own statistics (pg_stat_archiver), through the one connection class."""

from __future__ import annotations

from dataclasses import dataclass

from axe_pipelines.postgres.client import Connection

SETTINGS = ("archive_mode", "wal_level", "archive_timeout", "archive_command",
            "wal_segment_size")


@dataclass(frozen=True)
class ArchiverState:
    """pg_stat_archiver of one server: counts, and the last archived and failed WAL file with
    their times (ISO text in UTC, "" when never)."""

    archived_count: int
    last_archived_wal: str
    last_archived_time: str
    failed_count: int
    last_failed_wal: str
    last_failed_time: str

    @property
    def failing(self) -> bool:
        """True when the archive command's latest attempt failed (PostgreSQL keeps the file
        in pg_wal and retries)."""
        return bool(self.last_failed_time) and self.last_failed_time > self.last_archived_time


def archiver_state(conn: Connection) -> ArchiverState:
    """Given a connection to the server, return its archiver statistics. Raise PostgresError
    if the server cannot be asked."""
    row = conn.psql(
        "SELECT archived_count, coalesce(last_archived_wal, ''), "
        "coalesce(to_char(last_archived_time AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.US'), ''), failed_count, coalesce(last_failed_wal, ''), "
        "coalesce(to_char(last_failed_time AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '') FROM pg_stat_archiver;")[0]
    row += [""] * (6 - len(row))  # psql drops trailing empty fields
    return ArchiverState(int(row[0]), row[1], row[2], int(row[3]), row[4], row[5])


def wal_settings(conn: Connection) -> dict[str, str]:
    """Given a connection, return the server's WAL archiving settings (SETTINGS) by name, as
    pg_settings holds them (archive_timeout in seconds, wal_segment_size in bytes). Raise
    PostgresError if the server cannot be asked."""
    names = ", ".join(f"'{n}'" for n in SETTINGS)
    rows = conn.psql(f"SELECT name, setting FROM pg_settings WHERE name IN ({names});")
    return {r[0]: r[1] if len(r) > 1 else "" for r in rows}
