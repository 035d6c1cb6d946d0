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
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axe_pipelines.demo import create_sample_databases  # noqa: E402
from axe_pipelines.postgres import LocalCluster  # noqa: E402
from axe_pipelines.restic import find_restic  # noqa: E402
from bench.bench_tier_a import timed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000, help="journal_line rows in frame")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="pg_restore -j on both sides")
    args = parser.parse_args()

    restic = find_restic()
    work = Path(tempfile.mkdtemp(prefix="axe-bench-restore-"))
    work.chmod(0o755)
    password = work / "pw"
    password.write_text("bench-password\n")
    cluster = LocalCluster(work / "pg", password="bench-db").start()
    try:
        create_sample_databases(cluster, ["frame"], rows=args.rows)
        size = int(cluster.psql("SELECT pg_database_size('frame');")[0][0])
        env = dict(os.environ, PGPASSWORD="bench-db", RESTIC_PASSWORD_FILE=str(password))
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
        times: dict[str, list[float]] = {k: [] for k in sides}
        rss: dict[str, list[int]] = {k: [] for k in sides}
        for i in range(args.rounds):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for side in order:
                drop_copies()
                wall, peak = sides[side](i)
                times[side].append(wall)
                rss[side].append(peak)
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  flush=True)
        drop_copies()
        med = {k: statistics.median(v) for k, v in times.items()}
        report = {
            "database_bytes": size,
            "rows": args.rows,
            "rounds": args.rounds,
            "jobs": args.jobs,
            "wall_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
            "median_s": {k: round(v, 2) for k, v in med.items()},
            "ratio_over_raw": {k: round(v / med["raw"], 2) for k, v in med.items()},
            "max_rss_kib": {k: max(v) for k, v in rss.items()},
            "note": "axe also reads the tier-A row counts, checks every table's count in the "
                    "new database before swapping it in, keeps the old database and runs the "
                    "configured checks; the raw side restores beside and checks nothing.",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / f"restore-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(
            json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
