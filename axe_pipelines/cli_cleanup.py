"""`axe restore --cleanup [--older-than 7d] [--yes]`: its printing and the confirmation
(what it finds and drops is actions/cleanup.py; cli.py's restore hands over to `cmd_cleanup`).

It always lists first. Without `--yes` it asks on a terminal and drops nothing anywhere else
(a script must say `--yes`); with `--dry-run` it only lists. Exit 0 when everything listed was
dropped (or nothing was to be), 1 when one could not be dropped or a server not be asked.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from axe_pipelines.config import load_config
from axe_pipelines.errors import EXIT_FAILED, EXIT_OK, AxeError
from axe_pipelines.postgres.client import PostgresError, first_line


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Given `axe restore --customer C --cleanup` and its flags, list what restores kept
    longer ago than `--older-than`, then drop it once confirmed; return the exit code."""
    from axe_pipelines.actions.cleanup import drop_leftover, find_leftovers, older_than

    site = load_config(args.config)
    customer = site.customer(args.customer)
    now = datetime.now(UTC)
    found, problems = find_leftovers(customer, older_than(args.older_than), now)
    for line in problems:
        print(f"axe: restore --cleanup: {line}", file=sys.stderr)
    if not found:
        print(f"nothing older than {args.older_than} left by restores of {args.customer}")
        return EXIT_FAILED if problems else EXIT_OK
    print(f"kept by restores of {args.customer}, older than {args.older_than}:")
    for leftover in found:
        print(f"  {leftover.line(now)}")
    if args.dry_run or not (args.yes or _confirmed(len(found))):
        print("dry run: nothing dropped" + ("" if args.dry_run else
                                            "; run again with --yes to drop them"))
        return EXIT_FAILED if problems else EXIT_OK
    worst = EXIT_FAILED if problems else EXIT_OK
    for leftover in found:
        try:
            print(drop_leftover(customer, leftover))
        except (PostgresError, AxeError, OSError) as exc:
            print(f"axe: restore --cleanup: {leftover.kind} {leftover.name}: not dropped: "
                  f"{first_line(exc)}", file=sys.stderr)
            worst = EXIT_FAILED
    return worst


def _confirmed(count: int) -> bool:
    """Ask on a terminal; anywhere else (cron, a pipe) the answer is no."""
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"drop these {count}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
