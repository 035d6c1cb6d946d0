"""`axe restore --physical`: its flag, printing and exit codes (what it does is
actions/restore_physical.py; `physical_args` adds the flag to cli.py's restore parser and
hands a restore with it over to `cmd_restore_physical`).

Exit 0 when the copy runs (or, with --dry-run, the base backup was found), 1 when a step
failed (one `axe: restore --physical: …` line; nothing of the live server was changed).
"""

from __future__ import annotations

import argparse
import sys
import time

from axe_pipelines.config import load_config
from axe_pipelines.errors import EXIT_FAILED, EXIT_OK


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def cmd_restore_physical(args: argparse.Namespace) -> int:
    """Given `axe restore --customer C --target S --physical --dest DIR` and its flags,
    restore the base backup into DIR and start it; return the exit code."""
    from axe_pipelines.actions.restore_physical import restore_physical
    from axe_pipelines.actions.selection import RestoreError
    from axe_pipelines.postgres.client import PostgresError
    from axe_pipelines.restic import ResticError

    config = load_config(args.config)
    try:
        restore_physical(config, args.customer, target=args.target, dest=args.dest,
                         as_of=args.as_of, tier=args.tier, source=args.source,
                         dry_run=args.dry_run, say=_say)
    except (RestoreError, PostgresError, ResticError) as exc:
        print(f"axe: restore --physical: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def physical_args(restore: argparse.ArgumentParser) -> None:
    """Given the `restore` parser (its func already set), add `--physical` and hand a restore
    with it to cmd_restore_physical (the others go on to the parser's func). `--dest` is the
    parser's own: for --physical, the new data directory."""
    restore.add_argument("--physical", action="store_true", help="with --target SERVER and "
                         "--dest DIR (a new or empty folder): unpack the server's base backup "
                         "there and start it as a staging server on a free port")
    logical = restore.get_default("func")

    def dispatch(args: argparse.Namespace) -> int:
        if args.physical and not args.cleanup:
            return cmd_restore_physical(args)
        return logical(args)

    restore.set_defaults(func=dispatch)
