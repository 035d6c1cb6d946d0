"""Throwaway PostgreSQL clusters: LocalCluster (initdb + pg_ctl in a folder, on a free loopback
port; used by the tests, the demo and the benchmarks) and Staging, the cluster integrity
checks and last-valid searches restore into, removed afterwards.

Staging holds a restored production copy, so no other local user may reach it: its folder is
mode 0700 (the data, and the socket folder inside it) and TCP logins need a random password
checked with scram-sha-256, kept in a 0600 file in that folder for our own clients.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

from axe_pipelines.config import Server
from axe_pipelines.postgres.client import (
    PSQL_FLAGS,
    Connection,
    PostgresError,
    find_bin_dir,
    first_error,
    quote_ident,
    run_tool,
)
from axe_pipelines.safe_paths import remove_tree
from axe_pipelines.secrets import FileSource


def _shell_quote(value: str) -> str:
    # pg_ctl hands -o to the server through /bin/sh: each value must stay one word.
    if value and all(c.isalnum() or c in "._-/" for c in value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A PostgreSQL cluster of its own in a folder, on a free loopback port (initdb + pg_ctl).

    Every login, over TCP and over the socket, needs the superuser's password (scram-sha-256):
    the folder may be readable by other local users, so nothing is trusted. Without a
    `password` one is generated and kept in PASSWORD_FILE (mode 0600, ours) in the folder,
    where a later LocalCluster on the same folder reads it back.
    As root, the server runs as the `postgres` system user (PostgreSQL refuses root).
    """

    # A throwaway cluster trades durability for speed; a restored copy passes its own.
    FAST_SETTINGS = {"listen_addresses": "127.0.0.1", "fsync": "off",
                     "full_page_writes": "off", "max_connections": "40"}
    PASSWORD_FILE = "superuser.password"

    def __init__(self, root: Path | None = None, *, password: str | None = None,
                 bin_dir: Path | None = None, port: int | None = None,
                 data: Path | None = None, settings: dict[str, str] | None = None,
                 start_timeout_s: int = 60):
        self.root = Path(root or tempfile.mkdtemp(prefix="axe-pg-"))  # also the socket dir
        self.data = data or self.root / "data"
        self.bin_dir = find_bin_dir(bin_dir)
        self.port = port or free_port()
        self.password = password
        self.user = "postgres"
        self.settings = self.FAST_SETTINGS if settings is None else settings
        self.start_timeout_s = start_timeout_s

    def _superuser_password(self) -> str:
        """Return the given password, else the one kept in the folder, else a new one (kept
        there for the next LocalCluster on this folder)."""
        if self.password is None:
            kept = self.root / self.PASSWORD_FILE
            if kept.exists():
                self.password = kept.read_text().strip()
            else:
                self.password = secrets.token_urlsafe(24)
                kept.touch(mode=0o600)
                kept.write_text(self.password + "\n")
        return self.password

    def _as_owner(self, argv: Sequence[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def _run(self, argv: Sequence[str], what: str, timeout: float = 120) -> None:
        result = run_tool(self._as_owner(argv), capture=True, check=False, timeout=timeout,
                          what=what)
        if result.code != 0:
            raise PostgresError(
                f"{what} failed: {(result.stderr or result.stdout).strip()[-500:]}")

    def _initdb(self) -> None:
        # initdb reads the password from a file (never argv); the server user must read it.
        pwfile = self.root / "pwfile"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self._superuser_password() + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres")
        args = [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user,
                "-A", "scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8",
                "--locale=C"]
        try:
            self._run(args, "initdb")
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> LocalCluster:
        """Create the cluster if its folder has none, start it and return it. Raise
        PostgresError if initdb or pg_ctl fails."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        opts = " ".join([f"-p {self.port} -k {self.root}",
                         *(f"-c {k}={_shell_quote(v)}" for k, v in self.settings.items())])
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                   "-l", str(self.log), "-w", "-t", str(self.start_timeout_s), "start"],
                  "pg_ctl start", timeout=self.start_timeout_s + 60)
        return self

    @property
    def log(self) -> Path:
        """The server's log file (pg_ctl -l): in the folder, beside the socket."""
        return self.root / "server.log"

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown); pg_ctl's own failure is ignored.
        Raise PostgresError if it does not stop within 60 s."""
        if (self.data / "postmaster.pid").exists():
            run_tool(self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data),
                                     "-m", "fast", "-w", "stop"]),
                     check=False, timeout=60, what="pg_ctl stop")

    def server_config(self, **extra: object) -> dict[str, object]:
        """Return a `servers:` entry for customers.yaml reaching this cluster over loopback
        TCP, with `extra` keys on top."""
        return {"host": "127.0.0.1", "port": self.port, "user": self.user,
                "bin_dir": str(self.bin_dir), **extra}

    def psql(self, sql: str, dbname: str = "postgres") -> list[list[str]]:
        """Given SQL, run it as the superuser in `dbname` and return the rows. Raise
        PostgresError if it fails."""
        env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        env["PGPASSWORD"] = self._superuser_password()
        result = run_tool([str(self.bin_dir / "psql"), *PSQL_FLAGS, "-h", "127.0.0.1",
                           "-p", str(self.port), "-U", self.user, "-d", dbname],
                          input=sql, capture=True, check=False, env=env, timeout=300,
                          what=f"local cluster :{self.port}/{dbname}")
        if result.code != 0:
            raise PostgresError(f"local cluster :{self.port}/{dbname}: {result.stderr.strip()}")
        return [ln.split("\t") for ln in result.stdout.splitlines() if ln]

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Staging:
    """A LocalCluster in a fresh folder under the system temp dir, for integrity checks and
    last-valid searches. Use as a context manager; `connection(db)` reaches a database on
    it. Nothing of it survives the block."""

    SERVER_NAME = "staging"
    PASSWORD_FILE = "client.password"

    def __init__(self, bin_dir: Path | None = None):
        self.bin_dir = bin_dir
        self.root: Path | None = None
        self.cluster: LocalCluster | None = None

    def __enter__(self) -> Staging:
        # mkdtemp makes it 0700; as root the server runs as `postgres`, which must own it.
        self.root = Path(tempfile.mkdtemp(prefix="axe-staging-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        password = secrets.token_urlsafe(24)
        pwfile = self.root / self.PASSWORD_FILE
        pwfile.touch(mode=0o600)
        pwfile.write_text(password + "\n")
        self.cluster = LocalCluster(self.root / "pg", password=password, bin_dir=self.bin_dir)
        try:
            self.cluster.start()
        except BaseException:
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        if self.root is not None:
            remove_tree(self.root, inside=Path(tempfile.gettempdir()))

    @property
    def server(self) -> Server:
        """The staging server as a customers.yaml server entry (no roles: a scratch copy)."""
        assert self.cluster is not None
        assert self.root is not None
        return Server(host="127.0.0.1", port=self.cluster.port, user=self.cluster.user,
                      password=FileSource(file=self.root / self.PASSWORD_FILE),
                      bin_dir=self.cluster.bin_dir, roles=False)

    def connection(self, dbname: str) -> Connection:
        """Given a database name, return the connection to it on the staging server."""
        return Connection(self.SERVER_NAME, self.server, dbname)

    def load(self, dbname: str, dump_file: Path, fmt: str) -> tuple[Connection, str]:
        """Given a database name and a dump file, (re)create that database on the staging
        server and load the dump into it without owners and grants (staging has no roles).
        Return (its connection, what the tool reported when it failed: "" when it did not).
        Raise PostgresError if the database cannot be created."""
        conn = self.connection(dbname)
        conn.admin().psql(f"DROP DATABASE IF EXISTS {quote_ident(dbname)}; "
                          f"CREATE DATABASE {quote_ident(dbname)};")
        if fmt == "plain":
            argv = [*conn.tool("psql"), *conn.conn_args(), "-X", "-q", "-f", str(dump_file)]
        else:
            argv = [*conn.tool("pg_restore"), *conn.conn_args(), "--no-owner",
                    "--no-privileges", "-j", "2", str(dump_file)]
        result = run_tool(argv, env=conn.env(), check=False, what=f"staging {dbname}")
        # Without owners some statements (e.g. extensions' comments) may warn; an archive
        # that cannot be read at all shows up in the row-count check.
        return conn, first_error(result.stderr) if result.code != 0 else ""

    def drop(self, dbname: str) -> None:
        """Given a database name, drop it from the staging server; a failure is ignored
        (the whole server goes at the end of the block)."""
        try:
            self.connection(dbname).admin().psql(
                f"DROP DATABASE IF EXISTS {quote_ident(dbname)} WITH (FORCE);")
        except PostgresError:
            pass

    def __exit__(self, *exc: object) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self._remove()
