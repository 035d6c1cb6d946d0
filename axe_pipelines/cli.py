"""`axe`: the operator's command line — argparse, printing and exit codes. What each command
does is in actions/ (restore and integrity included); the backups run as recorded Dagster runs
(runs.py).

Exit codes: 0 success; 1 a backup item or check failed (each failure on its own line);
2 bad configuration or usage; 3 a tool or repository problem before any backup started.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from axe_pipelines.cli_care import care_commands
from axe_pipelines.cli_config import add_config_init
from axe_pipelines.cli_physical import physical_args
from axe_pipelines.cli_status import status_commands
from axe_pipelines.cli_wal import wal_commands
from axe_pipelines.config import load_config
from axe_pipelines.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_UNUSABLE,
    AxeError,
)
from axe_pipelines.startup import skip_final_collection

if TYPE_CHECKING:
    from axe_pipelines.actions.backup import CollectingReporter, CopyOutcome, LocalOutcome
    from axe_pipelines.backup import Item


def _err(text: str) -> None:
    print(f"axe: {text}", file=sys.stderr)


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def cmd_config_validate(args: argparse.Namespace) -> int:
    """`axe config validate`: say 'valid' with what is configured (a bad file raises)."""
    config = load_config(args.config)
    backed = config.backed_up_customers()
    peers = sorted(config.peers())
    print(f"{config.path}: valid ({len(backed)} customer(s) backed up: {', '.join(backed) or '-'};"
          f" ring peers: {', '.join(peers) or '-'})")
    from axe_pipelines.config_rules import site_warnings
    for line in site_warnings(config):
        print(f"warn {line}")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    """`axe init`: the Dagster home, then each tier-A repository unless it exists."""
    from axe_pipelines.actions.backup import init

    site = load_config(args.config)
    for what, state in init(site, site.to_back_up(args.customer), args.chunker_from):
        print(f"{what}: {state}")
    return EXIT_OK


def _reporter_for(plain: bool) -> Callable[[list[Item]], CollectingReporter]:
    from axe_pipelines.progress import PlainReporter, TerminalReporter

    live = sys.stderr.isatty() and not plain
    return lambda items: TerminalReporter(items) if live else PlainReporter()


def _print_local(outcome: LocalOutcome) -> None:
    from axe_pipelines.text_table import result_table

    if outcome.run is not None:
        print(result_table(outcome.results, outcome.wall_s))
        for check in outcome.run.checks:
            print(check.line)
    for line in outcome.errors:
        _err(line)


def _print_copy(outcome: CopyOutcome) -> None:
    for line in outcome.errors:
        _err(line)
    if outcome.summary:
        print(outcome.summary)
    for check in outcome.shown_checks:
        print(check.line)


def cmd_backup(args: argparse.Namespace) -> int:
    """`axe backup --local/--ring/--cold`: each tier asked for, in that order; the worst
    exit code of all."""
    from axe_pipelines import interrupt
    from axe_pipelines.actions.backup import backup_cold, backup_local, backup_ring
    from axe_pipelines.runner_soon import RunnerSoon

    interrupt.install()  # Ctrl-C / SIGTERM: stop within seconds, exit 130 / 143
    if not (args.local or args.ring or args.cold):
        _err("say which tier: --local, --ring and/or --cold (run in that order)")
        return EXIT_CONFIG
    site = load_config(args.config)
    names = site.to_back_up(args.customer)
    runner = RunnerSoon(say=_note, verbose=args.verbose)  # Dagster opens meanwhile
    worst = EXIT_OK
    try:
        if args.local:
            for local in backup_local(site, names, runner, say=_note, reporter_for=_reporter_for(
                    args.plain), skip_restore_check=args.skip_restore_check):
                _print_local(local)
                worst = max(worst, local.exit_code)
        copies = itertools.chain(
            backup_ring(site, names, runner, peer=args.peer, retry=not args.no_retry,
                        say=_note) if args.ring else (),
            backup_cold(site, names, runner) if args.cold else ())
        for copy in copies:
            _print_copy(copy)
            worst = max(worst, copy.exit_code)
    finally:
        runner.close()
    return worst


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
    history = DagsterDumpHistory(warm=not (args.undo or args.dry_run))  # overlaps restic
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


def _backup_commands(sub: argparse._SubParsersAction) -> None:
    """config validate, init, backup, status, doctor."""
    cfg = sub.add_parser("config", help="check customers.yaml, or write a starting one")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    cfg_sub.add_parser("validate", help="say 'valid' or name every bad field"
                       ).set_defaults(func=cmd_config_validate)
    add_config_init(cfg_sub)  # cli_config.py

    init = sub.add_parser("init", help="create the tier A repositories and the Dagster home "
                          "where runs are recorded (idempotent)")
    init.add_argument("--customer")
    init.add_argument("--chunker-from", metavar="TIER", help="new tier A with the chunker "
                      "parameters of ring, cold or a peer (default: any copy found)")
    init.set_defaults(func=cmd_init)

    backup = sub.add_parser("backup", help="run a tier now")
    backup.add_argument("--local", action="store_true", help="tier A: the local repository")
    backup.add_argument("--ring", action="store_true",
                        help="tier B: copy the latest set to the ring peer(s) over sftp")
    backup.add_argument("--peer", help="with --ring: only this peer (default: all)")
    backup.add_argument("--no-retry", action="store_true", help="with --ring: fail at once "
                        "instead of retrying a peer that is down (tiers.ring.retries)")
    backup.add_argument("--cold", action="store_true",
                        help="tier C: sync the latest sets to every mounted cold volume")
    backup.add_argument("--customer", help="only this customer (default: all)")
    backup.add_argument("--plain", action="store_true", help="plain log lines, no live table")
    backup.add_argument("--skip-restore-check", action="store_true",
                        help="leave the restorable checks out (every dump is still verified "
                        "as it is written; the check can be run later from the UI)")
    backup.add_argument("--verbose", action="store_true", help="also show Dagster's ERROR "
                        "records and stack traces here (they are always in the run log)")
    backup.set_defaults(func=cmd_backup)
    status_commands(sub)  # status, snapshots, doctor (cli_status.py)


def _restore_commands(sub: argparse._SubParsersAction) -> None:
    """restore, integrity-check, find-last-valid."""
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


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the whole command line; each command's `func` runs it."""
    parser = argparse.ArgumentParser(prog="axe", description="Backups and restores, by tier.")
    parser.add_argument("--config", type=Path, help="customers.yaml (default: $AXE_CONFIG, "
                        "./customers.yaml, ~/.axe/customers.yaml)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a failure (also AXE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    _backup_commands(sub)
    _restore_commands(sub)
    care_commands(sub)  # prune, check (cli_care.py)
    wal_commands(sub)  # wal push (cli_wal.py)
    from axe_pipelines.cli_drill import add_drill_command  # its printing lives there

    add_drill_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Given the command line (default sys.argv), run the command and return its exit code.

    Every `AxeError` ends here as one `axe: ...` line and its own exit code; a traceback is
    shown only with `--debug` or AXE_DEBUG=1 (and for bugs, which are not AxeErrors).
    """
    # Preview/beta notices about Dagster APIs are for developers, not the operator's terminal.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*(preview|beta|experimental).*")
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("AXE_DEBUG") == "1"
    try:
        return args.func(args)
    except (AxeError, KeyboardInterrupt, OSError) as exc:
        if debug:
            traceback.print_exc()
        message, code = _failure(exc)
        _err(message)
        return code
    finally:
        if argv is None:  # the `axe` program itself, which exits next (tests pass argv)
            skip_final_collection()


def _failure(exc: BaseException) -> tuple[str, int]:
    """The `axe:` line and exit code of a failure that reached main."""
    if isinstance(exc, AxeError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):
        # A full disk, a file that went away: the operator's to fix.
        where = f" ({exc.filename})" if exc.filename else ""
        return (f"{exc.strerror or exc}{where}; fix that and run the command again (--debug "
                "shows where it happened)", EXIT_UNUSABLE)
    return "interrupted", EXIT_SIGINT

if __name__ == "__main__":
    sys.exit(main())
