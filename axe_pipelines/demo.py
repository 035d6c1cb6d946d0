"""The embedded default: sample databases shaped like the runbook's, a demo customers.yaml, and
one tier-A run through a SQLite Dagster instance — everything under .demo/.

`python -m axe_pipelines.demo` (via scripts/demo) is the README's first command.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

from axe_pipelines.postgres.cluster import LocalCluster

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

HIVE_EMPLOYEES_SQL = ("SELECT 'axec' AS tenant, COUNT(*) FROM axec.employees "
                      "UNION ALL SELECT 'axev', COUNT(*) FROM axev.employees")


def create_sample_databases(cluster: LocalCluster, names: list[str], *, rows: int = 20000,
                            blob_repeat: int = 2000) -> None:
    """Given a running cluster, create (or re-create) the named sample databases with `rows`
    journal lines (frame) and blobs of `blob_repeat` x 16 bytes (index)."""
    for name in names:
        cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE); CREATE DATABASE "{name}";')
        cluster.psql(SAMPLE_SQL[name].format(rows=rows, blob_repeat=blob_repeat), dbname=name)
        cluster.psql("ANALYZE;", dbname=name)


def _secret_file(path: Path, nbytes: int) -> Path:
    """A random password in a 0600 file, made once."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(nbytes) + "\n")
        path.chmod(0o600)
    return path


def write_demo(root: Path) -> tuple[Path, list[LocalCluster]]:
    """Given the demo folder, start two throwaway servers with the sample databases (created
    on first use), write .demo/customers.yaml and return (its path, the running servers)."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    secrets_dir = root / "secrets"
    secrets_dir.mkdir(exist_ok=True, mode=0o700)
    repo_pw = _secret_file(secrets_dir / "tier-a.password", 24)
    db_pw_file = _secret_file(secrets_dir / "postgres.password", 18)
    db_pw = db_pw_file.read_text().strip()

    clusters = []
    layout = {"frame-postgres": ["frame", "hive"], "index-postgres": ["blueprint", "index"]}
    servers, databases = {}, {}
    for i, (server, dbs) in enumerate(layout.items()):
        cluster = LocalCluster(root / f"pg-{i}", password=db_pw)
        fresh = not (cluster.data / "PG_VERSION").exists()
        cluster.start()
        clusters.append(cluster)
        if fresh:
            create_sample_databases(cluster, dbs)
        servers[server] = cluster.server_config(password={"file": str(db_pw_file)})
        for db in dbs:
            databases[db] = {"server": server}
    databases["hive"]["integrity"] = [{"name": "employees_per_tenant", "sql": HIVE_EMPLOYEES_SQL,
                                       "expect": [["axec", 42], ["axev", 17]]}]
    files = root / "local" / "files"
    (files / "uploads").mkdir(parents=True, exist_ok=True)
    (files / "uploads" / "contract-2026-05.txt").write_text("signed contract, page 1\n" * 200)
    (files / "cache").mkdir(exist_ok=True)
    (files / "cache" / "thumb.tmp").write_text("regenerable\n")
    excludes = root / "restic-excludes"
    excludes.write_text("*.tmp\n")
    config = {
        "axe": {
            "timezone": "Asia/Seoul",
            "servers": servers,
            "databases": databases,
            "folders": {"files": {"path": str(files), "excludes_file": str(excludes),
                                  "required": True}},
            "tiers": {"local": {"repository": str(root / "backups" / "local"),
                                "password": {"file": str(repo_pw)}}},
        },
        # The runbook's peer block, with its host pointing nowhere: a demo on any machine
        # must not ssh to the runbook's real peer. Put its ssh_fqdn/ssh_ip here to use tier B.
        "realchoice": {"ring_backup": {
            "ssh_user": "realchoice", "ssh_fqdn": "realchoice.invalid",
            "receive_dir_at_peer": "/Users/realchoice/peer-backups/axe/",
            "receive_dir_at_self": str(root / "backups" / "peer" / "realchoice"),
            "restic_version": "0.18.1", "disk_available_gib": 43, "bidirectional_ssh": True}},
    }
    path = root / "customers.yaml"
    path.write_text("# Written by the demo (scripts/demo); edit freely. The ring peer realchoice "
                    "points nowhere (realchoice.invalid):\n# give it the runbook's ssh_fqdn and "
                    "ssh_ip, and add tiers.ring, to push to a real peer.\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path, clusters


def main(argv: list[str] | None = None) -> int:
    """Given the command line, run the demo (or stop servers left running); return the exit
    code of the first `axe` step that failed, else 0."""
    parser = argparse.ArgumentParser(description="Run tier A once on the embedded default.")
    parser.add_argument("--root", type=Path, default=Path(".demo"))
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the demo PostgreSQL servers running afterwards")
    parser.add_argument("--stop", action="store_true",
                        help="stop demo servers left running by --keep-running, and exit")
    args = parser.parse_args(argv)
    if args.stop:
        stopped = [LocalCluster(d.parent) for d in sorted(args.root.resolve().glob("pg-*/data"))
                   if (d / "postmaster.pid").exists()]
        for cluster in stopped:
            cluster.stop()
        print(f"stopped {len(stopped)} demo server(s) under {args.root}")
        return 0
    config_path, clusters = write_demo(args.root)
    home = (args.root / "dagster_home").resolve()
    env = dict(os.environ, AXE_CONFIG=str(config_path), DAGSTER_HOME=str(home))
    axe = [sys.executable, "-m", "axe_pipelines.cli"]
    try:
        for step in (["config", "validate"], ["init"], ["backup", "--local"]):
            print(f"$ axe {' '.join(step)}", flush=True)
            code = subprocess.run([*axe, *step], env=env).returncode
            if code != 0:
                return code
    finally:
        if not args.keep_running:
            for cluster in clusters:
                cluster.stop()
    print(f"""
Demo done. Config: {config_path}; repository: {args.root.resolve() / 'backups/local'}.
Open the UI (assets axe/db/*/dump -> axe/tier_a/local, checks, schedule):
  scripts/demo --keep-running     # keep the sample servers up for the UI
  AXE_CONFIG={config_path} DAGSTER_HOME={home} \\
    .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
