"""What the benchmarks share: the database password of their throwaway servers, a scratch
site for bench_drill.py, and its JSON report. The side-by-side harness (timing, interleaved
rounds, medians, ratios) is bench/measure.py, run by `python -m bench`."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DB_PASSWORD = "bench-db"

# evidence_blob as the runbook's index holds it: 2000 md5s per row, 64000 hex digits decoded
# to 32000 bytes that neither compress nor dedup.
BLOB_SQL = """
CREATE TABLE evidence_blob (id serial PRIMARY KEY, deal text NOT NULL, body bytea);
INSERT INTO evidence_blob(deal, body)
    SELECT 'deal-' || g, decode((SELECT string_agg(md5(g::text || '-' || i), '')
                                 FROM generate_series(1, 2000) i), 'hex')
    FROM generate_series(1, {rows}) g;
"""


def scratch_site(prefix: str):
    """A work folder (reachable by the postgres user), a repository password file in it, and
    a started throwaway PostgreSQL (password DB_PASSWORD); stop the cluster when done."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from axe_pipelines.postgres.cluster import LocalCluster

    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)
    password = work / "pw"
    password.write_text("bench-password\n")
    return work, password, LocalCluster(work / "pg", password=DB_PASSWORD).start()


def write_report(name: str, report: dict[str, object]) -> None:
    """bench/results/<name>-<time>.json (git-ignored), and the same on stdout."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(
        json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
