"""`axe drill [--customer C] [--tier T] [--as-of A]` and `axe drill --report [--last N]`:
the argparse part and the printing (cli.py registers it). Each drill is a Dagster run
recorded in $DAGSTER_HOME (assets/drill.py), like a scheduled one; its progress lines go to
stderr as they come, its table and verdict to stdout.

Exit codes: 0 every database and required folder proven; 1 something was not (or the drill
could not run); 2 bad options; 130 interrupted (the staging server is torn down first).
"""

from __future__ import annotations

import argparse
import sys
import time

from axe_pipelines.actions.drill_report import DrillReport, past_reports
from axe_pipelines.config import Site, load_config, tier_timezone
from axe_pipelines.errors import EXIT_FAILED, EXIT_OK

_COLUMNS = ("item", "tier", "snapshot", "set", "rpo_h", "rpo_gap_h", "rto_s", "checks",
            "result")


class _Terminal:
    """A DrillListener for the terminal: lines to stderr, the finished report kept."""

    def __init__(self) -> None:
        self.report: DrillReport | None = None

    def say(self, line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

    def done(self, report: DrillReport) -> None:
        self.report = report


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def format_report(report: DrillReport) -> list[str]:
    """Given a drill's report, return the lines `axe drill` prints: the verdict, the table
    (item, tier that served it, snapshot, set, RPO hours: the snapshot's age and the gap
    between the last two good sets, RTO seconds, checks, result), the
    fallbacks, the evidence and Slack lines."""
    rows = [[_cell(r[c]) for c in _COLUMNS] for r in report.rows()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    verdict = "passed" if report.ok else "FAILED"
    lines = [f"drill of {report.customer} at {report.started} (as of {report.as_of}): "
             f"{verdict}"]
    if report.fatal:
        lines.append(f"  the drill could not run: {report.fatal}")
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
              for r in [list(_COLUMNS), *rows]]
    lines += [f"  fallback: {line}" for line in report.fallback_lines()]
    lines += [f"  damage: {line} (recorded for axe status / doctor)" for line in report.damage]
    if report.evidence_dir:
        snap = (f"snapshot {report.evidence_snapshot[:8]} in tier A" if report.evidence_snapshot
                else report.evidence_error)
        lines.append(f"  evidence: {report.evidence_dir} ({snap})")
        lines += [f"  evidence in {tier}: {how}" for tier, how in report.evidence_copies.items()]
    elif report.evidence_error:
        lines.append(f"  evidence: {report.evidence_error}")
    if report.slack:
        lines.append(f"  slack: {report.slack}")
    return lines


def _report(site: Site, names: list[str], last: int, from_tier: str | None) -> int:
    from axe_pipelines.actions.drill_evidence import reports_in_tier

    for name in names:
        evidence_dir = site.customer(name).drill.evidence_dir
        found = (reports_in_tier(site, name, from_tier, last) if from_tier
                 else past_reports(evidence_dir, name, last))
        if not found:
            print(f"{name}: no drill recorded in " + (
                f"tier {from_tier} (kind=drill snapshots)" if from_tier
                else str(evidence_dir.expanduser() / name)))
        for report in found:
            print("\n".join(format_report(report)))
    return EXIT_OK


def _validate(site: Site, names: list[str], tier: str | None, as_of: str | None) -> None:
    """Refuse bad words before any run starts (ConfigError / AsOfError: exit 2)."""
    from axe_pipelines.sets import parse_as_of
    from axe_pipelines.tiers import resolve_tier

    if tier:
        resolve_tier(site, tier, None)
    for name in names:
        if as_of:
            parse_as_of(as_of, tier_timezone(site.customer(name)))


def cmd_drill(args: argparse.Namespace) -> int:
    """`axe drill`: one drill per customer, recorded as a Dagster run; the worst exit code."""
    site = load_config(args.config)
    names = site.to_back_up(args.customer)
    if args.report:
        return _report(site, names, args.last, args.from_tier)
    _validate(site, names, args.tier, args.as_of)
    from axe_pipelines.assets.drill import materialize_drill  # the Dagster layer, on demand
    from axe_pipelines.sensors.alerts import alert_drill_failure

    worst = EXIT_OK
    for name in names:
        listener = _Terminal()
        outcome = materialize_drill(site, name, tier=args.tier, as_of=args.as_of,
                                    listener=listener)
        if not outcome.success:  # no daemon's sensor may see a run of this process
            alert_drill_failure(site, name, outcome.run_id)
        if listener.report is None:
            print(f"axe: drill of {name}: {outcome.failure or 'the run failed'}",
                  file=sys.stderr)
            worst = EXIT_FAILED
            continue
        print("\n".join(format_report(listener.report)))
        for check in outcome.checks:
            print(check.line)
        worst = max(worst, EXIT_OK if listener.report.ok else EXIT_FAILED)
    return worst


def add_drill_command(sub: argparse._SubParsersAction) -> None:
    """Given the subcommand parsers, add `axe drill`."""
    drill = sub.add_parser("drill", help="restore drill: every database into a throwaway "
                           "staging server and every folder into a temp folder, checked, "
                           "from tier A (falling back to C, then B); RTO/RPO, evidence, Slack")
    drill.add_argument("--customer", help="only this customer (default: all)")
    drill.add_argument("--tier", help="prove from this tier only: local, ring, cold or a "
                       "ring peer (default: local, falling back to cold, then ring)")
    drill.add_argument("--as-of", help="2026-05-20 (end of day), 2026-05-20T03:00 or latest "
                       "(default: the end of yesterday)")
    drill.add_argument("--report", action="store_true",
                       help="print past drills from drill.evidence_dir instead")
    drill.add_argument("--last", type=int, default=5, metavar="N",
                       help="with --report: the newest N drills (default 5)")
    drill.add_argument("--from-tier", metavar="TIER",
                       help="with --report: read the drills' evidence snapshots from this tier "
                       "(local, ring, cold or a ring peer) instead of drill.evidence_dir")
    drill.set_defaults(func=cmd_drill)

