"""`axe doctor` for WAL archiving (issue 13): per server with `wal:` the settings PostgreSQL
needs (README "Point-in-time recovery"), whether its archive_command is ours and writes into
the configured spool, whether the archiver is failing now, the spool itself, and how old the
newest WAL in tier A is against the RPO."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

from axe_pipelines.actions.doctor_checks import Finding
from axe_pipelines.actions.wal import wal_servers
from axe_pipelines.backup import TAG_TOOL, local_restic
from axe_pipelines.config import Customer, Server
from axe_pipelines.postgres.client import Connection, PostgresError, first_line
from axe_pipelines.postgres.wal import archiver_state, wal_settings
from axe_pipelines.restic import ResticError
from axe_pipelines.wal.catalog import wal_batches

ARCHIVE_SCRIPT = ("axe_pipelines/wal/archive.py", "axe_pipelines.wal.archive")


def setting_findings(where: str, server: Server, settings: dict[str, str]) -> list[Finding]:
    """Given a server with `wal:` and its settings (postgres/wal.wal_settings), return one
    finding per setting: FAIL when archiving cannot work, warn when the RPO is unbounded."""
    assert server.wal is not None
    wal = server.wal
    found = []
    mode, level = settings.get("archive_mode", "?"), settings.get("wal_level", "?")
    found.append(Finding("ok", f"{where}: archive_mode {mode}") if mode in ("on", "always")
                 else Finding("FAIL", f"{where}: archive_mode is {mode}; set archive_mode = "
                              f"on in postgresql.conf and restart the server"))
    found.append(Finding("ok", f"{where}: wal_level {level}") if level in ("replica", "logical")
                 else Finding("FAIL", f"{where}: wal_level is {level}; set wal_level = replica "
                              f"and restart the server"))
    timeout = int(settings.get("archive_timeout", "0") or 0)
    if timeout == 0 or timeout > wal.archive_timeout_s:
        found.append(Finding("warn", f"{where}: archive_timeout is {timeout} s; set it to at "
                             f"most {wal.archive_timeout_s} s (0 lets a quiet server's last "
                             f"commits wait until a 16 MiB segment fills: no RPO)"))
    else:
        found.append(Finding("ok", f"{where}: archive_timeout {timeout} s"))
    command = settings.get("archive_command", "")
    if not any(s in command for s in ARCHIVE_SCRIPT) or wal.spool_on_server not in command:
        found.append(Finding("FAIL", f"{where}: archive_command is {command!r}; it must run "
                             f"axe's archive.py with %p %f {wal.spool_on_server} (README "
                             f"\"Point-in-time recovery\"), then SELECT pg_reload_conf()"))
    else:
        found.append(Finding("ok", f"{where}: archive_command writes into "
                             f"{wal.spool_on_server}"))
    return found


def _spool(where: str, server: Server) -> Finding:
    assert server.wal is not None
    spool = server.wal.spool.expanduser()
    if not spool.is_dir():
        return Finding("FAIL", f"{where}: spool {spool} is not a folder (volume not mounted?); "
                       f"the archive command fails and WAL piles up in pg_wal")
    if not os.access(spool, os.W_OK | os.X_OK):
        return Finding("FAIL", f"{where}: spool {spool} is not writable by this user; the "
                       f"pusher moves files out of it")
    return Finding("ok", f"{where}: spool {spool}")


def wal_findings(name: str, customer: Customer) -> Iterator[Finding]:
    """Given a customer, yield the WAL archiving findings of each of its servers with
    `wal:` (none without)."""
    servers = wal_servers(customer)
    if not servers:
        return
    try:
        snaps = local_restic(name, customer).snapshots(tags=[TAG_TOOL, f"customer={name}",
                                                              "kind=wal"])
    except ResticError as exc:
        snaps = []
        yield Finding("FAIL", f"{name}: cannot list WAL in tier A: {first_line(exc)}")
    for server_name, server in servers.items():
        assert server.wal is not None
        where = f"{name}: WAL of {server_name}"
        conn = Connection(server_name, server, server.maintenance_db)
        try:
            yield from setting_findings(where, server, wal_settings(conn))
            state = archiver_state(conn)
            yield (Finding("FAIL", f"{where}: archive_command failing since "
                           f"{state.last_failed_time} UTC ({state.last_failed_wal}); see the "
                           f"server log") if state.failing else
                   Finding("ok", f"{where}: {state.archived_count} file(s) archived, latest "
                           f"{state.last_archived_wal or 'none'}"))
        except PostgresError as exc:
            yield Finding("FAIL", f"{where}: cannot read its settings: {first_line(exc)}")
        yield _spool(where, server)
        batches = wal_batches(snaps, name, server_name)
        if not batches:
            yield Finding("warn", f"{where}: no WAL in tier A yet (run `axe wal push`)")
            continue
        age = (datetime.now(UTC) - max(b.arrived for b in batches)).total_seconds() / 60
        yield Finding("ok" if age <= server.wal.rpo_minutes else "warn",
                      f"{where}: newest WAL in tier A arrived {age:.0f} min ago (RPO "
                      f"{server.wal.rpo_minutes} min; a quiet server archives less often)")
