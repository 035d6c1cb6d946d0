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
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from axe_pipelines.cli_care import care_commands
from axe_pipelines.cli_config import add_config_init
from axe_pipelines.cli_restore import restore_commands
from axe_pipelines.cli_status import status_commands
from axe_pipelines.cli_wal import wal_commands
from axe_pipelines.config import load_config
from axe_pipelines.errors import (
    EXIT_CONFIG,
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
    from axe_pipelines import interrupt, read_ahead
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
        read_ahead.settle()  # no listing outlives the command
    return worst


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


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the whole command line; each command's `func` runs it."""
    parser = argparse.ArgumentParser(prog="axe", description="Backups and restores, by tier.")
    parser.add_argument("--config", type=Path, help="customers.yaml (default: $AXE_CONFIG, "
                        "./customers.yaml, ~/.axe/customers.yaml)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a failure (also AXE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    _backup_commands(sub)
    restore_commands(sub)  # restore, integrity-check, find-last-valid (cli_restore.py)
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
