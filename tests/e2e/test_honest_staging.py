"""The staging PostgreSQL of `axe integrity-check` / find-last-valid holds a restored
production copy: another local user (here `nobody`, through setpriv) can neither log in to it
nor read its folder, while axe's own clients can."""

from __future__ import annotations

import os
import subprocess

import pytest

from axe_pipelines.postgres.cluster import LocalCluster, Staging

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to run a command as another local user")


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}  # no PGPASSWORD of ours
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "--", *argv], capture_output=True, text=True, timeout=60, env=env)


def test_another_local_user_cannot_reach_the_staging_copy():
    with Staging() as stage:
        assert stage.cluster is not None and stage.root is not None
        psql = str(stage.cluster.bin_dir / "psql")
        stage.connection("postgres").psql("CREATE TABLE secret_copy (x int);")
        # Over TCP: a password is asked for, and nobody has it.
        tcp = as_nobody(psql, "-X", "-w", "-h", "127.0.0.1", "-p", str(stage.cluster.port),
                        "-U", "postgres", "-d", "postgres", "-c", "SELECT 1")
        assert tcp.returncode != 0
        assert "no password supplied" in tcp.stderr or "password authentication" in tcp.stderr
        # Over the socket: its folder is closed to others (and a password is asked for).
        sock = as_nobody(psql, "-X", "-w", "-h", str(stage.cluster.root),
                         "-p", str(stage.cluster.port), "-U", "postgres", "-d", "postgres",
                         "-c", "SELECT 1")
        assert sock.returncode != 0 and "Permission denied" in sock.stderr
        # The data folder and the password file cannot be read.
        assert stage.root.stat().st_mode & 0o077 == 0
        for path in (stage.cluster.data, stage.root / Staging.PASSWORD_FILE):
            read = as_nobody("ls", "-la", str(path))
            assert read.returncode != 0 and "Permission denied" in read.stderr
        # axe's own clients log in with the password from the 0600 file.
        assert stage.connection("postgres").psql(
            "SELECT count(*) FROM secret_copy;") == [["0"]]
        root = stage.root
    assert not root.exists()


def test_a_local_cluster_without_a_password_trusts_no_login(pg_root, server_a):
    """LocalCluster (tests, demo, benchmarks) in a folder others may read: no login is
    trusted, over the socket or TCP. Without a password it makes one, keeps it in a 0600 file
    of ours, and a later LocalCluster on that folder logs in with it."""
    cluster = LocalCluster(pg_root / "no-password").start()
    try:
        kept = cluster.root / LocalCluster.PASSWORD_FILE
        assert kept.stat().st_mode & 0o077 == 0 and kept.stat().st_uid == os.geteuid()
        assert LocalCluster(cluster.root, port=cluster.port).psql("SELECT 1;") == [["1"]]
        for running in (cluster, server_a):  # server_a was given its password
            psql = str(running.bin_dir / "psql")
            for host in (str(running.root), "127.0.0.1"):
                done = as_nobody(psql, "-X", "-w", "-h", host, "-p", str(running.port),
                                 "-U", "postgres", "-d", "postgres", "-c", "SELECT 1")
                assert done.returncode != 0, (host, done.stdout)
                assert "no password supplied" in done.stderr, (host, done.stderr)
    finally:
        cluster.stop()
