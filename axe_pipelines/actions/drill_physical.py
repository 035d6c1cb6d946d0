"""The drill's physical tier: for each server with `physical: true`, its newest base backup at
or before the drill's as-of is unpacked from the tier (postgres/physical.py, no temporary
copy of the tar), started as a staging server of its own (archive_mode off, a free loopback
port) and compared: each database of that server must hold, in every table, exactly the rows
that the same set's dump of it counted at dump time (its recorded counts, else the dump's own
COPY counts read from the repository). A copy that does not start, a database that is
missing, or any count that differs fails the item with one line, and the next tier is tried,
as for the dumps (actions/drill.py).

The counts are the dump's, taken minutes before the base backup in the same lane: a table
written between the two differs, and the drill says so. A database whose dump is not in the
base backup's set (a base backup on its own schedule) is only counted, not compared.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import TYPE_CHECKING

from axe_pipelines.actions.drill_report import Attempt, ItemProof
from axe_pipelines.actions.drill_tiers import FAILURES, TierSource, failure_reason, newest_holding
from axe_pipelines.actions.selection import dump_path
from axe_pipelines.integrity import (
    CheckResult,
    expected_counts,
    recorded_counts_soon,
    row_count_check,
)
from axe_pipelines.physical_item import physical_items
from axe_pipelines.postgres.client import Connection, PostgresError, first_line
from axe_pipelines.postgres.cluster import LocalCluster
from axe_pipelines.postgres.dump import count_rows, read_dump
from axe_pipelines.postgres.physical import (
    copy_connection,
    start_staging_cluster,
    stop_staging_cluster,
    unpack_base_backup,
)
from axe_pipelines.restic import Restic
from axe_pipelines.set_meta import SetMetaHistory
from axe_pipelines.sets import BackupSet

if TYPE_CHECKING:
    from axe_pipelines.actions.drill import Drill


def prove_physicals(drill: Drill) -> list[ItemProof]:
    """Given a drill, prove the base backup of every server with `physical: true` (module
    docstring) and return one ItemProof (`physical/<server>`) per server."""
    return [prove_physical(drill, item.name) for item in physical_items(drill.customer)]


def prove_physical(drill: Drill, server: str) -> ItemProof:
    """Given a drill and a server, try each tier in order until its base backup starts and
    holds the dumps' rows; return every attempt and the RPO of the one that served."""
    item = ItemProof("physical", server)
    for source in drill.chain:
        attempt = Attempt(tier=source.name)
        item.attempts.append(attempt)
        try:
            restic, sets = source.open()
            holding = newest_holding(sets, "physical", server, drill.as_of,
                                     f"tier {source.name}")
            snap = drill._snapshot(holding, "physical", server, attempt)
            started = time.monotonic()
            results = _prove_copy(drill, source, restic, holding[-1], snap.id, server, attempt)
            drill._judge(attempt, results, started)
        except FAILURES as exc:
            attempt.reason = failure_reason(exc, source.name)
        drill.say(f"drill: {item.label} from {source.name}: " + (
            f"proven in {attempt.rto_s:.1f} s" if attempt.ok else f"failed ({attempt.reason})"))
        if attempt.ok:
            item.record_rpo(drill.started, [s.time for s in holding])
            break
    return item


def _prove_copy(drill: Drill, source: TierSource, restic: Restic, the_set: BackupSet,
                snapshot_id: str, server: str, attempt: Attempt) -> list[CheckResult]:
    """Unpack, start, compare; the copy is stopped and its folder removed afterwards."""
    live = Connection(server, drill.customer.servers[server], "postgres")
    with drill._scratch() as workdir:
        if os.geteuid() == 0:
            shutil.chown(workdir, "postgres")  # the copy runs as postgres, under it
        started = time.monotonic()
        datadir = unpack_base_backup(restic, snapshot_id, workdir / "data", server_name=server)
        attempt.steps["fetch"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        try:
            copy = start_staging_cluster(datadir)
        except PostgresError as exc:
            return [CheckResult("start", "builtin", False, first_line(exc))]
        attempt.steps["start"] = round(time.monotonic() - started, 3)
        try:
            started = time.monotonic()
            results = [CheckResult("start", "builtin", True,
                                   f"the copy started on 127.0.0.1:{copy.port}")]
            results += _compare(drill, source, restic, the_set, copy, live)
            attempt.steps["checks"] = round(time.monotonic() - started, 3)
        finally:
            stop_staging_cluster(copy)
    return results


def _compare(drill: Drill, source: TierSource, restic: Restic, the_set: BackupSet,
             copy: LocalCluster, live: Connection) -> list[CheckResult]:
    """One row-count check per database of the server, against the same set's dump."""
    history = drill._histories.setdefault(
        source.name, SetMetaHistory(drill.history, restic, source.open()[1]))
    results = []
    for db_name, db in drill.customer.databases.items():
        if db.server != live.server_name:
            continue
        conn = copy_connection(copy, live, drill.customer.database_name(db_name))
        dump = the_set.member("pgdump", db_name)
        if dump is None:
            results.append(_counted_only(conn, db_name))
            continue
        recorded = recorded_counts_soon(history, drill.customer_name, db_name,
                                        dump.original or dump.id)

        def from_dump(dump_snap=dump, fmt=db.format) -> dict[str, int]:
            with restic.dump(dump_snap.id, dump_path(dump_snap)) as stream:
                return read_dump(stream, fmt=fmt).tables

        expected, where = expected_counts(recorded, from_dump)
        check = row_count_check(conn, expected, source=f"{where} {dump.short_id} of that set")
        results.append(dataclasses.replace(check, name=f"rows-{db_name}"))
    return results


def _counted_only(conn: Connection, db_name: str) -> CheckResult:
    try:
        total = sum(count_rows(conn).values())
    except PostgresError as exc:
        return CheckResult(f"rows-{db_name}", "builtin", False, first_line(exc))
    return CheckResult(f"rows-{db_name}", "builtin", True,
                       f"{total} rows (no dump of {db_name} in the base backup's set to "
                       f"compare with)")

