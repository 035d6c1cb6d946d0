"""`axe status`, `axe snapshots` and `axe doctor`: their arguments and printing (what they do
is actions/status.py, actions/snapshots.py and actions/doctor.py; cli.py registers them with
`status_commands`).

    axe status [--customer C] [--json] [--sizes]      every tier at a glance; exit 1 on trouble
    axe snapshots [--customer C] [--tier T] [--json]  the sets --as-of can pick on a tier
    axe doctor                                        one line per finding; exit 1 on a FAIL
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from axe_pipelines.config import load_config
from axe_pipelines.errors import EXIT_OK

if TYPE_CHECKING:
    from axe_pipelines.actions.status_model import Outcome, SiteStatus


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours < 0:
        return "future"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} d"


def _size(n: int | None) -> str:
    from axe_pipelines.progress import human_bytes

    return human_bytes(n) if n else "?"


def _outcome(outcome: Outcome | None, now: datetime) -> str:
    if outcome is None:
        return "never"
    return outcome.result if outcome.result == "running" else \
        f"{outcome.result} {_age(now - outcome.at)}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart, header first."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]


def format_status(status: SiteStatus) -> list[str]:
    """Given a SiteStatus, return the lines `axe status` prints: one table (a row per tier of
    each customer), then one line per problem, then the stuck runs."""
    now = status.now
    zones = {c.timezone for c in status.customers}
    zone_note = f" ({zones.pop()})" if len(zones) == 1 else ""
    rows = []
    for cs in status.customers:
        for i, row in enumerate(cs.rows):
            newest = row.newest
            label = row.tier if row.tier == "local" else f"{row.tier} {row.where}"
            if newest is None and row.last_sync:  # a cold volume that is not mounted
                when = f"synced {row.last_sync.astimezone(ZoneInfo(cs.timezone)):%Y-%m-%d}"
            else:
                when = f"{newest.time:%Y-%m-%d %H:%M}" if newest else "-"
            rows.append([
                cs.customer, label, when, _age(now - newest.time) if newest else "-",
                str(row.sets) if newest or row.sets else "-",
                ("complete" if newest.complete else f"{len(newest.missing)} missing")
                if newest else "-",
                f"{_size(row.raw_bytes)} / {_size(row.stored_bytes)}",
                "-" if row.locks is None else (f"{row.stale_locks} stale" if row.stale_locks
                                               else str(row.locks)),
                _outcome(row.check, now), _outcome(cs.drill, now) if i == 0 else "",
                row.state, row.note])
    lines = _table(["customer", "tier", f"newest set{zone_note}", "age", "sets", "newest is",
                    "repo raw / stored", "locks", "check", "drill", "state", "note"], rows)
    problems = [f"  {cs.customer} {r.tier if r.tier == 'local' else r.tier + ' ' + r.where}: "
                f"{p}" for cs in status.customers for r in cs.rows for p in r.problems]
    problems += [f"  {cs.customer}: {p}" for cs in status.customers for p in cs.problems]
    problems += [f"  run {r.run_id[:8]} ({r.job}) {r.status} since {r.since:%Y-%m-%d %H:%M %Z} "
                 f"({_age(now - r.since)}): stuck? look at it in the UI" for r in status.stuck]
    if status.history_error:  # what the table says about checks and drills is not known
        problems.append(f"  UNKNOWN: {status.history_error}; the check and drill columns "
                        f"are unknown, not never (axe doctor)")
    if problems:
        lines += ["", "problems:", *problems]
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    """`axe status`: the table (or `--json`); exit 0 when all is well, 1 when anything is
    stale, failing or unknown."""
    from axe_pipelines.actions.status import site_status
    from axe_pipelines.checks.history import DagsterOpsHistory

    site = load_config(args.config)
    names = site.to_back_up(args.customer)
    with DagsterOpsHistory() as history:
        status = site_status(site, names, history, sizes=args.sizes)
    if args.json:
        print(json.dumps(status.as_json(), indent=2))
    else:
        print("\n".join(format_status(status)))
    return status.exit_code


def cmd_snapshots(args: argparse.Namespace) -> int:
    """`axe snapshots`: per customer the sets on the tier, oldest first (or `--json`)."""
    from axe_pipelines.actions.snapshots import list_snapshots

    site = load_config(args.config)
    now = datetime.now(UTC)
    listings = list_snapshots(site, site.to_back_up(args.customer), args.tier, args.source)
    if args.json:
        print(json.dumps([t.as_json(now) for t in listings], indent=2))
        return EXIT_OK
    for listing in listings:
        where = listing.tier + (f" ({listing.peer})" if listing.peer else "")
        print(f"{listing.customer} on {where}: {len(listing.sets)} set(s) in "
              f"{listing.repository}, times in {listing.timezone}")
        rows = [[f"{s.time:%Y-%m-%d %H:%M:%S}", s.run_id[:12], _age(now - s.time),
                 "complete" if s.complete else "INCOMPLETE", str(len(s.items)),
                 _size(s.raw_bytes), " ".join(s.items)] for s in listing.sets]
        print("\n".join(_table(["logical time", "run", "age", "set", "items", "size",
                                "members"], rows)))
        for s in listing.sets:
            for reason in s.missing:
                print(f"  {s.time:%Y-%m-%d %H:%M}: missing {reason}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    """`axe doctor`: one line per finding as it is made; exit 1 on a FAIL (warnings keep 0),
    3 without restic."""
    from axe_pipelines.actions.doctor import doctor
    from axe_pipelines.checks.history import instance_findings

    worst = EXIT_OK
    for finding in doctor(args.config, instance=instance_findings):
        print(f"{finding.status:<4} {finding.text}", flush=True)
        worst = max(worst, finding.exit_code)
    return worst


def status_commands(sub: argparse._SubParsersAction) -> None:
    """Given the subcommands, add status, snapshots and doctor."""
    status = sub.add_parser("status", help="every tier of every customer at a glance: newest "
                            "set, age, gaps, size, last check and drill (exit 1 on trouble)")
    status.add_argument("--customer")
    status.add_argument("--json", action="store_true", help="the same as JSON (README)")
    status.add_argument("--sizes", action="store_true", help="also ask restic for each "
                        "repository's raw and stored size (one more restic call each)")
    status.set_defaults(func=cmd_status)

    snaps = sub.add_parser("snapshots", help="the sets on a tier, as --as-of picks them")
    snaps.add_argument("--customer", help="only this customer (default: all)")
    snaps.add_argument("--tier", help="local, ring or cold (default: local)")
    snaps.add_argument("--from", dest="source", help="the same words as --tier, or a ring peer")
    snaps.add_argument("--json", action="store_true", help="the same as JSON (README)")
    snaps.set_defaults(func=cmd_snapshots)

    doctor = sub.add_parser("doctor", help="check tools, config, passwords, repositories, "
                            "databases, peers, volumes and the Dagster instance")
    doctor.set_defaults(func=cmd_doctor)
