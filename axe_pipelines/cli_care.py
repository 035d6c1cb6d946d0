"""`axe prune` and `axe check`: repository care from the command line (what they do is in
actions/prune.py and actions/check.py; cli.py registers them with `care_commands`).

    axe prune --dry-run [--customer C] [--tier local|ring|cold ...]   what would go, per tier
    axe prune [...]                                                   print it, then forget + prune
    axe check [--customer C] [--tier ...] [--read-data]               restic check; exit 1 on damage

Exit codes: 0 ok; 1 a repository is damaged or could not be pruned/checked (an item); 2 bad
config or usage; 3 a repository or tool could not be used at all.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from axe_pipelines.care.policy import TIERS, Tier
from axe_pipelines.config import load_config
from axe_pipelines.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from axe_pipelines.actions.check import TierCheck


def _tiers(words: list[str] | None) -> list[Tier]:
    """The tiers named by `--tier` (local/a, ring/b/peer, cold/c), in tier order; all when
    none is named. Raise UsageError for another word."""
    from axe_pipelines.tiers import TIER_WORDS

    if not words:
        return list(TIERS)
    chosen = set()
    for word in words:
        if word.lower() not in TIER_WORDS:
            raise UsageError(f"unknown tier {word!r}; say local, ring or cold")
        chosen.add(TIER_WORDS[word.lower()])
    return [t for t in TIERS if t in chosen]


def cmd_prune(args: argparse.Namespace) -> int:
    """`axe prune`: per repository the retention plan, then (without --dry-run) the result;
    the worst exit code."""
    from axe_pipelines.actions.prune import prune

    site = load_config(args.config)
    results = prune(site, site.to_back_up(args.customer), _tiers(args.tier),
                    now=datetime.now(UTC), dry_run=args.dry_run,
                    say=lambda line: print(line, file=sys.stderr, flush=True))
    for result in results:
        print("\n".join(result.lines()), flush=True)
    if args.dry_run and results:
        print("dry run: nothing was forgotten; run `axe prune` without --dry-run to apply")
    return max((r.exit_code for r in results), default=EXIT_OK)


def cmd_check(args: argparse.Namespace) -> int:
    """`axe check`: restic check per repository, one verdict each; exit 1 on damage."""
    from axe_pipelines.actions.check import check_tiers

    site = load_config(args.config)
    results = check_tiers(site, site.to_back_up(args.customer), _tiers(args.tier),
                          now=datetime.now(UTC), read_data=args.read_data)
    for result in results:
        print("\n".join(result.lines()), flush=True)
    _record(results)
    return max((r.exit_code for r in results), default=EXIT_OK)


def _record(results: list[TierCheck]) -> None:
    """Record the results in the Dagster instance (checks/care.py), so `axe status` sees a
    check run from cron; one `axe:` line when they cannot be (the check itself stands)."""
    from axe_pipelines.checks.care import record_checks  # the Dagster layer, on demand
    from axe_pipelines.errors import AxeError

    if not results:
        return
    try:
        record_checks(results)
    except (AxeError, OSError) as exc:
        print(f"axe: check results not recorded for axe status: "
              f"{str(exc).strip().splitlines()[0]}", file=sys.stderr)


def _scope(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customer", help="only this customer (default: all)")
    parser.add_argument("--tier", action="append", metavar="TIER",
                        help="local, ring or cold (repeatable; default: every tier)")


def care_commands(sub: argparse._SubParsersAction) -> None:
    """Given the `axe` subcommand parsers, add prune and check."""
    prune = sub.add_parser("prune", help="forget and prune what each tier's retention policy "
                           "lets go (--dry-run: only show it)")
    _scope(prune)
    prune.add_argument("--dry-run", action="store_true",
                       help="show what would be forgotten, per tier; change nothing")
    prune.set_defaults(func=cmd_prune)

    check = sub.add_parser("check", help="restic check of each tier's repository (this "
                           "week's part of the data, or all of it with --read-data)")
    _scope(check)
    check.add_argument("--read-data", action="store_true",
                       help="read every pack (slow), not this week's k/n part")
    check.set_defaults(func=cmd_check)
