"""`axe`: the operator's command line.

Exit codes: 0 success; 1 a backup item or check failed (each failure on its own line);
2 bad configuration or usage; 3 a tool or repository problem before any backup started.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings
from datetime import UTC
from pathlib import Path

import pandas as pd

from axe_pipelines.config import ConfigError, Site, load_config
from axe_pipelines.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_UNUSABLE,
    AxeError,
)
from axe_pipelines.runs import print_checks, run_failure

EXIT_ENV = EXIT_UNUSABLE


def _err(text: str) -> None:
    print(f"axe: {text}", file=sys.stderr)


def _customers(config: Site, wanted: str | None) -> list[str]:
    if wanted:
        customer = config.customer(wanted)
        if not customer.backs_up:
            raise ConfigError(config.path or "customers.yaml",
                              [f"{wanted}: has no tiers.local; nothing to back up"])
        return [wanted]
    names = config.backed_up_customers()
    if not names:
        raise ConfigError(config.path or "customers.yaml",
                          ["no customer has tiers.local; nothing to back up"])
    return names


def cmd_config_validate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    backed = config.backed_up_customers()
    peers = sorted(config.peers())
    print(f"{config.path}: valid ({len(backed)} customer(s) backed up: {', '.join(backed) or '-'};"
          f" ring peers: {', '.join(peers) or '-'})")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from axe_pipelines.backup import local_restic

    config = load_config(args.config)
    for name in _customers(config, args.customer):
        restic = local_restic(name, config.customers[name])
        created = restic.init()
        print(f"{restic.repo.label}: {'created' if created else 'exists already'}")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    if not (args.local or args.ring or args.cold):
        _err("say which tier: --local, --ring and/or --cold (run in that order)")
        return EXIT_CONFIG
    worst = _backup_local(args) if args.local else EXIT_OK
    if args.ring:
        worst = max(worst, _backup_ring(args))
    if args.cold:
        worst = max(worst, _backup_cold(args))
    return worst


def _backup_ring(args: argparse.Namespace) -> int:
    """Tier B now: one Dagster run per (customer, peer), without the schedule's retries."""
    import dagster as dg

    from axe_pipelines.assets.tier_b import build_tier_b_asset
    from axe_pipelines.instance import ensure_dagster_home
    from axe_pipelines.progress import human_bytes
    from axe_pipelines.ring import RingError, ring_peers

    config = load_config(args.config)
    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    worst = EXIT_OK
    for name in _customers(config, args.customer):
        try:
            peers = [args.peer] if args.peer else ring_peers(config, name)
            if not peers:
                raise RingError(f"tier B of {name}: no customer has a ring_backup block",
                                retryable=False)
            assets = [build_tier_b_asset(config, name, peer, retry=False) for peer in peers]
        except RingError as exc:
            _err(str(exc))
            worst = max(worst, EXIT_CONFIG)
            continue
        for peer, asset in zip(peers, assets, strict=True):
            print(f"tier B of {name}: latest set to {peer}", file=sys.stderr)
            result = dg.materialize(
                [asset], instance=instance, tags={"axe/tier": "b"}, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
            if not result.success:
                _err(run_failure(result))
                worst = max(worst, EXIT_FAILED)
                continue
            meta = {k: v.value for k, v in
                    result.get_asset_materialization_events()[0].materialization.metadata
                    .items()}
            print(f"tier B {name} -> {peer} ({meta['host']}): {meta['snapshots_copied']} "
                  f"copied, {meta['snapshots_already_present']} already there, "
                  f"{human_bytes(int(meta['bytes_copied']))}, {meta['duration_s']} s; "
                  f"peer free {meta['peer_free_gib']} GiB")
            if not print_checks(result):
                worst = max(worst, EXIT_FAILED)
    return worst


def _backup_cold(args: argparse.Namespace) -> int:
    """Tier C now: every mounted cold volume, one at a time."""
    from axe_pipelines.assets.tier_c import run_cold_cli

    config = load_config(args.config)
    return run_cold_cli(config, _customers(config, args.customer), say=print, err=_err)


def _backup_local(args: argparse.Namespace) -> int:
    import dagster as dg

    from axe_pipelines.assets.tier_a import PROGRESS_RESOURCE, build_tier_a, tier_a_tags
    from axe_pipelines.backup import local_restic, plan_tier_a, summarize
    from axe_pipelines.instance import ensure_dagster_home
    from axe_pipelines.progress import PlainReporter, TerminalReporter, human_bytes
    from axe_pipelines.restic import ResticError

    config = load_config(args.config)
    names = _customers(config, args.customer)
    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    worst = EXIT_OK
    for name in names:
        customer = config.customers[name]
        try:
            # Fail fast, with one line, when the repository cannot be opened at all.
            local_restic(name, customer).probe()
        except ResticError as exc:
            _err(f"tier A of {name}: {exc}")
            worst = max(worst, EXIT_ENV)
            continue
        items = plan_tier_a(customer)
        live = sys.stderr.isatty() and not args.plain
        reporter = TerminalReporter(items) if live else PlainReporter()
        print(f"tier A of {name}: {len(items)} item(s) into {customer.tiers.local.repository}",
              file=sys.stderr)
        assets_def = build_tier_a(name, customer)
        selection = dg.AssetSelection.all()
        if args.skip_restore_check:
            # Coverage stays; the read-back of every dump can run later from the UI.
            selection = selection.without_checks() | dg.AssetSelection.checks(
                *[k for k in assets_def.check_keys if k.name != "restorable"])
        started = time.monotonic()
        result = dg.materialize(
            [assets_def], instance=instance, selection=selection,
            resources={PROGRESS_RESOURCE: dg.ResourceDefinition.hardcoded_resource(reporter)},
            tags=tier_a_tags(customer), raise_on_error=False,
            # The reporter draws progress; Dagster's own console log only speaks up on errors.
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
        wall = time.monotonic() - started
        rows = {r.item: r for r in reporter.results}
        ordered = [rows[i] for i in items if i in rows]
        table = pd.DataFrame(summarize(ordered, wall))
        for col in ("read", "added"):
            table[col] = table[col].map(human_bytes)
        print(table.to_string(index=False))
        checks = [e.asset_check_evaluation_data for e in result.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        for check in checks:
            mark = "ok" if check.passed else "FAILED"
            desc = check.description or ""
            print(f"check {check.asset_key.to_user_string()}:{check.check_name}: {mark}"
                  + (f" ({desc})" if not check.passed and desc else ""))
        for r in ordered:
            if not r.ok and not r.skipped:
                _err(f"{name} {r.item.label}: {r.error}")
        if not result.success or len(ordered) < len(items):
            if len(ordered) < len(items) and all(r.ok for r in ordered):
                _err(f"tier A of {name}: run {result.run_id[:8]} failed before finishing; "
                     "see `dagster` run logs")
            worst = max(worst, EXIT_FAILED)
        elif any(not c.passed for c in checks):
            worst = max(worst, EXIT_FAILED)
    return worst


def cmd_status(args: argparse.Namespace) -> int:
    """Newest tier-A set per customer: time, age, members, gaps. Exit 1 when stale/incomplete."""
    from datetime import datetime

    from axe_pipelines.backup import coverage, local_restic
    from axe_pipelines.config import freshness_window
    from axe_pipelines.restic import ResticError
    from axe_pipelines.sets import list_sets

    config = load_config(args.config)
    worst = EXIT_OK
    for name in _customers(config, args.customer):
        customer = config.customers[name]
        try:
            sets = list_sets(local_restic(name, customer), name)
        except ResticError as exc:
            print(f"{name} tier A: UNAVAILABLE: {exc}")
            worst = max(worst, EXIT_ENV)
            continue
        if not sets:
            print(f"{name} tier A: NO BACKUP yet in {customer.tiers.local.repository}")
            worst = max(worst, EXIT_FAILED)
            continue
        latest = sets[-1]
        age = datetime.now(UTC) - latest.time
        gaps = coverage(customer, latest.snapshots)
        stale = age > freshness_window(customer)
        state = "STALE" if stale else ("INCOMPLETE" if gaps else "ok")
        hours = age.total_seconds() / 3600
        print(f"{name} tier A: {state}: newest set {latest.time:%Y-%m-%d %H:%M %Z} "
              f"({hours:.1f} h ago), {len(latest.snapshots)} snapshot(s), "
              f"{len(sets)} set(s) kept")
        for gap in gaps:
            print(f"  missing: {gap.reason}")
        if stale or gaps:
            worst = max(worst, EXIT_FAILED)
    return worst


def cmd_doctor(args: argparse.Namespace) -> int:
    from axe_pipelines.backup import local_restic
    from axe_pipelines.postgres import Connection, PostgresError
    from axe_pipelines.restic import ResticError, find_restic, restic_version

    problems = 0
    try:
        binary = find_restic()
        print(f"ok   restic {'.'.join(map(str, restic_version(binary) or ()))} ({binary})")
    except ResticError as exc:
        print(f"FAIL {exc}")
        return EXIT_ENV
    config = load_config(args.config)
    print(f"ok   config {config.path}")
    for name in config.backed_up_customers():
        customer = config.customers[name]
        restic = local_restic(name, customer)
        try:
            n = len(restic.snapshots(tags=[f"customer={name}"]))
            print(f"ok   {restic.repo.label}: {n} snapshot(s)")
        except ResticError as exc:
            problems += 1
            print(f"FAIL {exc}")
        for db_name, db in customer.databases.items():
            conn = Connection(db.server, customer.servers[db.server],
                              customer.database_name(db_name))
            try:
                version = conn.psql("SHOW server_version;")[0][0]
                print(f"ok   database {db_name} on {conn.where}: PostgreSQL {version}")
            except PostgresError as exc:
                problems += 1
                print(f"FAIL database {db_name}: {exc}")
        for folder_name, folder in customer.folders.items():
            path = folder.path.expanduser()
            if path.is_dir():
                print(f"ok   folder {folder_name}: {path}")
            else:
                problems += folder.required
                print(f"{'FAIL' if folder.required else 'warn'} folder {folder_name}: "
                      f"{path} does not exist")
    from axe_pipelines.cold import doctor_cold
    from axe_pipelines.ring import doctor_ring

    for status, text in [*doctor_ring(config), *doctor_cold(config)]:
        problems += status == "FAIL"
        print(f"{status:<4} {text}")
    return EXIT_FAILED if problems else EXIT_OK


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def _restore_errors() -> tuple[type[BaseException], ...]:
    from axe_pipelines.postgres import PostgresError
    from axe_pipelines.restic import ResticError
    from axe_pipelines.restore import RestoreError

    return (RestoreError, ResticError, PostgresError)


def cmd_restore(args: argparse.Namespace) -> int:
    from axe_pipelines.integrity import format_table
    from axe_pipelines.restore import RestoreOptions, run_restore, undo_restore

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
                          lock_timeout=args.lock_timeout)
    try:
        report = run_restore(config, opts, say=_say)
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
    from axe_pipelines.integrity import format_table
    from axe_pipelines.restore import run_integrity_check

    config = load_config(args.config)
    try:
        report = run_integrity_check(config, args.customer, args.target, as_of=args.as_of,
                                     tier=args.tier, source=args.source, live=args.live,
                                     only=args.check or None, say=_say)
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
    from axe_pipelines.config import tier_timezone
    from axe_pipelines.restore import (
        RestoreError,
        find_last_valid,
        load_sets,
        open_source,
        resolve_target,
        tier_label,
    )
    from axe_pipelines.sets import parse_as_of

    config = load_config(args.config)
    customer = config.customer(args.customer)
    try:
        target = resolve_target(args.customer, customer, args.target)
        if target.kind != "database":
            raise RestoreError(f"{args.target} is a folder; last-valid needs a database")
        tier, peer, restic = open_source(config, args.customer, args.tier, args.source)
        where = f"{tier_label(tier, peer)} of {args.customer}"
        sets = load_sets(restic, args.customer, where)
        if args.before:
            limit = parse_as_of(args.before, tier_timezone(customer))
            sets = [s for s in sets if s.time <= limit]
        found, probes = find_last_valid(args.customer, customer, target.name, args.check, sets,
                                        restic, say=_say, where=where)
    except _restore_errors() as exc:
        _err(f"find-last-valid: {str(exc).strip().splitlines()[0]}")
        return EXIT_FAILED
    snap = found.member("pgdump", target.name)
    print(f"last valid: {found.time.isoformat()} (snapshot {snap.short_id if snap else '?'}, "
          f"{len(probes)} of {len(sets)} set(s) tested)")
    print(f"restore it with: axe restore --customer {args.customer} --tier {tier} "
          f"--target {args.target} --as-of {found.time.isoformat()}")
    return EXIT_OK


def _tier_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--customer", required=True)
    p.add_argument("--tier", help="local, ring or cold (default: local)")
    p.add_argument("--from", dest="source", help="the same words as --tier, or a ring peer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="axe", description="Backups and restores, by tier.")
    parser.add_argument("--config", type=Path, help="customers.yaml (default: $AXE_CONFIG, "
                        "./customers.yaml, ~/.axe/customers.yaml)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a failure (also AXE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    cfg = sub.add_parser("config", help="check customers.yaml")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    cfg_sub.add_parser("validate", help="say 'valid' or name every bad field"
                       ).set_defaults(func=cmd_config_validate)

    init = sub.add_parser("init", help="create the tier A repository (idempotent)")
    init.add_argument("--customer")
    init.set_defaults(func=cmd_init)

    backup = sub.add_parser("backup", help="run a tier now")
    backup.add_argument("--local", action="store_true", help="tier A: the local repository")
    backup.add_argument("--ring", action="store_true",
                        help="tier B: copy the latest set to the ring peer(s) over sftp")
    backup.add_argument("--peer", help="with --ring: only this peer (default: all)")
    backup.add_argument("--cold", action="store_true",
                        help="tier C: sync the latest sets to every mounted cold volume")
    backup.add_argument("--customer", help="only this customer (default: all)")
    backup.add_argument("--plain", action="store_true", help="plain log lines, no live table")
    backup.add_argument("--skip-restore-check", action="store_true",
                        help="do not read every dump back through pg_restore now (the "
                        "restorable check can be run later from the UI)")
    backup.set_defaults(func=cmd_backup)

    status = sub.add_parser("status", help="newest backup set per customer, its age and gaps")
    status.add_argument("--customer")
    status.set_defaults(func=cmd_status)

    doctor = sub.add_parser("doctor", help="check tools, config, repositories, databases")
    doctor.set_defaults(func=cmd_doctor)

    restore = sub.add_parser("restore", help="restore a database, table or folder as of a time")
    _tier_args(restore)
    restore.add_argument("--as-of", default="latest",
                         help="2026-05-20 (end of day), 2026-05-20T03:00, latest, or last-valid "
                              "(with --check)")
    restore.add_argument("--target", help="database (frame, frame-postgres, …) or folder; "
                         "default: everything in the set")
    restore.add_argument("--table", help="only this table (schema.table or name) of --target; "
                         "without --target, of the one database whose dump holds it")
    restore.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
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
    restore.set_defaults(func=cmd_restore)

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
    except AxeError as exc:
        if debug:
            traceback.print_exc()
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        _err("interrupted")
        return EXIT_SIGINT
    except OSError as exc:
        # A read-only DAGSTER_HOME, a full disk, a missing binary: the operator's to fix.
        if debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if exc.filename else ""
        _err(f"{exc.strerror or exc}{where}; fix that and run the command again "
             "(--debug shows where it happened)")
        return EXIT_ENV


if __name__ == "__main__":
    sys.exit(main())
