"""What `axe restore --cleanup` does: find what restores leave behind on purpose — the
database a restore swapped out (`<db>_before_restore_<stamp>`), the restored copy an undo
swapped out (`<db>_restored_<stamp>`), a folder restored beside the original
(`<folder>.restored-<stamp>`) — older than a bound, and drop them when the operator says so.

Only names axe makes are touched: on a configured database's server, a database named
exactly `<its name>_before_restore_` or `<its name>_restored_` and a 14-digit stamp; beside a
configured folder (same parent), a real folder named `<its name>.restored-` and a 14-digit
stamp. The stamp tells the age; restores write it on the customer's clock, so it is read in
the customer's zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from axe_pipelines.care.policy import Duration, parse_duration
from axe_pipelines.config import Customer, tier_timezone
from axe_pipelines.errors import UsageError
from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    first_line,
    quote_ident,
)
from axe_pipelines.safe_paths import remove_tree

_DB_KEPT = re.compile(r"^(?P<db>.+)_(?:before_restore|restored)_(?P<stamp>\d{14})$")
_FOLDER_KEPT = re.compile(r"^(?P<folder>.+)\.restored-(?P<stamp>\d{14})$")


@dataclass(frozen=True)
class Leftover:
    """One thing a restore kept: a database on a server, or a folder beside a configured one;
    `made` is when (its stamp, in the customer's zone), `of` the configured item."""

    kind: Literal["database", "folder"]
    name: str  # the database's name, or the folder's path
    where: str  # the server, or the folder it sits beside
    made: datetime
    of: str

    def line(self, now: datetime) -> str:
        """Given the present moment, return the operator's line for it."""
        days = (now - self.made).total_seconds() / 86400
        return (f"{self.kind} {self.name} on {self.where}: kept by a restore of {self.of} on "
                f"{self.made:%Y-%m-%d %H:%M} ({days:.1f} days ago)")


def older_than(text: str) -> Duration:
    """Given `--older-than` (a restic duration: 7d, 36h, 1m; 0 for everything), return it.
    Raise UsageError when it is not one."""
    if re.fullmatch(r"0+[ymdh]?", text.strip()):
        return Duration()
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None


def parse_stamp(text: str, zone: str) -> datetime | None:
    """Given a restore stamp (20260520030042) and the customer's zone, return the moment it
    names, or None when it is no date."""
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=ZoneInfo(zone))
    except ValueError:
        return None


def find_leftovers(customer: Customer, bound: Duration,
                   now: datetime) -> tuple[list[Leftover], list[str]]:
    """Given a customer and `--older-than`, return (what its restores kept that is older than
    the bound, oldest first; the servers that could not be asked, one line each)."""
    zone = tier_timezone(customer)
    cutoff = bound.before(now.astimezone(ZoneInfo(zone)))
    found: list[Leftover] = []
    problems: list[str] = []
    by_server: dict[str, dict[str, str]] = {}  # server -> {real database name: config name}
    for db_name, db in customer.databases.items():
        by_server.setdefault(db.server, {})[customer.database_name(db_name)] = db_name
    for server_name, databases in by_server.items():
        conn = Connection(server_name, customer.servers[server_name], "postgres")
        try:
            names = [r[0] for r in conn.psql(
                "SELECT datname FROM pg_database WHERE strpos(datname, '_before_restore_') > 0"
                " OR strpos(datname, '_restored_') > 0 ORDER BY 1;", timeout=30)]
        except PostgresError as exc:
            problems.append(f"server {server_name}: not asked: {first_line(exc)}")
            continue
        for name in names:
            m = _DB_KEPT.match(name)
            made = parse_stamp(m["stamp"], zone) if m and m["db"] in databases else None
            if m and made is not None and made < cutoff:
                found.append(Leftover("database", name, server_name, made, databases[m["db"]]))
    for folder_name, folder in customer.folders.items():
        home = folder.path.expanduser()
        try:
            beside = sorted(home.parent.iterdir())
        except OSError:
            continue
        for entry in beside:
            m = _FOLDER_KEPT.match(entry.name)
            made = parse_stamp(m["stamp"], zone) if m and m["folder"] == home.name else None
            if made is not None and made < cutoff and entry.is_dir() and not entry.is_symlink():
                found.append(Leftover("folder", str(entry), str(home), made, folder_name))
    return sorted(found, key=lambda x: x.made), problems


def drop_leftover(customer: Customer, leftover: Leftover) -> str:
    """Given one thing find_leftovers found, drop the database (refused while clients are
    connected to it) or remove the folder (only inside the configured folder's parent, never
    across a mount point). Return the outcome line. Raise PostgresError or UnsafeRemoval if it
    cannot be dropped."""
    if leftover.kind == "database":
        conn = Connection(leftover.where, customer.servers[leftover.where], "postgres")
        conn.psql(f"DROP DATABASE {quote_ident(leftover.name)};", timeout=120)
        return f"dropped database {leftover.name} on {leftover.where}"
    path = Path(leftover.name)
    remove_tree(path, inside=Path(leftover.where).parent)
    return f"removed folder {path}"
