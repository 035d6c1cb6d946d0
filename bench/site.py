"""The bench's world: throwaway PostgreSQL servers with the bench data, one work folder, the
environment every side runs in, and the exact command line of each side (axe, the raw restic
pipeline, borgmatic).

Data: the demo's four databases (frame's journal_line holds nearly all of it, index's
evidence_blob a little compressible bytea) at `rows`/`blob_repeat`; at the runbook's size five
databases (the runbook's mysrt too) with index made of bytea that neither compresses nor
dedups, like its evidence_blob (312 MB of deleted deals' originals).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.common import BLOB_SQL, DB_PASSWORD
from bench.tools import ROOT, Tools

sys.path.insert(0, str(ROOT))

from axe_pipelines.demo import create_sample_databases  # noqa: E402
from axe_pipelines.postgres.cluster import LocalCluster  # noqa: E402

DATABASES = ["frame", "hive", "blueprint", "index"]
RUNBOOK_DATABASES = ["frame", "hive", "blueprint", "mysrt", "index"]

MYSRT_SQL = """
CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL);
CREATE TABLE jobs (id serial PRIMARY KEY, user_id int REFERENCES users(id), spec jsonb);
CREATE TABLE push_subscriptions (id serial PRIMARY KEY, user_id int REFERENCES users(id),
                                 endpoint text);
INSERT INTO users(email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 2000) g;
INSERT INTO jobs(user_id, spec) SELECT 1 + g % 2000, jsonb_build_object('train', g, 'seat', 'A')
    FROM generate_series(1, 20000) g;
INSERT INTO push_subscriptions(user_id, endpoint) SELECT g, 'https://push/' || md5(g::text)
    FROM generate_series(1, 2000) g;
"""


def shown(argv: list[str] | str, work: Path, tools: Tools) -> str:
    """Given a command, return it as the report shows it: the work folder as $WORK and the
    shims as the tool's name (each shim execs the real binary with the same argv)."""
    text = argv if isinstance(argv, str) else shlex.join(argv)
    text = text.replace(tools.restic, "restic").replace(str(work), "$WORK")
    if tools.borg:
        text = text.replace(tools.borg, "borg")
    return text.replace(str(tools.pg_bin) + "/", "").replace(sys.executable, "python")


class Bench:
    """The work folder, the repository password and the environment shared by all sides."""

    def __init__(self, tools: Tools, work: Path | None = None):
        self.tools = tools
        self.work = Path(work or tempfile.mkdtemp(prefix="axe-bench-"))
        self.work.chmod(0o755)  # the postgres user runs the servers below it
        self.password = self.work / "pw"
        self.password.write_text("bench-password\n")
        self.log = self.work / "commands.log"
        self.clusters: list[LocalCluster] = []
        self.env = dict(os.environ, PGPASSWORD=DB_PASSWORD,
                        RESTIC_PASSWORD_FILE=str(self.password),
                        RESTIC_FROM_PASSWORD_FILE=str(self.password),
                        AXE_RESTIC=tools.restic, AXE_BENCH_CALLS=str(self.work / "calls.log"),
                        RESTIC_CACHE_DIR=str(self.work / "restic-cache"))
        self.axe = str(Path(sys.executable).parent / "axe")

    def cluster(self, name: str) -> LocalCluster:
        """Start (and remember, for stop_all) a throwaway server in work/<name>."""
        cluster = LocalCluster(self.work / name, password=DB_PASSWORD).start()
        self.clusters.append(cluster)
        return cluster

    def stop_all(self) -> None:
        """Stop every server this bench started."""
        for cluster in self.clusters:
            cluster.stop()

    def show(self, argv: list[str] | str) -> str:
        """Return a command as the report shows it (see `shown`)."""
        return shown(argv, self.work, self.tools)

    # --- data -------------------------------------------------------------------------
    @staticmethod
    def create_data(cluster: LocalCluster, names: list[str], *, rows: int,
                    blob_repeat: int) -> dict[str, int]:
        """Create the demo's databases `names` on the cluster; return each one's size."""
        create_sample_databases(cluster, names, rows=rows, blob_repeat=blob_repeat)
        cluster.psql("VACUUM ANALYZE;", dbname=names[0])
        return database_sizes(cluster, names)

    @staticmethod
    def create_runbook_data(cluster: LocalCluster, *, rows: int, blob_rows: int
                            ) -> dict[str, int]:
        """Create the runbook's five databases: frame with `rows` journal lines, index with
        `blob_rows` 32000-byte incompressible blobs; return each one's size."""
        create_sample_databases(cluster, ["frame", "hive", "blueprint"], rows=rows)
        for name, sql in (("mysrt", MYSRT_SQL), ("index", BLOB_SQL.format(rows=blob_rows))):
            cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE); '
                         f'CREATE DATABASE "{name}";')
            cluster.psql(sql, dbname=name)
            cluster.psql("VACUUM ANALYZE;", dbname=name)
        return database_sizes(cluster, RUNBOOK_DATABASES)

    # --- restic, raw ------------------------------------------------------------------
    def restic_init(self, repo: Path | str, *extra: str) -> None:
        """`restic init` a repository (outside any timing, with the real binary)."""
        subprocess.run([self.tools.restic_real, "-r", str(repo), "init", "-q", *extra],
                       env=self.env, check=True, capture_output=True)

    def raw_backup(self, cluster: LocalCluster, db: str, repo: Path) -> str:
        """Return the raw pipeline's command for one database (sh syntax)."""
        return shlex.join([
            self.tools.restic, "-r", str(repo), "backup", "-q", "--stdin-filename",
            f"{db}.pgdump", "--stdin-from-command", "--", str(cluster.bin_dir / "pg_dump"),
            "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-d", db,
            "-Fc", "-Z0"])

    def raw_sequential(self, pairs: list[tuple[LocalCluster, str]], repo: Path) -> list[str]:
        """Return `sh -c` running the raw pipeline for each (server, database), in turn."""
        return ["sh", "-c", " && ".join(self.raw_backup(c, db, repo) for c, db in pairs)]

    def snapshots(self, repo: Path | str, *extra: str) -> list[dict]:
        """Return the repository's snapshots (restic --json; real binary, untimed)."""
        out = subprocess.run([self.tools.restic_real, "-r", str(repo), "snapshots", "--json",
                              *extra], env=self.env, check=True, capture_output=True,
                             text=True).stdout
        return json.loads(out) or []

    # --- axe --------------------------------------------------------------------------
    def axe_site(self, name: str, servers: dict[str, LocalCluster], databases: dict[str, str],
                 repo: Path, *, parallel: int = 1, extra: dict | None = None,
                 home: str | None = None) -> dict[str, str]:
        """Write work/<name>.yaml for one customer `axe` (databases: name -> server) backing
        up into `repo`, and return the environment axe runs in (DAGSTER_HOME
        work/dagster-<home or name>: configs that share a home share the run history)."""
        config = {"axe": {
            "servers": {s: c.server_config(password={"env": "PGPASSWORD"}, roles=False)
                        for s, c in servers.items()},
            "databases": {db: {"server": server} for db, server in databases.items()},
            "tiers": {"local": {"repository": str(repo), "password": {"file": str(self.password)},
                                "parallel_servers": parallel}}}}
        for key, value in (extra or {}).items():
            if key == "tiers":
                config["axe"]["tiers"].update(value)
            elif key == "peers":
                config.update(value)
            else:
                config["axe"][key] = value
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return dict(self.env, AXE_CONFIG=str(path),
                    DAGSTER_HOME=str(self.work / f"dagster-{home or name}"))

    def axe_init(self, env: dict[str, str]) -> None:
        """`axe init` (outside any timing)."""
        subprocess.run([self.axe, "init"], env=env, check=True, capture_output=True)

    def axe_untimed(self, env: dict[str, str], *args: str) -> None:
        """Run `axe <args>` outside any timing (setup). Raise CalledProcessError on failure."""
        with self.log.open("ab") as out:
            subprocess.run([self.axe, *args], env=env, check=True, stdout=out, stderr=out)

    # --- borgmatic --------------------------------------------------------------------
    def borgmatic_config(self, name: str, cluster: LocalCluster, databases: list[str],
                         repo: Path) -> Path:
        """Write a borgmatic 2.x config: the databases as `format: custom`, `compression: 0`
        (pg_dump -Fc -Z0, as the other sides), borg through its shim; return its path."""
        config = {
            "source_directories": [],
            "repositories": [{"path": str(repo), "label": "bench"}],
            "encryption_passcommand": f"cat {self.password}",
            "local_path": self.tools.borg,
            "borg_base_directory": str(self.work / f"borg-home-{name}"),
            "user_runtime_directory": str(self.work / f"borg-run-{name}"),
            "postgresql_databases": [{
                "name": db, "hostname": "127.0.0.1", "port": cluster.port,
                "username": "postgres", "password": DB_PASSWORD, "format": "custom",
                "compression": 0, "pg_dump_command": str(cluster.bin_dir / "pg_dump")}
                for db in databases],
        }
        path = self.work / f"borgmatic-{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def borgmatic_init(self, config: Path) -> None:
        """`borgmatic repo-create --encryption repokey-blake2` (outside any timing)."""
        with self.log.open("ab") as out:
            subprocess.run([self.tools.borgmatic, "--config", str(config), "repo-create",
                            "--encryption", "repokey-blake2"], env=self.env, check=True,
                           stdout=out, stderr=out)


def database_sizes(cluster: LocalCluster, names: list[str]) -> dict[str, int]:
    """Return pg_database_size of each named database."""
    return {db: int(cluster.psql(f"SELECT pg_database_size('{db}');")[0][0]) for db in names}


def server_version(cluster: LocalCluster) -> str:
    """Return the server's `SHOW server_version`."""
    return cluster.psql("SHOW server_version;")[0][0]
