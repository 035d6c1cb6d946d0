"""Tier A's physical item: one base backup per server with `physical: true`, a member of the
night's set like the dumps (backup.py plans it and dispatches here).

The snapshot holds one file, `<server>.base.tar` (postgres/physical.py: pg_basebackup's tar
with the WAL it needs), tagged `axe-pipelines, customer=C, kind=physical, server=S, run=R`,
and is streamed with restic `--stdin-from-command`: no temporary copy, and a pg_basebackup
that fails or is killed leaves no snapshot (restic sees its exit status). A server with
`physical_schedule` gets its base backup from a job of its own on that schedule instead of
the nightly run (assets/physical.py); it is still an item of tier A's plan, so tiers B and C
carry its newest base backup with every set they copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from axe_pipelines.postgres.physical import pg_basebackup_argv

if TYPE_CHECKING:  # backup.py imports this module
    from axe_pipelines.backup import Item, ItemResult, _Job
    from axe_pipelines.config import Customer
    from axe_pipelines.restic import BackupSummary, Snapshot
    from axe_pipelines.sets import BackupSet

WEEKLY_MAX_AGE_HOURS = 192.0  # a weekly base backup, plus a day


def physical_items(customer: Customer) -> list[Item]:
    """Given a customer, return one `physical` item per server with `physical: true`, in
    the servers' order."""
    from axe_pipelines.backup import Item

    return [Item("physical", name, name) for name, server in customer.servers.items()
            if server.physical]


def separately_scheduled(customer: Customer, item: Item) -> bool:
    """Given a customer and a tier-A item, return True for a base backup that runs on its
    server's own `physical_schedule`, not with the nightly set."""
    return item.kind == "physical" and customer.servers[item.name].physical_schedule is not None


def nightly_items(customer: Customer, items: list[Item]) -> list[Item]:
    """Given a customer and its tier-A plan, return the items its nightly job backs up: all
    but the base backups on their own `physical_schedule`."""
    return [i for i in items if not separately_scheduled(customer, i)]


def own_schedule_servers(customer: Customer) -> list[str]:
    """Given a customer, return the servers whose base backup runs on its own
    `physical_schedule` (a set of its own, not a member every nightly set must hold)."""
    return [i.name for i in physical_items(customer) if separately_scheduled(customer, i)]


def base_backups_only(customer: Customer, the_set: BackupSet) -> bool:
    """Given a customer and a set, return True for the set of a base backup's own job: it
    holds only base backups of servers with a `physical_schedule` (no nightly item), so it
    is no night's set for status, listings and the copy tiers' choice."""
    own = set(own_schedule_servers(customer))
    members = [s for s in the_set.snapshots if s.tag("kind") != "set-meta"]
    return bool(members) and all(s.tag("kind") == "physical" and s.tag("server") in own
                                 for s in members)


def newest_nightly(customer: Customer, sets: list[BackupSet]) -> BackupSet:
    """Given a customer and its sets (oldest first, at least one), return the newest that
    is a night's set (not base_backups_only), else the newest."""
    return next((s for s in reversed(sets) if not base_backups_only(customer, s)), sets[-1])


def backup_base(job: _Job, item: Item, result: ItemResult) -> BackupSummary:
    """Given the backup job of one `physical` item, stream pg_basebackup's tar of the whole
    server into a new snapshot and return restic's summary. Raise ResticError (no snapshot)
    when pg_basebackup fails, PostgresError when the server does not answer."""
    from axe_pipelines.backup import _dump_command, _server_connection, dump_filename

    assert item.server is not None
    conn = _server_connection(job.customer, item.server)
    result.format = "tar"
    result.path = dump_filename(job.customer, item)
    argv, env = _dump_command(pg_basebackup_argv(conn, label=f"axe-pipelines {item.name}"),
                              conn, job.errfile)
    return job.restic.backup_command(argv, filename=result.path, tags=job.tags, at=job.at,
                                     on_progress=job.progress, env_extra=env)


def max_age_hours(customer: Customer, server_name: str) -> float:
    """Given a customer with tier A and a server with `physical: true`, return how old its
    newest base backup may be (physical_max_age_hours; default tier A's freshness_hours, or
    8 days for a server with a physical_schedule of its own)."""
    assert customer.tiers is not None
    server = customer.servers[server_name]
    if server.physical_max_age_hours is not None:
        return server.physical_max_age_hours
    return WEEKLY_MAX_AGE_HOURS if server.physical_schedule else \
        float(customer.tiers.local.freshness_hours)


def base_backup_problem(customer: Customer, server_name: str, snapshots: Iterable[Snapshot],
                        now: datetime) -> str | None:
    """Given a customer, a server with `physical: true`, the repository's snapshots and the
    time now, return why its base backups are not current (none, or the newest complete one
    is older than max_age_hours), or None when they are. The coverage rule of the physical
    tier: it has its own age, since a base backup may run weekly while the dumps run
    nightly."""
    mine = [s for s in snapshots if s.tag("kind") == "physical"
            and s.tag("server") == server_name and "incomplete" not in s.tags]
    if not mine:
        return f"no base backup of server {server_name} in the repository"
    newest = max(mine, key=lambda s: s.time)
    age_h = (now - newest.time).total_seconds() / 3600
    limit = max_age_hours(customer, server_name)
    if age_h > limit:
        return (f"the newest base backup of server {server_name} ({newest.short_id}, "
                f"{newest.time.isoformat()}) is {age_h:.0f} h old, more than {limit:.0f} h")
    return None
