"""Tier A wall time and memory: `axe backup --local` against the raw shell pipeline
(`restic backup --stdin-from-command -- pg_dump -Fc -Z0 …`, one database after another), on
the same data, side by side in one run.

Each round backs up into fresh repositories (so neither side profits from the other's
deduplication) and the two sides alternate which goes first. Reports medians and the ratio.

    .venv/bin/python bench/bench_tier_a.py [--rows 1500000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axe_pipelines.demo import create_sample_databases  # noqa: E402
from axe_pipelines.restic import find_restic  # noqa: E402
from bench.common import DB_PASSWORD, scratch_site, side_by_side, timed, write_report  # noqa: E402

DATABASES = ["frame", "hive", "blueprint", "index"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000, help="journal_line rows in frame")
    parser.add_argument("--blob-repeat", type=int, default=20000,
                        help="size factor of index's evidence_blob (64 rows)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    restic = find_restic()
    work, password, cluster = scratch_site("axe-bench-")
    try:
        create_sample_databases(cluster, DATABASES, rows=args.rows,
                                blob_repeat=args.blob_repeat)
        sizes = {db: int(cluster.psql(f"SELECT pg_database_size('{db}');")[0][0])
                 for db in DATABASES}
        env = dict(os.environ, PGPASSWORD=DB_PASSWORD, RESTIC_PASSWORD_FILE=str(password))
        pg_dump = str(cluster.bin_dir / "pg_dump")

        def raw_pipeline(repo: Path) -> tuple[float, int]:
            subprocess.run([restic, "-r", str(repo), "init", "-q"], env=env, check=True)
            script = " && ".join(
                f"{restic} -r {repo} backup -q --stdin-filename {db}.pgdump "
                f"--stdin-from-command -- {pg_dump} -h 127.0.0.1 -p {cluster.port} "
                f"-U postgres -d {db} -Fc -Z0" for db in DATABASES)
            return timed(["sh", "-c", script], env)

        def axe(repo: Path, i: int, *extra: str) -> tuple[float, int]:
            config = {"axe": {
                "servers": {"pg": cluster.server_config(password={"env": "PGPASSWORD"},
                                                        roles=False)},
                "databases": {db: {"server": "pg"} for db in DATABASES},
                "tiers": {"local": {"repository": str(repo),
                                    "password": {"file": str(password)},
                                    "parallel_servers": 1}}}}
            path = work / f"customers-{i}.yaml"
            path.write_text(yaml.safe_dump(config))
            axe_env = dict(env, AXE_CONFIG=str(path), DAGSTER_HOME=str(work / "dagster"))
            cli = [sys.executable, "-m", "axe_pipelines.cli"]
            subprocess.run([*cli, "init"], env=axe_env, check=True, capture_output=True)
            return timed([*cli, "backup", "--local", "--plain", *extra], axe_env)

        sides = {
            "raw": lambda i: raw_pipeline(work / f"repo-raw-{i}"),
            "axe": lambda i: axe(work / f"repo-axe-{i}", i),
            "axe_skip_restore_check": lambda i: axe(work / f"repo-skip-{i}", i,
                                                    "--skip-restore-check"),
        }
        write_report("tier_a", {
            "data_bytes": sum(sizes.values()), "databases": sizes,
            **side_by_side(sides, args.rounds),
            "note": "axe also counts every table's rows in the dump's snapshot, reads every "
                    "dump back through pg_restore (restorable check), starts Dagster and "
                    "records the run; the raw pipeline does none of that."})
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
