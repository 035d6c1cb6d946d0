"""`axe restore`, `axe integrity-check` and `axe find-last-valid`: their arguments and
printing (what they do is in actions/restore.py and actions/integrity.py; cli.py registers
them with `restore_commands`).

Exit codes: 0 restored / checks passed; 1 a restore item or check failed; 2 bad
configuration or usage.
"""

from __future__ import annotations

import argparse
import sys
import time

from axe_pipelines.cli_physical import physical_args
from axe_pipelines.config import load_config
from axe_pipelines.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK


def _err(text: str) -> None:
    print(f"axe: {text}", file=sys.stderr)


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def _restore_errors() -> tuple[type[BaseException], ...]:
    from axe_pipelines.actions.selection import RestoreError
    from axe_pipelines.postgres.client import PostgresError
    from axe_pipelines.restic import ResticError

    return (RestoreError, ResticError, PostgresError)


def cmd_restore(args: argparse.Namespace) -> int:
    from axe_pipelines.actions.restore import RestoreOptions, run_restore, undo_restore
    from axe_pipelines.integrity import format_table
    from axe_pipelines.resources import DagsterDumpHistory

    if args.cleanup:
        from axe_pipelines.cli_cleanup import cmd_cleanup  # its printing lives there

        return cmd_cleanup(args)
    # Opened beside restic's first calls, unless it will not be read: an undo, a dry run, or
    # one table of a named database (its checks need no dump-time counts).
    one_table = bool(args.table and args.target and args.as_of != "last-valid")
    history = DagsterDumpHistory(warm=not (args.undo or args.dry_run or one_table))
    config = load_config(args.config)
    if args.undo:
        if not args.target:
            _err("restore: --undo needs --target, the database that was restored")
            return EXIT_CONFIG
        try:
            undo_restore(config, args.customer, args.target, args.undo, say=_say)
        except _restore_errors() as exc:
            _err(f"restore --undo: {str(exc).strip().splitlines()[0]}")
            return EXIT_FAILED
        return EXIT_OK
    opts = RestoreOptions(customer=args.customer, tier=args.tier, source=args.source,
                          as_of=args.as_of, target=args.target, table=args.table,
                          dry_run=args.dry_run, force=args.force, in_place=args.in_place,
                          dest=args.dest, check=args.check, jobs=args.jobs,
                          lock_timeout=args.lock_timeout, pitr=args.pitr)
    try:
        report = run_restore(config, opts, say=_say, history=history)
    except _restore_errors() as exc:
        _err(f"restore: {str(exc).strip().splitlines()[0]}")
        return EXIT_FAILED
    if report.dry_run:
        return EXIT_OK
    for target in report.targets:
        if target.error:
            print(f"{target.kind} {target.name}: FAILED: {target.error}")
            continue
        print(f"{target.kind} {target.name}: {target.detail}")
        if target.checks:
            print(format_table(target.checks))
        for check in target.checks:
            if check.kind == "command" and check.output:
                print(f"--- output of {check.name}:\n{check.output}")
        for line in target.post_restore:
            print(f"post-restore: {line}")
    undo = [t for t in report.targets if t.undo]
    if undo:
        print("undo (closes the database to new connections and terminates open ones, then "
              "swaps the previous database back):")
        for target in undo:
            print(f"undo with: {target.undo}")
    print("steps:")
    for step in report.steps:
        print(f"  {step.seconds:7.1f} s  {step.name}")
    if report.failed:
        _err(f"restore: {len(report.failed)} of {len(report.targets)} item(s) failed: "
             + "; ".join(f"{t.kind} {t.name}" for t in report.failed)
             + ("; the others were restored (undo lines above)" if undo else ""))
        return EXIT_FAILED
    if not report.ok:
        _err("restore: integrity check(s) failed; see the table above")
        return EXIT_FAILED
    return EXIT_OK


def cmd_integrity_check(args: argparse.Namespace) -> int:
    from axe_pipelines.actions.integrity import run_integrity_check
    from axe_pipelines.integrity import format_table
    from axe_pipelines.resources import DagsterDumpHistory

    config = load_config(args.config)
    try:
        report = run_integrity_check(config, args.customer, args.target, as_of=args.as_of,
                                     tier=args.tier, source=args.source, live=args.live,
                                     only=args.check or None, say=_say,
                                     history=DagsterDumpHistory())
    except _restore_errors() as exc:
        _err(f"integrity-check: {str(exc).strip().splitlines()[0]}")
        return EXIT_FAILED
    where = "live database" if report.live else "staging copy"
    print(f"{report.target} ({where}, snapshot {report.snapshot_id[:8]}):")
    print(format_table(report.checks))
    for check in report.checks:
        if check.kind == "command" and check.output:
            print(f"--- output of {check.name}:\n{check.output}")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_find_last_valid(args: argparse.Namespace) -> int:
    from axe_pipelines.actions.integrity import run_find_last_valid
    from axe_pipelines.resources import DagsterDumpHistory

    config = load_config(args.config)
    try:
        last = run_find_last_valid(config, args.customer, args.target, args.check,
                                   tier=args.tier, source=args.source, before=args.before,
                                   say=_say, history=DagsterDumpHistory())
    except _restore_errors() as exc:
        _err(f"find-last-valid: {str(exc).strip().splitlines()[0]}")
        return EXIT_FAILED
    print(f"last valid: {last.found.time.isoformat()} (snapshot {last.snapshot.short_id}, "
          f"{len(last.probes)} of {last.sets} set(s) tested)")
    print(f"restore it with: axe restore --customer {args.customer} --tier {last.tier} "
          f"--target {args.target} --as-of {last.found.time.isoformat()}")
    return EXIT_OK


def _tier_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--customer", required=True)
    p.add_argument("--tier", help="local, ring or cold (default: local)")
    p.add_argument("--from", dest="source", help="the same words as --tier, or a ring peer")


def restore_commands(sub: argparse._SubParsersAction) -> None:
    """Given the subcommands, add restore, integrity-check and find-last-valid."""
    restore = sub.add_parser("restore", help="restore a database, table or folder as of a time")
    _tier_args(restore)
    restore.add_argument("--as-of", default="latest",
                         help="2026-05-20 (end of day), 2026-05-20T03:00, latest, or last-valid "
                              "(with --check)")
    restore.add_argument("--target", help="database (frame, frame-postgres, …), folder, or "
                         "server (every database on it); default: everything in the set")
    restore.add_argument("--table", help="only this table (schema.table or name) of --target; "
                         "without --target, of the one database whose dump holds it")
    restore.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    restore.add_argument("--pitr", action="store_true", help="replay archived WAL to --as-of "
                         "(implied for a time between the sets on a server with wal:)")
    restore.add_argument("--force", action="store_true",
                         help="terminate connections to the database being replaced")
    restore.add_argument("--in-place", action="store_true",
                         help="folders: restore over the original instead of beside it")
    restore.add_argument("--dest", help="folders: restore into this path")
    restore.add_argument("--check", help="with --as-of last-valid: the check that must pass")
    restore.add_argument("--jobs", type=int, default=2, help="pg_restore -j (default 2)")
    restore.add_argument("--lock-timeout", type=float, default=10.0, metavar="SECONDS",
                         help="table restore: how long to wait for the table's lock before "
                         "refusing (default 10)")
    restore.add_argument("--undo", metavar="STAMP",
                         help="with --target: put back the database a restore replaced "
                         "(<db>_before_restore_STAMP, as the restore printed)")
    restore.add_argument("--cleanup", action="store_true", help="list the databases and "
                         "folders restores kept (<db>_before_restore_*, <db>_restored_*, "
                         "<folder>.restored-*) older than --older-than, then drop them once "
                         "confirmed (--yes in scripts; --dry-run only lists)")
    restore.add_argument("--older-than", default="7d", metavar="AGE",
                         help="with --cleanup: 7d (default), 36h, 1m; 0 for all")
    restore.add_argument("--yes", action="store_true", help="with --cleanup: drop without "
                         "asking")
    restore.set_defaults(func=cmd_restore)
    physical_args(restore)  # --physical (cli_physical.py)

    integrity = sub.add_parser("integrity-check",
                               help="restore a snapshot into a staging server and check it")
    _tier_args(integrity)
    integrity.add_argument("--target", required=True)
    integrity.add_argument("--as-of", default="latest")
    integrity.add_argument("--live", action="store_true",
                           help="run the SQL checks against the live database instead")
    integrity.add_argument("--check", action="append",
                           help="only this check (repeatable; row-counts is the built-in one)")
    integrity.set_defaults(func=cmd_integrity_check)

    last_valid = sub.add_parser("find-last-valid",
                                help="the newest snapshot of a database that passes a check")
    _tier_args(last_valid)
    last_valid.add_argument("--target", required=True)
    last_valid.add_argument("--check", required=True)
    last_valid.add_argument("--before", help="only sets at or before this time")
    last_valid.set_defaults(func=cmd_find_last_valid)
