"""The embedded default, every tier: sample databases shaped like the runbook's, a ring peer
on a loopback sshd, a cold SSD as a folder, a Slack stand-in, and one run of each tier and a
restore drill through `axe` and a SQLite Dagster instance — everything under .demo/
(demo_site.py builds it, demo_services.py runs the stand-ins). `--ui` then serves the UI with
dagster-webserver and dagster-daemon until Ctrl-C.

`python -m axe_pipelines.demo` (via scripts/demo) is the README's first command.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from axe_pipelines.demo_services import Catcher, PeerSsh
from axe_pipelines.demo_site import DemoSite, build_site, cluster_root
from axe_pipelines.postgres.cluster import LocalCluster

WORKSPACE = Path(__file__).resolve().parent.parent / "workspace.yaml"
DEFAULT_ROOT = Path(".demo")
# What the demo runs, in order, as an operator would.
STEPS = (["config", "validate"], ["init"], ["backup", "--local"], ["backup", "--ring"],
         ["backup", "--cold"], ["drill", "--as-of", "latest"])

# Two servers like the runbook's containers: frame + hive on one, blueprint + index on another.
SAMPLE_SQL = {
    "frame": """
        CREATE TABLE entity (id serial PRIMARY KEY, code text UNIQUE NOT NULL);
        CREATE TABLE journal_line (
            id bigserial PRIMARY KEY,
            entity_id int NOT NULL REFERENCES entity(id),
            posted_on date NOT NULL,
            memo text,
            amount numeric(14,2) NOT NULL);
        CREATE INDEX journal_line_entity ON journal_line(entity_id, posted_on);
        INSERT INTO entity(code) VALUES ('axec'), ('axev');
        INSERT INTO journal_line(entity_id, posted_on, memo, amount)
            SELECT 1 + g % 2, date '2026-01-01' + (g % 140), 'line ' || md5(g::text),
                   round((g * 37 % 100000) / 100.0, 2)
            FROM generate_series(1, {rows}) g;
    """,
    "hive": """
        CREATE SCHEMA axec; CREATE SCHEMA axev;
        CREATE TABLE axec.employees (id serial PRIMARY KEY, name text NOT NULL, team text);
        CREATE TABLE axev.employees (id serial PRIMARY KEY, name text NOT NULL, team text);
        CREATE TABLE payroll_run (id serial PRIMARY KEY, tenant text, period text, total numeric);
        INSERT INTO axec.employees(name, team) SELECT 'c' || g, 'team' || g % 5
            FROM generate_series(1, 42) g;
        INSERT INTO axev.employees(name, team) SELECT 'v' || g, 'team' || g % 3
            FROM generate_series(1, 17) g;
        INSERT INTO payroll_run(tenant, period, total)
            SELECT CASE WHEN g % 2 = 0 THEN 'axec' ELSE 'axev' END,
                   '2026-' || lpad((g % 12 + 1)::text, 2, '0'), g * 1000
            FROM generate_series(1, 24) g;
    """,
    "blueprint": """
        CREATE TABLE "Workspace" (id text PRIMARY KEY, name text NOT NULL,
                                  "createdAt" timestamptz DEFAULT now());
        INSERT INTO "Workspace"(id, name) SELECT 'ws' || g, 'Workspace ' || g
            FROM generate_series(1, 12) g;
    """,
    "index": """
        CREATE TABLE evidence_blob (id serial PRIMARY KEY, deal text NOT NULL, body bytea);
        INSERT INTO evidence_blob(deal, body)
            SELECT 'deal-' || g, decode(repeat(md5(g::text), {blob_repeat}), 'hex')
            FROM generate_series(1, 64) g;
    """,
}


def create_sample_databases(cluster: LocalCluster, names: list[str], *, rows: int = 20000,
                            blob_repeat: int = 2000) -> None:
    """Given a running cluster, create (or re-create) the named sample databases with `rows`
    journal lines (frame) and blobs of `blob_repeat` x 16 bytes (index)."""
    for name in names:
        cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE); CREATE DATABASE "{name}";')
        cluster.psql(SAMPLE_SQL[name].format(rows=rows, blob_repeat=blob_repeat), dbname=name)
        cluster.psql("ANALYZE;", dbname=name)


def _axe_steps(env: dict[str, str]) -> int:
    """Run every tier once through `axe`, as an operator would; return the exit code of the
    first step that failed, else 0."""
    axe = [sys.executable, "-m", "axe_pipelines.cli"]
    for step in STEPS:
        print(f"$ axe {' '.join(step)}", flush=True)
        code = subprocess.run([*axe, *step], env=env).returncode
        if code != 0:
            return code
    return 0


def _environment(site: DemoSite) -> dict[str, str]:
    return dict(os.environ, AXE_CONFIG=str(site.config),
                DAGSTER_HOME=str(site.root / "dagster_home"))


def ui_commands(site: DemoSite, port: int) -> list[list[str]]:
    """Given the demo site and the UI's port, return the two processes that serve the UI:
    dagster-webserver and dagster-daemon on workspace.yaml (both exit 0 on SIGTERM)."""
    bin_dir = Path(sys.executable).parent
    return [[str(bin_dir / "dagster-webserver"), "-w", str(WORKSPACE), "-h", "127.0.0.1",
             "-p", str(port)],
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(WORKSPACE)]]


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def serve_ui(site: DemoSite, port: int) -> int:
    """Given a running demo site, run the webserver and the daemon until Ctrl-C or SIGTERM,
    then stop both (SIGTERM) and return 0, or the exit code of one that ended by itself."""
    env = _environment(site)
    # Sessions of their own: the demo stops them (and the code servers they start) itself.
    procs = [subprocess.Popen(argv, env=env, cwd=WORKSPACE.parent, start_new_session=True)
             for argv in ui_commands(site, port)]
    print(f"\nThe UI: http://127.0.0.1:{port} (dagster-webserver + dagster-daemon on "
          f"{env['DAGSTER_HOME']}); Ctrl-C stops both and the demo's servers.", flush=True)
    code = 0
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        code = next(p.returncode for p in procs if p.poll() is not None) or 1
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind
            except (ProcessLookupError, PermissionError):
                pass
    return code


def _shown(path: Path) -> str:
    """A path as the operator reads it: relative to here when it is below, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def closing_message(site: DemoSite, root_arg: str = "") -> str:
    """Given the demo site (and the --root it was given, if any), return what the demo prints
    at the end: what ran, where things are, and the exact commands that open (and stop) the
    UI."""
    env = _environment(site)
    web, daemon = ui_commands(site, 3000)
    again = f"scripts/demo{root_arg}"
    return f"""
Demo done: tier A (4 databases, their servers' roles, a folder), tier B to the ring peer
realchoice (a loopback sshd: {_shown(site.peer.root)}), tier C onto the cold SSD
{_shown(site.volume)} (a folder) and a restore drill, each recorded as a Dagster run of its
job. Config: {_shown(site.config)}. Slack (the drill's report, alerts):
{_shown(site.catcher.posts)}.

Open the UI — the lineage A -> B/C, the peer's pushes to us, every schedule and sensor, the
drill — with dagster-webserver and dagster-daemon; Ctrl-C stops both and the demo's servers:
  {again} --ui                      # http://127.0.0.1:3000

Or by hand, with the demo's servers left running ({again} --keep-running):
  export AXE_CONFIG={env['AXE_CONFIG']} DAGSTER_HOME={env['DAGSTER_HOME']}
  {' '.join(web)} &
  {' '.join(daemon)} &
  kill %1 %2; {again} --stop        # afterwards (both exit 0 on SIGTERM)
"""


def main(argv: list[str] | None = None) -> int:
    """Given the command line, run the demo (or serve its UI, or stop servers left
    running); return the exit code of the first `axe` step that failed, else 0."""
    parser = argparse.ArgumentParser(description="Run every tier once on the embedded "
                                                 "default, then open the UI.")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the demo's servers (PostgreSQL, peer, Slack) running")
    parser.add_argument("--stop", action="store_true",
                        help="stop demo servers left running by --keep-running, and exit")
    parser.add_argument("--ui", action="store_true", help="start the demo's servers and the "
                        "UI (webserver + daemon) until Ctrl-C; runs the demo first if needed")
    parser.add_argument("--port", type=int, default=3000, help="the UI's port (with --ui)")
    args = parser.parse_args(argv)
    if args.stop:
        return _stop(args.root)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop, as Ctrl-C
    first_time = not (args.root / "customers.yaml").exists()
    site = build_site(args.root, create_sample_databases)
    try:
        if args.ui and not first_time:
            return serve_ui(site, args.port)
        code = _axe_steps(_environment(site))
        if code != 0:
            return code
        print(closing_message(site, "" if args.root == DEFAULT_ROOT else f" --root {args.root}"))
        return serve_ui(site, args.port) if args.ui else 0
    except KeyboardInterrupt:
        return 130
    finally:
        if not args.keep_running:
            site.stop()


def _stop(root: Path) -> int:
    """Stop what --keep-running left: the PostgreSQL servers, the peer's sshd, the catcher."""
    clusters = [LocalCluster(d.parent) for d in
                sorted(cluster_root(root.resolve()).glob("pg-*/data"))
                if (d / "postmaster.pid").exists()]
    for cluster in clusters:
        cluster.stop()
    others = [PeerSsh(root.resolve() / "peer").stop(), Catcher(root.resolve() / "slack").stop()]
    print(f"stopped {len(clusters)} demo PostgreSQL server(s) and {sum(others)} other "
          f"service(s) under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
