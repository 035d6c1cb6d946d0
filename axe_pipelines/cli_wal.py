"""`axe wal push`: push every WAL spool into tier A now (what the `<customer>_wal_push` job
does every few minutes), then say per server what tier A holds and how the archiver is.

Exit codes: 0 every spool pushed, the sequence whole and no archiver failing; 1 otherwise
(a batch that could not be pushed stays in the spool); 2 bad config or usage.
"""

from __future__ import annotations

import argparse
import sys

from axe_pipelines.config import load_config
from axe_pipelines.errors import EXIT_FAILED, EXIT_OK


def cmd_wal_push(args: argparse.Namespace) -> int:
    """`axe wal push`: one line per server; exit 1 on a failure, a gap or a failing archiver."""
    from axe_pipelines.actions.wal import push_wal

    site = load_config(args.config)
    pushes = push_wal(site, args.customer,
                      say=lambda line: print(line, file=sys.stderr, flush=True))
    code = EXIT_OK
    for p in pushes:
        done = p.result
        pushed = (f"{done.files} WAL file(s) in {len(done.pushed)} batch(es) pushed"
                  if done and not done.busy else (done.busy if done else "not pushed"))
        print(f"{p.server}: {pushed}; " + (
            "sequence whole" + (f" from {p.since}" if p.since else "")
            if not p.gaps else "GAPS: " + "; ".join(p.gaps)) + f"; {p.archiving_line()}")
        for error in p.errors:
            print(f"{p.server}: FAILED: {error}")
        if p.errors or p.gaps or not p.archiving_ok:
            code = EXIT_FAILED
    return code


def wal_commands(sub: argparse._SubParsersAction) -> None:
    """Given the `axe` subcommand parsers, add `wal push`."""
    wal = sub.add_parser("wal", help="continuous WAL archiving (point-in-time restores)")
    wal_sub = wal.add_subparsers(dest="wal_command", required=True)
    push = wal_sub.add_parser("push", help="push every WAL spool into tier A now")
    push.add_argument("--customer", help="only this customer (default: all)")
    push.set_defaults(func=cmd_wal_push)
