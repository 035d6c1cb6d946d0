"""Measure point-in-time recovery here (issue 13): generate about --wal-mib of WAL after a base
backup on a throwaway archiving server, push it, restore the database as of the end through
`axe restore --pitr` and report the replay's seconds per GiB of WAL, plus how long a commit
takes to reach tier A (archive_timeout + one push).

    .venv/bin/python -m bench.wal_replay [--wal-mib 768]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from tests.conftest import PG_PASSWORD, PG_PASSWORD_ENV, REPO_PASSWORD, REPO_PASSWORD_ENV
from tests.e2e.wal_support import (
    archiver,
    own_spool,
    run_axe,
    start_archiving_cluster,
    wait_archived,
    write_site,
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wal-mib", type=int, default=768)
    args = parser.parse_args()
    os.environ[PG_PASSWORD_ENV], os.environ[REPO_PASSWORD_ENV] = PG_PASSWORD, REPO_PASSWORD
    root = Path(tempfile.mkdtemp(prefix="axe-bench-wal-"))
    root.chmod(0o755)
    cluster = start_archiving_cluster(root)
    try:
        cluster.psql("CREATE DATABASE ledger;")
        cluster.psql("CREATE TABLE t (id bigint, pad text);", dbname="ledger")
        spool = own_spool(cluster, root / "spool")
        config, _ = write_site(root, cluster, spool, physical=True,
                               wal={"replay_timeout_s": 7200})
        os.environ["DAGSTER_HOME"] = str(root / "dagster")
        assert run_axe(config, "init").returncode == 0
        assert run_axe(config, "backup", "--local", timeout=1800).returncode == 0
        rows = args.wal_mib * 1024 * 1024 // 700  # ~700 bytes of WAL per row of 500 B
        start_lsn = cluster.psql("SELECT pg_current_wal_lsn();")[0][0]
        cluster.psql(f"INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series(1, "
                     f"{rows}) g;", dbname="ledger")
        end_lsn = cluster.psql("SELECT pg_current_wal_lsn();")[0][0]
        wal_bytes = int(cluster.psql(f"SELECT pg_wal_lsn_diff('{end_lsn}', '{start_lsn}');"
                                     )[0][0])
        time.sleep(1.1)
        moment = cluster.psql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                              "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"');")[0][0]
        time.sleep(1.1)
        # RPO: a commit, then how long until the archiver has it (archive_timeout) and the push.
        cluster.psql("INSERT INTO t VALUES (-1, 'rpo probe');", dbname="ledger")
        committed = time.monotonic()
        current = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn());")[0][0]
        wait_archived(cluster, current, timeout=300)
        archived_s = time.monotonic() - committed
        pushed = time.monotonic()
        push = run_axe(config, "wal", "push", timeout=3600)
        push_s = time.monotonic() - pushed
        assert push.returncode == 0, push.stdout + push.stderr
        done = run_axe(config, "restore", "--customer", "axe", "--target", "ledger",
                       "--as-of", moment, "--pitr", "--force", timeout=7200)
        assert done.returncode == 0, done.stdout + done.stderr
        replay = next(float(m[1]) for m in re.finditer(
            r"^\s+([\d.]+) s\s+database ledger: replaying WAL", done.stdout, re.M))
        print(f"WAL generated after the base backup: {wal_bytes / 2**30:.2f} GiB "
              f"({archiver(cluster)['archived']} files archived in all)")
        print(f"replay: {replay:.1f} s = {replay / (wal_bytes / 2**30):.1f} s per GiB of WAL")
        print(f"a commit reached the spool after {archived_s:.1f} s (archive_timeout 60 s); "
              f"the push of everything took {push_s:.1f} s")
        print(done.stdout[done.stdout.index("steps:"):])
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
