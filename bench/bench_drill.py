"""Restore drill costs, measured once: RTO per database (fetch + restore + checks, wall
seconds) on the demo's four databases and on a ~200 MB database, and what the checksum_tables
digest adds to a tier-A dump (the same data dumped with and without it, alternating).

The big database is one `evidence_blob` table (the runbook's deleted deals' originals) of
random-looking bytea, listed in checksum_tables, so the digest is taken over all of it.

    .venv/bin/python bench/bench_drill.py [--blob-rows 6400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axe_pipelines.actions.drill import DrillOptions, run_drill  # noqa: E402
from axe_pipelines.backup import ItemResult, local_restic, run_tier_a  # noqa: E402
from axe_pipelines.config import parse_config  # noqa: E402
from axe_pipelines.demo import create_sample_databases  # noqa: E402
from bench.common import BLOB_SQL, DB_PASSWORD, scratch_site, write_report  # noqa: E402


class Recorded:
    """A DumpHistory over the bench's own tier-A results (no Dagster instance here)."""

    def __init__(self, results: list[ItemResult]):
        self.by_id = {r.snapshot_id: r for r in results if r.snapshot_id}

    def counts_for(self, customer: str, database: str, snapshot_id: str):
        found = self.by_id.get(snapshot_id)
        return found.row_counts if found else None

    def digests_for(self, customer: str, database: str, snapshot_id: str):
        found = self.by_id.get(snapshot_id)
        return found.table_digests if found else None


def site(work: Path, password: Path, cluster, *, digest: bool):
    databases = {n: {"server": "pg"} for n in ("frame", "hive", "blueprint", "index")}
    databases["big"] = {"server": "pg", **({"checksum_tables": ["evidence_blob"]}
                                           if digest else {})}
    return parse_config({"axe": {
        "servers": {"pg": cluster.server_config(password={"env": "BENCH_PG_PASSWORD"})},
        "databases": databases,
        "tiers": {"local": {"repository": str(work / "repo"),
                            "password": {"file": str(password)}}},
        "drill": {"work_dir": str(work), "evidence_dir": str(work / "evidence")}}})


def dump_seconds(config, at: datetime, run: str) -> tuple[float, ItemResult]:
    result = run_tier_a("axe", config.customer("axe"), at=at, run_id=run)
    assert result.ok, [r.error for r in result.failed]
    big = next(r for r in result.results if r.item.name == "big")
    return big.duration_s, big


def main() -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blob-rows", type=int, default=6400,
                        help="32000-byte rows in big (6400: ~200 MB)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["BENCH_PG_PASSWORD"] = DB_PASSWORD
    work, password, cluster = scratch_site("axe-bench-drill-")
    try:
        create_sample_databases(cluster, ["frame", "hive", "blueprint", "index"])
        cluster.psql('CREATE DATABASE "big";')
        cluster.psql(BLOB_SQL.format(rows=args.blob_rows), dbname="big")
        cluster.psql("VACUUM ANALYZE;", dbname="big")  # hint bits set, as on a live server
        size = int(cluster.psql("SELECT pg_database_size('big');")[0][0])
        with_digest = site(work, password, cluster, digest=True)
        without = site(work, password, cluster, digest=False)
        local_restic("axe", with_digest.customer("axe")).init()
        zone = ZoneInfo("Asia/Seoul")
        times: dict[str, list[float]] = {"with_digest": [], "without": []}
        last: ItemResult | None = None
        for i in range(args.rounds):
            order = [("with_digest", with_digest), ("without", without)]
            for name, config in order if i % 2 == 0 else reversed(order):
                at = datetime.now(zone).replace(microsecond=0)
                seconds, result = dump_seconds(config, at, f"bench-{name}-{i}")
                times[name].append(round(seconds, 2))
                if name == "with_digest":
                    last = result
                time.sleep(1)  # distinct logical times
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]} s" for k, v in times.items()),
                  flush=True)
        # The drill of the newest set: the last round's digest run when it went last.
        final = run_tier_a("axe", with_digest.customer("axe"),
                           at=datetime.now(zone).replace(microsecond=0), run_id="bench-drill")
        report = run_drill(with_digest, "axe", DrillOptions(as_of="latest"),
                           history=Recorded(final.results))
        rto = {i.name: {"rto_s": i.served.rto_s if i.served else None,
                        "steps": i.served.steps if i.served else {},
                        "proven": i.served is not None} for i in report.items}
        med = {k: statistics.median(v) for k, v in times.items()}
        write_report("drill", {
            "big_database_bytes": size, "blob_rows": args.blob_rows, "rounds": args.rounds,
            "dump_s_big": times, "dump_median_s": med,
            "digest_cost_s": round(med["with_digest"] - med["without"], 2),
            "digest_cost_ratio": round(med["with_digest"] / med["without"], 2),
            "digest": (last.table_digests if last else {}),
            "drill_ok": report.ok, "rto": rto, "drill_wall_s": report.wall_s,
            "note": "2 shared cores; RTO = fetch + restore (with owners) + checks per "
                    "database; the big one's checks include the digest over the whole table."})
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)  # a 200 MB database and its repository
    return 0


if __name__ == "__main__":
    sys.exit(main())
