"""`axe`: the operator's command line.

Exit codes: 0 success; 1 a backup item or check failed (each failure on its own line);
2 bad configuration or usage; 3 a tool or repository problem before any backup started.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from axe_pipelines.config import Config, ConfigError, load_config

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_ENV = 0, 1, 2, 3


def _err(text: str) -> None:
    print(f"axe: {text}", file=sys.stderr)


def _customers(config: Config, wanted: str | None) -> list[str]:
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
    if not args.local:
        _err("say which tier: --local (tiers B and C come with their own issues)")
        return EXIT_CONFIG
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
            local_restic(name, customer).snapshots(tags=["customer=" + name, "kind=none"])
        except ResticError as exc:
            _err(f"tier A of {name}: {exc}")
            worst = max(worst, EXIT_ENV)
            continue
        items = plan_tier_a(customer)
        live = sys.stderr.isatty() and not args.plain
        reporter = TerminalReporter(items) if live else PlainReporter()
        print(f"tier A of {name}: {len(items)} item(s) into {customer.tiers.local.repository}",
              file=sys.stderr)
        started = time.monotonic()
        result = dg.materialize(
            [build_tier_a(name, customer)], instance=instance,
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
    return EXIT_FAILED if problems else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="axe", description="Backups and restores, by tier.")
    parser.add_argument("--config", type=Path, help="customers.yaml (default: $AXE_CONFIG, "
                        "./customers.yaml, ~/.axe/customers.yaml)")
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
    backup.add_argument("--customer", help="only this customer (default: all)")
    backup.add_argument("--plain", action="store_true", help="plain log lines, no live table")
    backup.set_defaults(func=cmd_backup)

    doctor = sub.add_parser("doctor", help="check tools, config, repositories, databases")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Preview/beta notices about Dagster APIs are for developers, not the operator's terminal.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*(preview|beta|experimental).*")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
