"""A real PostgreSQL with WAL archiving on (archive_mode=on, wal_level=replica, our
archive_command), a spool per test (archive_command is reloadable), and helpers that make
segments fast (pg_switch_wal) and wait for the archiver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from axe_pipelines.config import Site, load_config
from axe_pipelines.postgres.cluster import LocalCluster
from axe_pipelines.wal import archive
from tests.conftest import PG_PASSWORD, REPO_PASSWORD_ENV, server_entry

COLD_PASSWORD_ENV = "AXE_TEST_WAL_COLD_PASSWORD"
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def archive_command(spool: Path) -> str:
    """The archive_command of the README, with this checkout's archive.py."""
    return f"{SYSTEM_PYTHON} {archive.__file__} %p %f {spool}"


def start_archiving_cluster(root: Path) -> LocalCluster:
    """initdb, then the archiving settings into postgresql.conf, then start (archive_mode
    needs a restart). The archive_command goes nowhere until a test points it at a spool."""
    cluster = LocalCluster(root / "pg", password=PG_PASSWORD).start()
    cluster.stop()
    with open(cluster.data / "postgresql.conf", "a") as conf:
        conf.write("\narchive_mode = on\nwal_level = replica\narchive_timeout = 60\n"
                   "max_wal_senders = 4\narchive_command = '/bin/false'\n"
                   "autovacuum = off\n")  # no commit the tests did not make
    return cluster.start()


def own_spool(cluster: LocalCluster, spool: Path) -> Path:
    """Make `spool` (the server's user must write it) and point archive_command at it."""
    spool.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(spool, "postgres")
    cluster.psql(f"ALTER SYSTEM SET archive_command = '{archive_command(spool)}'; "
                 f"SELECT pg_reload_conf();")
    time.sleep(0.5)
    return spool


def switch(cluster: LocalCluster, n: int = 1, db: str = "postgres", *,
           write: bool = True) -> list[str]:
    """Write a little (unless not `write`: then no commit) and close the segment `n` times;
    return the closed segments' names."""
    names = []
    for _ in range(n):
        if write:
            cluster.psql("CREATE TABLE IF NOT EXISTS wal_filler (x int); "
                         "INSERT INTO wal_filler VALUES (1);", dbname=db)
        names.append(cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn());")[0][0])
        cluster.psql("SELECT pg_switch_wal();")
    return names


def archiver(cluster: LocalCluster) -> dict[str, str]:
    row = cluster.psql("SELECT archived_count, coalesce(last_archived_wal, ''), failed_count, "
                       "coalesce(last_failed_wal, '') FROM pg_stat_archiver;")[0]
    row += [""] * (4 - len(row))
    return dict(zip(("archived", "last_archived", "failed", "last_failed"), row, strict=True))


def wait_archived(cluster: LocalCluster, name: str, timeout: float = 60) -> None:
    """Wait until the archiver has archived `name` (or a later file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = archiver(cluster)["last_archived"]
        if last and last[:24] >= name:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} not archived within {timeout} s: {archiver(cluster)}")


def write_site(root: Path, cluster: LocalCluster, spool: Path, *,
               wal: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None,
               physical: bool = False, cold: Path | None = None,
               local: dict[str, Any] | None = None) -> tuple[Path, Site]:
    """customers.yaml: customer axe, server ledger-postgres with wal:, database ledger
    (`extra`: more keys of the customer, e.g. notify)."""
    data = {"axe": {
        "servers": {"ledger-postgres": server_entry(
            cluster, wal={"spool": str(spool), **(wal or {})}, roles=False,
            **({"physical": True} if physical else {}))},
        "databases": {"ledger": {"server": "ledger-postgres"}},
        "tiers": {"local": {"repository": str(root / "repo"),
                            "password": {"env": REPO_PASSWORD_ENV}, **(local or {})},
                  **({"cold": {"password": {"env": COLD_PASSWORD_ENV},
                               "mount_glob": str(cold / "axe-cold-*"),
                               "accept_plain_folders": True, "volumes": 1}}
                     if cold else {})},
        **(extra or {}),
    }}
    path = root / "customers.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, load_config(path)


def run_axe(config: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "axe_pipelines.cli", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def start_axe(config: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "axe_pipelines.cli", "--config",
                             str(config), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def wait_stopped(proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Wait until the process stopped itself (SIGSTOP: state T in /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before pausing: "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.1)
    raise AssertionError("the pusher did not pause")
