"""Database restore wall time and memory: `axe restore --target frame` against the by-hand
restore an operator would type (`restic restore` of the dump file, `createdb`,
`pg_restore -j 2 -d`), from the same tier-A snapshot, side by side in one run.

The two sides alternate which goes first. The raw side restores into a fresh database each
round and checks nothing; axe restores into a new database, checks every table's row count
against the dump, swaps it in (keeping the old one) and prints the undo command. Kept copies
are dropped between rounds so both sides start from the same server.

    .venv/bin/python bench/bench_restore.py [--rows 1500000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axe_pipelines.demo import create_sample_databases  # noqa: E402
from axe_pipelines.restic import find_restic  # noqa: E402
from bench.common import DB_PASSWORD, scratch_site, side_by_side, timed, write_report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000, help="journal_line rows in frame")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="pg_restore -j on both sides")
    args = parser.parse_args()

    restic = find_restic()
    work, password, cluster = scratch_site("axe-bench-restore-")
    try:
        create_sample_databases(cluster, ["frame"], rows=args.rows)
        size = int(cluster.psql("SELECT pg_database_size('frame');")[0][0])
        env = dict(os.environ, PGPASSWORD=DB_PASSWORD, RESTIC_PASSWORD_FILE=str(password))
        repo = work / "repo"
        config = {"axe": {
            "servers": {"pg": cluster.server_config(password={"env": "PGPASSWORD"},
                                                    roles=False)},
            "databases": {"frame": {"server": "pg"}},
            "tiers": {"local": {"repository": str(repo), "password": {"file": str(password)}}}}}
        path = work / "customers.yaml"
        path.write_text(yaml.safe_dump(config))
        axe_env = dict(env, AXE_CONFIG=str(path), DAGSTER_HOME=str(work / "dagster"))
        cli = [sys.executable, "-m", "axe_pipelines.cli"]
        subprocess.run([*cli, "init"], env=axe_env, check=True, capture_output=True)
        subprocess.run([*cli, "backup", "--local", "--plain", "--skip-restore-check"],
                       env=axe_env, check=True, capture_output=True)
        snaps = json.loads(subprocess.run(
            [restic, "-r", str(repo), "snapshots", "--json", "--tag", "database=frame"],
            env=env, check=True, capture_output=True, text=True).stdout)
        snap = snaps[-1]["id"]
        bin_dir = cluster.bin_dir
        conn = f"-h 127.0.0.1 -p {cluster.port} -U postgres"

        def raw(i: int) -> tuple[float, int]:
            target = work / f"raw-{i}"
            db = f"frame_raw_{i}"
            script = (f"{restic} -r {repo} restore -q {snap} --target {target} && "
                      f"{bin_dir}/createdb {conn} {db} && "
                      f"{bin_dir}/pg_restore {conn} -j {args.jobs} --no-owner -d {db} "
                      f"{target}/frame.pgdump")
            try:
                return timed(["sh", "-c", script], env)
            finally:
                shutil.rmtree(target, ignore_errors=True)

        def axe(i: int) -> tuple[float, int]:
            return timed([*cli, "restore", "--customer", "axe", "--tier", "local", "--target",
                          "frame", "--force", "--jobs", str(args.jobs)], axe_env)

        def drop_copies() -> None:
            for (name,) in cluster.psql("SELECT datname FROM pg_database WHERE datname LIKE "
                                        "'frame\\_%';"):
                cluster.psql(f'DROP DATABASE "{name}" WITH (FORCE);')

        sides = {"raw": raw, "axe": axe}
        report = {"database_bytes": size, "rows": args.rows, "jobs": args.jobs,
                  **side_by_side(sides, args.rounds, before_each=drop_copies),
                  "note": "axe also reads the tier-A row counts, checks every table's count "
                          "in the new database before swapping it in, keeps the old database "
                          "and runs the configured checks; the raw side restores beside and "
                          "checks nothing."}
        drop_copies()
        write_report("restore", report)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
