"""`axe restore --customer C --target <server> --physical --dest DIR [--as-of] [--dry-run]`:
the newest base backup of the server at or before --as-of, unpacked into DIR (a new or empty
folder) and started there as a staging server on a free loopback port (postgres/physical.py:
archive_mode off, its own socket folder). The live server is never touched: DIR is refused
when it is not empty or lies inside a PostgreSQL data directory (the live server's, as it
reports it, or any folder above DIR holding a PG_VERSION). The copy keeps running after the
command; the report says how to connect and how to stop it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from axe_pipelines.actions.restore_items import Say
from axe_pipelines.actions.selection import (
    RestoreError,
    as_of_moment,
    load_sets,
    open_source,
    pick_member,
    resolve_target,
    snapshot_size,
    tier_label,
)
from axe_pipelines.config import Customer, Site, tier_timezone
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.postgres.cluster import LocalCluster
from axe_pipelines.postgres.physical import (
    copy_connection,
    start_staging_cluster,
    stop_command,
    unpack_base_backup,
)
from axe_pipelines.progress import human_bytes
from axe_pipelines.restic import Snapshot


@dataclass
class PhysicalRestore:
    """What `restore --physical` did (or, dry, would do): the base backup, where it went,
    the running copy and how long each step took."""

    server: str
    snapshot: Snapshot
    dest: Path
    dry_run: bool
    copy: LocalCluster | None = None
    unpack_s: float = 0.0
    start_s: float = 0.0
    lines: list[str] = field(default_factory=list)


def physical_server(customer_name: str, customer: Customer, target: str | None) -> str:
    """Given `--target` (a server, or a database meaning its server), return the server's
    name. Raise RestoreError if it names no server."""
    if not target:
        raise RestoreError("--physical needs --target SERVER (the server whose base backup "
                           f"to start; servers: {', '.join(customer.servers)})")
    if target in customer.servers:
        return target
    found = resolve_target(customer_name, customer, target)
    if found.kind == "database":
        return customer.databases[found.name].server
    if found.kind == "server":
        return found.name
    raise RestoreError(f"--physical needs a server; {target} is a {found.kind}")


def refuse_dest(dest: Path, live: Connection) -> Path:
    """Given --dest and the live server, return dest resolved. Raise RestoreError if it is
    not a new or empty folder, or lies inside a PostgreSQL data directory: the live one (as
    the server reports it, when it answers and runs on this machine) or any other."""
    dest = dest.expanduser().absolute()
    resolved = dest.resolve()
    for folder in [resolved, *resolved.parents]:
        if (folder / "PG_VERSION").exists():
            raise RestoreError(f"--dest {dest} is inside the PostgreSQL data directory "
                               f"{folder}; choose a folder outside every data directory; "
                               f"nothing was changed")
    if not live.server.exec:
        try:
            rows = live.admin().psql("SHOW data_directory;", timeout=30)
        except PostgresError:
            rows = []  # not allowed to ask: the PG_VERSION walk above still holds
        live_dir = Path(rows[0][0]).resolve() if rows and rows[0] else None
        if live_dir is not None and (resolved == live_dir or live_dir in resolved.parents):
            raise RestoreError(f"--dest {dest} is inside the live data directory of "
                               f"{live.server_name} ({live_dir}); nothing was changed")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RestoreError(f"--dest {dest} is not an empty folder; a base backup is unpacked "
                           f"only into a new or empty one; nothing was changed")
    return dest


def restore_physical(config: Site, customer_name: str, *, target: str | None,
                     dest: str | None, as_of: str = "latest", tier: str | None = None,
                     source: str | None = None, dry_run: bool = False,
                     say: Say = print) -> PhysicalRestore:
    """Given `axe restore --physical`'s options, unpack the server's newest base backup at or
    before `as_of` into `dest` and start it as a staging server (dry: only say which), and
    return the PhysicalRestore. Raise RestoreError for a bad target, --dest or --as-of,
    ResticError/PostgresError when reading, unpacking or starting fails."""
    customer = config.customer(customer_name)
    if not customer.backs_up:
        raise RestoreError(f"{customer_name} has no tiers.local; nothing to restore")
    server = physical_server(customer_name, customer, target)
    if not dest:
        raise RestoreError("--physical needs --dest DIR, a new or empty folder for the data "
                           "directory")
    live = Connection(server, customer.servers[server], customer.servers[server].maintenance_db)
    where_to = refuse_dest(Path(dest), live)
    name, peer, restic = open_source(config, customer_name, tier, source)
    where = tier_label(name, peer)
    zone = tier_timezone(customer)
    the_set, snap = pick_member(load_sets(restic, customer_name, where),
                                as_of_moment(as_of, zone), "physical", server, where)
    report = PhysicalRestore(server, snap, where_to, dry_run)
    say(f"base backup of {server}: snapshot {snap.short_id} of the set {the_set.run_id[:12]} "
        f"({snap.time.astimezone(the_set.time.tzinfo):%Y-%m-%d %H:%M:%S %Z}, "
        f"{human_bytes(snapshot_size(snap))}) from {where}")
    if dry_run:
        say(f"would unpack it into {where_to} and start it on a free 127.0.0.1 port "
            f"(archive_mode off); nothing was changed")
        return report
    started = time.monotonic()
    unpack_base_backup(restic, snap.id, where_to, server_name=server)
    report.unpack_s = time.monotonic() - started
    say(f"unpacked into {where_to} in {report.unpack_s:.1f} s; starting it")
    started = time.monotonic()
    report.copy = start_staging_cluster(where_to)
    report.start_s = time.monotonic() - started
    report.lines = connect_lines(report.copy, live)
    for line in report.lines:
        say(line)
    return report


def connect_lines(copy: LocalCluster, live: Connection) -> list[str]:
    """Given a started copy and the live server, return how to connect to the copy and how
    to stop it (the operator's next steps)."""
    conn = copy_connection(copy, live, live.server.maintenance_db)
    user = f" -U {conn.server.user}" if conn.server.user else ""
    return [f"staging copy of {live.server_name} running on 127.0.0.1:{copy.port} "
            f"(data {copy.data}, archive_mode off, log {copy.log})",
            f"connect: psql -h 127.0.0.1 -p {copy.port}{user} -d <database> (the live "
            f"server's roles and passwords)",
            f"stop it: {' '.join(stop_command(copy))}; then remove {copy.data} when done"]
