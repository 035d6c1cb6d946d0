"""Tier A wall time and memory: `axe backup --local` against the raw shell pipeline
(`restic backup --stdin-from-command -- pg_dump -Fc -Z0 …`, one database after another), on
the same data, side by side in one run.

Each round backs up into fresh repositories (so neither side profits from the other's
deduplication) and the two sides alternate which goes first. Reports medians and the ratio.

    .venv/bin/python bench/bench_tier_a.py [--rows 1500000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axe_pipelines.demo import create_sample_databases  # noqa: E402
from axe_pipelines.postgres import LocalCluster  # noqa: E402
from axe_pipelines.restic import find_restic  # noqa: E402

DATABASES = ["frame", "hive", "blueprint", "index"]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Runs argv in a wrapper that reports its wall time and its largest process's RSS."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([code, wall, rss]))\n")
    out = subprocess.run([sys.executable, "-c", wrapper, *argv], env=env, capture_output=True,
                         text=True, check=True).stdout
    code, wall, rss = json.loads(out)
    if code != 0:
        raise SystemExit(f"benchmark command failed ({code}): {' '.join(argv[:4])}…")
    return wall, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000, help="journal_line rows in frame")
    parser.add_argument("--blob-repeat", type=int, default=20000,
                        help="size factor of index's evidence_blob (64 rows)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    restic = find_restic()
    work = Path(tempfile.mkdtemp(prefix="axe-bench-"))
    work.chmod(0o755)
    password = work / "pw"
    password.write_text("bench-password\n")
    cluster = LocalCluster(work / "pg", password="bench-db").start()
    try:
        create_sample_databases(cluster, DATABASES, rows=args.rows,
                                blob_repeat=args.blob_repeat)
        sizes = {db: int(cluster.psql(f"SELECT pg_database_size('{db}');")[0][0])
                 for db in DATABASES}
        env = dict(os.environ, PGPASSWORD="bench-db", RESTIC_PASSWORD_FILE=str(password))
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
            "raw": raw_pipeline,
            "axe": lambda repo, i: axe(repo, i),
            "axe_skip_restore_check": lambda repo, i: axe(repo, i, "--skip-restore-check"),
        }
        times: dict[str, list[float]] = {k: [] for k in sides}
        rss: dict[str, list[int]] = {k: [] for k in sides}
        for i in range(args.rounds):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for side in order:
                repo = work / f"repo-{side}-{i}"
                wall, peak = sides[side](repo, i) if side != "raw" else raw_pipeline(repo)
                times[side].append(wall)
                rss[side].append(peak)
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        report = {
            "data_bytes": sum(sizes.values()),
            "databases": sizes,
            "rounds": args.rounds,
            "wall_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
            "median_s": {k: round(v, 2) for k, v in med.items()},
            "ratio_over_raw": {k: round(v / med["raw"], 2) for k, v in med.items()},
            "max_rss_kib": {k: max(v) for k, v in rss.items()},
            "note": "axe also counts every table's rows in the dump's snapshot, reads every "
                    "dump back through pg_restore (restorable check), starts Dagster and "
                    "records the run; the raw pipeline does none of that.",
        }
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / f"tier_a-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(
            json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    sys.exit(main())
