"""`axe wal push` and the WAL asset's step: per server with `wal:`, push its spool into tier
A (wal/push.py), then look at what tier A holds (gaps in the sequence from the oldest base
backup on) and at the server's archiver (a failing archive command, e.g. a full spool)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from axe_pipelines.backup import TAG_TOOL, local_restic
from axe_pipelines.config import Customer, Server, Site
from axe_pipelines.errors import ItemFailed
from axe_pipelines.postgres.client import Connection, PostgresError, first_line
from axe_pipelines.postgres.wal import ArchiverState, archiver_state
from axe_pipelines.restic import Restic, ResticError, Snapshot
from axe_pipelines.wal.catalog import (
    BaseBackupUnreadable,
    base_backup_start,
    base_backups,
    sequence_gaps,
    wal_batches,
)
from axe_pipelines.wal.push import WAL_KIND, PushFailed, PushResult, push_spool
from axe_pipelines.wal.segments import Segment

Say = Callable[[str], None]


def wal_servers(customer: Customer) -> dict[str, Server]:
    """Given a customer, return its servers with WAL archiving (`wal:`), by name."""
    return {n: s for n, s in customer.servers.items() if s.wal is not None}


@dataclass
class ServerPush:
    """One server's push: what was pushed, the gaps tier A's WAL has, the archiver's state,
    and one line per thing that went wrong (`errors`)."""

    server: str
    spool: Path
    result: PushResult | None = None
    gaps: list[str] = field(default_factory=list)
    since: Segment | None = None  # gaps are looked for from here (the oldest base backup)
    archiver: ArchiverState | None = None
    spool_free: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def archiving_ok(self) -> bool:
        """True when the archiver is not failing and the server could be asked."""
        return self.archiver is not None and not self.archiver.failing

    @property
    def current(self) -> bool:
        """True when tier A now holds every WAL file the server has finished: the push
        worked, the archiver is not failing and nothing went wrong."""
        return self.result is not None and self.archiving_ok and not self.errors

    def archiving_line(self) -> str:
        """Return the archiver's state as an operator reads it."""
        a = self.archiver
        if a is None:
            return "archiver state unknown: " + "; ".join(self.errors[-1:])
        free = f"; spool {self.spool} has {self.spool_free >> 20} MiB free" if \
            self.spool_free is not None else ""
        if a.failing:
            return (f"archive_command is failing: {a.failed_count} failure(s), the latest for "
                    f"{a.last_failed_wal} at {a.last_failed_time} UTC (last success "
                    f"{a.last_archived_wal or 'never'}); PostgreSQL keeps the WAL in pg_wal "
                    f"and retries; see the server log{free}")
        return (f"archiving: {a.archived_count} file(s), latest {a.last_archived_wal or 'none'} "
                f"at {a.last_archived_time or '-'} UTC{free}")


def wal_snapshots(restic: Restic, customer_name: str) -> list[Snapshot]:
    """Given a repository, return the customer's WAL and base backup snapshots. Raise the
    mapped ResticError."""
    return restic.snapshots(tags=[TAG_TOOL, f"customer={customer_name}"])


def oldest_needed(restic: Restic, snapshots: list[Snapshot], customer_name: str,
                  server_name: str) -> Segment | None:
    """Given a repository's snapshots, return the start segment of the server's oldest base
    backup (what the WAL must be whole from), None without a readable one."""
    for snap in base_backups(snapshots, customer_name, server_name):
        try:
            return base_backup_start(restic, snap)
        except BaseBackupUnreadable:
            continue
    return None


def _look(push: ServerPush, restic: Restic, customer_name: str, server_name: str,
          server: Server) -> None:
    """Fill in the gaps tier A's WAL has and the archiver's state (errors as lines)."""
    try:
        snaps = wal_snapshots(restic, customer_name)
        push.since = oldest_needed(restic, snaps, customer_name, server_name)
        push.gaps = sequence_gaps(wal_batches(snaps, customer_name, server_name), push.since)
    except ResticError as exc:
        push.errors.append(f"cannot read tier A's WAL of {server_name}: {first_line(exc)}")
    try:
        push.archiver = archiver_state(Connection(server_name, server, server.maintenance_db))
    except PostgresError as exc:
        push.errors.append(f"cannot ask {server_name} for its archiver: {first_line(exc)}")
    try:
        push.spool_free = shutil.disk_usage(push.spool).free
    except OSError:
        pass


def push_server(customer_name: str, customer: Customer, server_name: str, *,
                restic: Restic | None = None, say: Say = print) -> ServerPush:
    """Given a server with `wal:`, push its spool into tier A, then look at the sequence and
    the archiver; return the ServerPush (failures are its `errors`, never raised)."""
    server = customer.servers[server_name]
    assert server.wal is not None
    restic = restic or local_restic(customer_name, customer)
    push = ServerPush(server_name, server.wal.spool.expanduser())
    try:
        push.result = push_spool(restic, customer_name, server_name, push.spool,
                                 batch_files=server.wal.batch_files, say=say)
    except (PushFailed, ResticError, OSError) as exc:
        push.errors.append(first_line(exc))
    _look(push, restic, customer_name, server_name, server)
    return push


def push_wal(site: Site, customer_name: str | None = None, *,
             say: Say = print) -> list[ServerPush]:
    """Given the site and `--customer` (None: every customer with tier A), push every WAL
    spool; return one ServerPush per server. Raise ItemFailed when no server has `wal:`."""
    pushes = []
    for name in site.to_back_up(customer_name):
        customer = site.customers[name]
        pushes += [push_server(name, customer, s, say=say) for s in wal_servers(customer)]
    if not pushes:
        raise ItemFailed("no server has WAL archiving (`wal:` in customers.yaml); README "
                         "\"Point-in-time recovery\" says how to set it up")
    return pushes


__all__ = ["WAL_KIND", "ServerPush", "push_server", "push_wal", "wal_servers"]
