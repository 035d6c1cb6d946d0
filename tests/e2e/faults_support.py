"""Helpers of the issue 8 fault tests (test_faults_*.py): a database big enough that a dump is
still streaming seconds after it started, `axe` as a subprocess the tests can kill or signal,
and what the server, the repository and the Dagster instance look like afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from axe_pipelines.postgres.cluster import LocalCluster
from tests.conftest import REPO_PASSWORD, ConfigFactory, server_entry

BULK_DB = "bulk"
# 500 k rows of 64 incompressible bytes: a ~65 MB custom-format dump (bytea as hex), which
# restic compresses to ~32 MB; it streams for seconds even on an idle machine (the tests
# signal it within a 0.1 s poll of seeing it stream) and is still 2.5 times the full-disk
# test's 12 MiB tmpfs.
BULK_ROWS = 500_000
_made: set[int] = set()


def bulk_database(cluster: LocalCluster) -> str:
    """Given a running cluster, create (once per cluster) the big `bulk` database; return its
    name."""
    if cluster.port not in _made:
        cluster.psql(f'DROP DATABASE IF EXISTS "{BULK_DB}" WITH (FORCE); '
                     f'CREATE DATABASE "{BULK_DB}";')
        # Four md5s of distinct numbers per row: nothing repeats for restic to compress away.
        cluster.psql("CREATE TABLE blob AS SELECT g AS id, decode(md5((4 * g)::text) || "
                     "md5((4 * g + 1)::text) || md5((4 * g + 2)::text) || "
                     "md5((4 * g + 3)::text), 'hex') "
                     f"AS body FROM generate_series(1, {BULK_ROWS}) g;", dbname=BULK_DB)
        _made.add(cluster.port)
    return BULK_DB


def bulk_config(make_config: ConfigFactory, cluster: LocalCluster, **local: object):
    """A customers.yaml backing up only the bulk database of `cluster` (roles too), with
    `local` settings on tiers.local; return (path, Site)."""
    bulk_database(cluster)
    return make_config(servers={"frame-postgres": server_entry(cluster)},
                       databases={BULK_DB: {"server": "frame-postgres"}}, folders={},
                       local=dict(local))


def axe_env(config: Path, home: Path) -> dict[str, str]:
    """The environment `axe` runs in: this config, this Dagster home."""
    return dict(os.environ, AXE_CONFIG=str(config), DAGSTER_HOME=str(home))


def run_axe(config: Path, home: Path, *args: str,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `axe <args>` to its end (a hang fails the test at `timeout`)."""
    return subprocess.run([sys.executable, "-m", "axe_pipelines.cli", *args],
                          env=axe_env(config, home), capture_output=True, text=True,
                          timeout=timeout)


def start_axe(config: Path, home: Path, *args: str, err: Path) -> subprocess.Popen:
    """Start `axe <args>` in the background, its stderr into the file `err`."""
    return subprocess.Popen([sys.executable, "-m", "axe_pipelines.cli", *args],
                            env=axe_env(config, home), stdout=subprocess.DEVNULL,
                            stderr=err.open("w"), text=True)


def backup_mid_dump(make_config: ConfigFactory, cluster: LocalCluster, tmp_path: Path,
                    ) -> tuple[Path, Path, subprocess.Popen, Path]:
    """Set up the bulk database's config and repository, start `axe backup --local --plain`
    and return (config, home, the process, its stderr file) once its pg_dump streams rows."""
    path, _ = bulk_config(make_config, cluster)
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    err = tmp_path / "axe.err"
    proc = start_axe(path, home, "backup", "--local", "--plain", err=err)
    wait_until("pg_dump streaming", lambda: dumping(cluster), proc=proc, err=err)
    return path, home, proc, err


def backends(cluster: LocalCluster, dbname: str) -> list[tuple[str, str, str]]:
    """Return (application_name, state, wait_event_type) of every session on `dbname`."""
    rows = cluster.psql("SELECT application_name, state, coalesce(wait_event_type, '') FROM "
                        f"pg_stat_activity WHERE datname = '{dbname}' "
                        "AND pid <> pg_backend_pid();")
    return [(r[0], r[1], r[2]) if len(r) == 3 else (r[0], r[1], "") for r in rows]


def wait_until(what: str, ok, timeout: float = 120, proc: subprocess.Popen | None = None,
               err: Path | None = None) -> None:
    """Poll `ok()` every 0.1 s until it is true; fail naming `what` (and the child's stderr)
    when `timeout` passes or `proc` ends first."""
    deadline = time.monotonic() + timeout
    while not ok():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"axe ended ({proc.returncode}) before {what}: "
                                 f"{err.read_text() if err else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s: "
                                 f"{err.read_text() if err else ''}")
        time.sleep(0.1)


def dumping(cluster: LocalCluster) -> bool:
    """True when a pg_dump of the bulk database is streaming rows now."""
    return any(app == "pg_dump" and state == "active"
               for app, state, _ in backends(cluster, BULK_DB))


def restic_json(restic_bin: str, repo: Path, *args: str) -> str:
    """Run restic against the test repository (its password from the tests' env)."""
    env = dict(os.environ, RESTIC_REPOSITORY=str(repo), RESTIC_PASSWORD=REPO_PASSWORD)
    return subprocess.run([restic_bin, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=True).stdout


def cpu_seconds(pid: int) -> float:
    """Return the user+system CPU time a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Return the pids of every live process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    """True when a process with this pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
