"""`axe restore --as-of <minute>` for a database whose server archives WAL (issue 13): the
newest base backup finished before that moment is unpacked into a staging folder, the WAL
batches from its start segment on are restored beside it, a copy of the server replays them
to `recovery_target_time` and promotes (postgres/pitr.py), and the one database (or
`--table`) is dumped from that copy and brought into the live server through the same safe
paths as a restore from a dump: a new database checked and swapped in with an undo command,
or one table replaced in one transaction. The copy and its folders are removed afterwards.

When it applies: `--pitr`, or an `--as-of` with a clock time (not a date, not latest) for a
database on a server with `wal:` when no tier-A set was stamped within that minute (a time
between the nightly sets). Everything else stays with the set-based restore.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from axe_pipelines.actions.restore_items import (
    DumpSource,
    ItemContext,
    Steps,
    TargetReport,
    after_restore,
    restore_database_file,
    restore_table_file,
)
from axe_pipelines.actions.selection import (
    RestoreError,
    as_of_moment,
    open_source,
    resolve_database,
    scratch_dir,
    tier_label,
)
from axe_pipelines.backup import TAG_TOOL
from axe_pipelines.config import Customer, Site, tier_timezone
from axe_pipelines.config_wal import WalArchiving
from axe_pipelines.postgres import restore as pg_restore
from axe_pipelines.postgres.client import connection_for, run_tool
from axe_pipelines.postgres.dump import count_rows, pg_dump_argv
from axe_pipelines.postgres.physical import copy_connection, unpack_base_backup
from axe_pipelines.postgres.pitr import replay_to
from axe_pipelines.restic import Restic
from axe_pipelines.sets import list_sets
from axe_pipelines.wal.pitr import PitrError, PitrPlan, missing_segments, plan_pitr
from axe_pipelines.wal.segments import SEGMENT_SIZE

if TYPE_CHECKING:
    from axe_pipelines.actions.restore import RestoreOptions, RestoreReport
    from axe_pipelines.integrity import DumpHistory

_CLOCK = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def wants_pitr(config: Site, opts: RestoreOptions) -> bool:
    """Given the options, return whether this restore replays WAL (module docstring). Raise
    RestoreError for `--pitr` without a database target."""
    customer = config.customer(opts.customer)
    if opts.pitr:
        if not opts.target:
            raise RestoreError("--pitr restores one database (or --table): give --target")
        return True
    if not opts.target or not _CLOCK.match(opts.as_of.strip()):
        return False
    try:
        db_name = resolve_database(opts.customer, customer, opts.target, "")
    except RestoreError:
        return False
    if customer.servers[customer.databases[db_name].server].wal is None:
        return False
    moment = as_of_moment(opts.as_of, tier_timezone(customer))
    _tier, _peer, restic = open_source(config, opts.customer, opts.tier, opts.source)
    minute = moment.replace(second=0, microsecond=0)
    return not any(minute <= s.time <= moment for s in list_sets(restic, opts.customer))


def _restore_wal(restic: Restic, plan: PitrPlan, wal_dir: Path) -> None:
    """Every batch of the plan into `wal_dir` (flat: one folder of WAL files)."""
    wal_dir.mkdir()
    for batch in plan.batches:
        snap = batch.snapshot
        restic.run(["restore", f"{snap.id}:{snap.paths[0]}", "--target", str(wal_dir)],
                   what=f"restoring WAL snapshot {snap.short_id}")


def run_pitr(config: Site, opts: RestoreOptions, *, history: DumpHistory,
             say: Callable[[str], None]) -> RestoreReport:
    """Given the site and the options (a database target), plan the point-in-time restore,
    say it, and unless `dry_run` do it (module docstring); return the report. Raise
    PitrError, RestoreError or PostgresError (the live database untouched) if any step
    before the swap fails."""
    from axe_pipelines.actions.restore import RestoreReport

    customer = config.customer(opts.customer)
    db_name = resolve_database(opts.customer, customer, opts.target or "",
                               "a point-in-time restore is of one database")
    server_name = customer.databases[db_name].server
    wal = customer.servers[server_name].wal
    if wal is None:
        raise RestoreError(f"server {server_name} of database {db_name} has no WAL archiving "
                           f"(`wal:`); a point-in-time restore needs it; nothing was changed")
    tz = tier_timezone(customer)
    zone = ZoneInfo(tz)
    moment = as_of_moment(opts.as_of, tz)
    tier, peer, restic = open_source(config, opts.customer, opts.tier, opts.source)
    label = tier_label(tier, peer)
    snapshots = restic.snapshots(tags=[TAG_TOOL, f"customer={opts.customer}"])
    plan = plan_pitr(restic, snapshots, opts.customer, server_name, moment,
                     where=f"{label} of {opts.customer}")
    report = RestoreReport(opts.customer, tier, peer, plan.base.time,
                           plan.base.tag("run") or "", opts.dry_run)
    report.plan = plan.lines(zone, label)
    what = f"table {opts.table} of {db_name}" if opts.table else f"database {db_name}"
    for line in report.plan:
        say(line)
    if opts.dry_run:
        say("dry run: nothing will be changed")
        say(f"  would unpack the base backup and the WAL into a staging folder, replay to "
            f"the target on a copy of {server_name} (127.0.0.1, archive_mode off), dump "
            f"{db_name} from it and restore {what} "
            + ("in one transaction" if opts.table else
               "into a new database swapped in for the live one (the old one kept, undo "
               "printed)") + "; then remove the copy")
        return report
    ctx = ItemContext(opts.customer, customer, restic, Steps(say, report.steps), say, history,
                      config_path=config.path)
    with scratch_dir() as work:
        if os.geteuid() == 0:
            work.chmod(0o711)  # the copy's user passes through to its own 0700 folders
        report.targets.append(_replay_and_restore(ctx, opts, plan, db_name, work, wal))
    return report


def _replay_and_restore(ctx: ItemContext, opts: RestoreOptions, plan: PitrPlan, db_name: str,
                        work: Path, wal: WalArchiving) -> TargetReport:
    """Unpack, restore the WAL, replay, dump the database from the copy, bring it in."""
    customer: Customer = ctx.customer
    live = connection_for(customer, db_name)
    where = f"database {db_name}"
    exists = True if opts.table else pg_restore.check_sessions(live, force=opts.force,
                                                               where=where)
    with ctx.steps.step(f"{where}: unpacking base backup {plan.base.short_id}"):
        datadir = unpack_base_backup(ctx.restic, plan.base.id, work / "data",
                                     server_name=plan.server)
    with ctx.steps.step(f"{where}: restoring WAL {plan.start}..{plan.end} "
                        f"({len(plan.batches)} snapshot(s))"):
        _restore_wal(ctx.restic, plan, work / "wal")
        _hand_to_postgres(work / "wal")
    if missing := missing_segments(plan, work / "wal", datadir):
        raise PitrError(f"{where}: WAL from base backup {plan.base.short_id} to the target is "
                        f"not whole: {missing[0]}; nothing was changed")
    started = time.monotonic()
    with ctx.steps.step(f"{where}: replaying WAL to {plan.target.isoformat()}"):
        replayed = replay_to(datadir, work / "wal", plan.target, live,
                             last_segment_lsn_floor=plan.end.number * SEGMENT_SIZE,
                             timeout_s=wal.replay_timeout_s)
    try:
        ctx.say(f"{where}: recovered in {time.monotonic() - started:.1f} s"
                + (" (no commit after the target: all of the WAL replayed)"
                   if replayed.to_end else ""))
        source_conn = copy_connection(replayed.copy, live, live.dbname)
        counts = count_rows(source_conn)
        dump_file = work / f"{db_name}.pitr.pgdump"
        with ctx.steps.step(f"{where}: dumping {live.dbname} from the recovered copy"):
            run_tool([*pg_dump_argv(source_conn, snapshot=None), "-f", str(dump_file)],
                     env=source_conn.env(), what=f"{where}: pg_dump of the recovered copy")
    finally:
        replayed.copy.stop()
    source = f"base backup {plan.base.short_id} + WAL to {plan.target.isoformat()}"
    if opts.table:
        result = restore_table_file(ctx, db_name, opts.table, dump_file, plan.base.id,
                                    source, work, lock_timeout=opts.lock_timeout)
    else:
        result = restore_database_file(ctx, db_name, dump_file, DumpSource(
            plan.base.id, source, lambda: counts, "custom",
            counted_where="counted in the recovered copy"), exists=exists, force=opts.force,
            jobs=opts.jobs)
    after_restore(ctx, db_name, result)
    return result


def _hand_to_postgres(folder: Path) -> None:
    """The copy runs as `postgres` (as root): its restore_command must read the WAL, which
    nobody else may (it holds the data)."""
    folder.chmod(0o700)
    if os.geteuid() == 0:
        for p in [folder, *folder.iterdir()]:
            shutil.chown(p, "postgres", "postgres")
