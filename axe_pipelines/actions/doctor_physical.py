"""What `axe doctor` says about each server with `physical: true` (actions/doctor.py yields
it after the client tools): what pg_basebackup needs from the server (README "Physical base
backups"), asked the way the backup will ask.

- a replication connection as the configured user (`replication=true`, `IDENTIFY_SYSTEM`),
  through the exec prefix when there is one: it needs the REPLICATION attribute and a
  `replication` line in pg_hba.conf, and is refused with the server's own words otherwise;
- pg_basebackup (where the backup runs it) at least as new as the server;
- `wal_level` not minimal, a WAL sender free, no tablespace besides pg_default and
  pg_global (a tar on stdout holds one); a warning when neither `wal_keep_size` nor WAL
  archiving keeps the WAL that `-X fetch` reads at the end of the backup.
"""

from __future__ import annotations

from collections.abc import Iterator

from axe_pipelines.actions.doctor_checks import Finding, _tool_version
from axe_pipelines.config import Customer
from axe_pipelines.postgres.client import Connection, PostgresError, first_line

SETTINGS_SQL = ("SELECT current_setting('wal_level'), current_setting('max_wal_senders'), "
                "current_setting('wal_keep_size'), current_setting('archive_mode'), "
                "(SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN "
                "('pg_default', 'pg_global')), current_setting('server_version_num');")


def physical_findings(customer_name: str, customer: Customer) -> Iterator[Finding]:
    """Given a customer, yield for each server with `physical: true` whether a base backup
    can be taken (module docstring): one FAIL per problem, else one ok line."""
    for server_name, server in customer.servers.items():
        if not server.physical:
            continue
        where = f"physical {server_name} of {customer_name}"
        conn = Connection(server_name, server, server.maintenance_db)
        try:
            wal_level, senders, keep, archive, spaces, number = conn.psql(SETTINGS_SQL,
                                                                          timeout=30)[0]
            Connection(server_name, server, "replication=true").psql("IDENTIFY_SYSTEM;",
                                                                    timeout=30)
        except (PostgresError, ValueError, IndexError) as exc:
            yield Finding("FAIL", f"{where}: no replication connection as "
                                  f"{server.user or 'the default user'}: {first_line(exc)}; "
                                  f"it needs the REPLICATION attribute and a pg_hba.conf "
                                  f"`replication` line")
            continue
        problems = _problems(wal_level, int(senders), int(spaces))
        major = int(number) // 10000
        try:
            tool = _tool_version(conn.tool("pg_basebackup"), f"pg_basebackup for {server_name}")
        except PostgresError as exc:
            tool, problems = None, [*problems, f"pg_basebackup did not run ({first_line(exc)})"]
        if tool is None or tool[0] < major:
            problems.append(f"pg_basebackup {'.'.join(map(str, tool)) if tool else 'unknown'} "
                            f"is older than the server (PostgreSQL {major})")
        for problem in problems:
            yield Finding("FAIL", f"{where}: {problem}")
        if not problems and keep in ("0", "0MB") and archive == "off":
            yield Finding("warn", f"{where}: wal_keep_size 0 and archive_mode off: a busy "
                                  f"server may recycle WAL before `-X fetch` reads it at the "
                                  f"end of the base backup (set wal_keep_size, e.g. 1GB)")
        elif not problems:
            yield Finding("ok", f"{where}: replication connection, pg_basebackup "
                                f"{'.'.join(map(str, tool or ()))}, wal_level {wal_level}")


def _problems(wal_level: str, senders: int, spaces: int) -> list[str]:
    problems = []
    if wal_level == "minimal":
        problems.append("wal_level is minimal; set it to replica (the default) and restart")
    if senders < 1:
        problems.append("max_wal_senders is 0; set it to at least 2 and restart")
    if spaces:
        problems.append(f"{spaces} tablespace(s) besides pg_default: a tar on stdout holds "
                        f"only one (pg_basebackup -D - refuses)")
    return problems
