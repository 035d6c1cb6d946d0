"""Shared fixtures: real PostgreSQL clusters started by the tests (initdb/pg_ctl on free
loopback ports, password auth), the real restic binary, and customers.yaml factories."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from axe_pipelines.config import Site, load_config
from axe_pipelines.demo import create_sample_databases
from axe_pipelines.postgres.cluster import LocalCluster, free_port
from axe_pipelines.restic import find_restic
from tests.ci_skips import pytest_runtest_makereport  # noqa: F401 - the CI skip hook
from tests.ordering import pytest_collection_modifyitems  # noqa: F401 - longest first

# Distinctive values so the secrecy test can grep everything for them.
PG_PASSWORD = "pg-" + secrets.token_hex(12)
REPO_PASSWORD = "repo-" + secrets.token_hex(12)
PG_PASSWORD_ENV = "AXE_TEST_PG_PASSWORD"
REPO_PASSWORD_ENV = "AXE_TEST_REPO_PASSWORD"


@pytest.fixture(scope="session", autouse=True)
def _secrets_in_env(tmp_path_factory) -> Iterator[None]:
    os.environ[PG_PASSWORD_ENV] = PG_PASSWORD
    os.environ[REPO_PASSWORD_ENV] = REPO_PASSWORD
    # Runs that no test gave a home of its own record here, not in the operator's
    # ~/.axe/dagster (and parallel test workers do not share one SQLite store).
    os.environ["DAGSTER_HOME"] = str(tmp_path_factory.mktemp("session_dagster_home"))
    yield


@pytest.fixture(scope="session")
def restic_bin() -> str:
    return find_restic()


@pytest.fixture(scope="session")
def pg_root() -> Iterator[Path]:
    # Not under pytest's basetemp: that is mode 0700 and, as root, the server runs as the
    # postgres user, which must reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="axe-test-pg-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def server_a(pg_root: Path) -> Iterator[LocalCluster]:
    """Like the runbook's frame-postgres: databases frame and hive."""
    cluster = LocalCluster(pg_root / "a", password=PG_PASSWORD).start()
    create_sample_databases(cluster, ["frame", "hive"], rows=5000)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def server_b(pg_root: Path) -> Iterator[LocalCluster]:
    """Like index-postgres: databases blueprint and index (bytea blobs)."""
    cluster = LocalCluster(pg_root / "b", password=PG_PASSWORD).start()
    create_sample_databases(cluster, ["blueprint", "index"], blob_repeat=200)
    yield cluster
    cluster.stop()


def server_entry(cluster: LocalCluster, **extra: Any) -> dict[str, Any]:
    return cluster.server_config(**{"password": {"env": PG_PASSWORD_ENV}, **extra})


@pytest.fixture
def scratch_db(server_a: LocalCluster) -> Iterator[str]:
    """A database of its own on server A that a test may damage; dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:10]
    create_sample_databases_named(server_a, name, "frame")
    yield name
    server_a.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')


def create_sample_databases_named(cluster: LocalCluster, name: str, shape: str,
                                  rows: int = 2000) -> None:
    from axe_pipelines.demo import SAMPLE_SQL

    cluster.psql(f'CREATE DATABASE "{name}";')
    cluster.psql(SAMPLE_SQL[shape].format(rows=rows, blob_repeat=50), dbname=name)


ConfigFactory = Callable[..., tuple[Path, Site]]


@pytest.fixture
def make_config(tmp_path: Path, server_a: LocalCluster, server_b: LocalCluster) -> ConfigFactory:
    """Writes a customers.yaml under tmp_path and returns (path, Site).

    Defaults: customer `axe`, servers frame-postgres (A) and index-postgres (B), databases
    frame, hive (A) and blueprint, index (B), a required folder with an excludes file, the
    tier A repository at tmp_path/repo with its password in an environment variable, and the
    runbook's `realchoice` ring peer block.
    """

    def factory(*, databases: dict[str, Any] | None = None,
                folders: dict[str, Any] | None = None,
                servers: dict[str, Any] | None = None,
                local: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> tuple[Path, Site]:
        files = tmp_path / "files"
        if folders is None:
            (files / "uploads").mkdir(parents=True, exist_ok=True)
            (files / "uploads" / "a.txt").write_text("contract\n" * 100)
            (files / "junk.tmp").write_text("skip me\n")
            (tmp_path / "excludes").write_text("*.tmp\n")
            folders = {"files": {"path": str(files), "excludes_file": str(tmp_path / "excludes"),
                                 "required": True}}
        data: dict[str, Any] = {
            "axe": {
                "servers": servers if servers is not None else {
                    "frame-postgres": server_entry(server_a),
                    "index-postgres": server_entry(server_b),
                },
                "databases": databases if databases is not None else {
                    "frame": {"server": "frame-postgres"},
                    "hive": {"server": "frame-postgres"},
                    "blueprint": {"server": "index-postgres"},
                    "index": {"server": "index-postgres"},
                },
                "folders": folders,
                "tiers": {"local": {"repository": str(tmp_path / "repo"),
                                    "password": {"env": REPO_PASSWORD_ENV}, **(local or {})}},
            },
            # The runbook's peer block, pointed at loopback: a name that never resolves
            # (RFC 6761) and a port where nothing listens. Tests never reach the seed's hosts.
            "realchoice": {"ring_backup": {
                "ssh_user": "realchoice", "ssh_fqdn": "realchoice.invalid",
                "ssh_ip": "127.0.0.1", "ssh_port": free_port(),
                "receive_dir_at_peer": "/Users/realchoice/peer-backups/axe/",
                "receive_dir_at_self": str(tmp_path / "peer" / "realchoice"),
                "restic_version": "0.18.1", "disk_available_gib": 43,
                "bidirectional_ssh": True}},
        }
        if extra:
            data.update(extra)
        path = tmp_path / "customers.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path, load_config(path)

    return factory


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from axe_pipelines.instance import ensure_dagster_home

    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return ensure_dagster_home(home)
