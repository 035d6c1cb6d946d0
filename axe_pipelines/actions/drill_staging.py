"""Where a restore drill restores: a throwaway PostgreSQL the drill starts itself — on a free
loopback port (or `drill.staging_port`), with a random password checked by scram-sha-256 over
TCP, its folder mode 0700 — or the existing server of `drill.staging`.

Nothing of a throwaway server survives the `with` block: not on a failed start (port taken,
disk full), not on a failed drill, not on Ctrl-C (the teardown ignores a second Ctrl-C rather
than leave a server running). On an existing server the databases and roles the drill created
are dropped again.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from axe_pipelines.config import Server
from axe_pipelines.errors import Unusable
from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    first_error,
    first_line,
    quote_ident,
    run_tool,
)
from axe_pipelines.postgres.cluster import LocalCluster, free_port
from axe_pipelines.postgres.roles import existing_roles, missing_roles_script, run_roles_script
from axe_pipelines.safe_paths import remove_tree
from axe_pipelines.secrets import FileSource

SERVER_NAME = "drill staging"
PASSWORD_FILE = "client.password"


class StagingError(Unusable):
    """The drill's staging server could not be started or reached: nothing was restored and
    nothing of it is left behind; the message says why and what to change."""


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT in the block (main thread only): a teardown under way finishes instead
    of leaving a half-stopped server behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_failure(cluster: LocalCluster, exc: BaseException) -> str:
    """The reason a throwaway server did not start: PostgreSQL's own words from its log
    (pg_ctl only says "could not start server"), else the tool's error."""
    log = cluster.root / "server.log"
    with suppress(OSError):
        lines = [ln.split(":  ", 1)[-1].strip() for ln in log.read_text().splitlines()
                 if "FATAL" in ln or "could not" in ln]
        if lines:
            return "; ".join(dict.fromkeys(lines[:2]))
    text = str(exc)
    return next((ln.strip() for ln in text.splitlines() if "No space" in ln or "could not" in ln
                 or "FATAL" in ln), first_line(exc))


def _hint(reason: str, parent: Path) -> str:
    if "in use" in reason:
        return "free that port, or unset drill.staging_port for a free one"
    if "No space" in reason or "space left" in reason:
        return f"free space in {parent}, or point drill.work_dir at a larger disk"
    return "see the reason above; `axe doctor` checks the PostgreSQL tools"


class DrillStaging:
    """The staging server of one drill; use as a context manager."""

    def __init__(self, configured: Server | None = None, *, port: int | None = None,
                 parent: Path | None = None, bin_dir: Path | None = None):
        self.configured = configured
        self.port = port
        self.parent = Path(parent or tempfile.gettempdir()).expanduser()
        self.bin_dir = bin_dir
        self.root: Path | None = None
        self.cluster: LocalCluster | None = None
        self.version = ""
        self._databases: list[str] = []
        self._roles: list[str] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> DrillStaging:
        try:
            if self.configured is None:
                self._start()
            self.version = self.connection("postgres").psql("SHOW server_version;")[0][0]
        except BaseException as exc:
            self.__exit__()
            if isinstance(exc, StagingError):
                raise
            if isinstance(exc, PostgresError) and self.configured is not None:
                raise StagingError(f"drill staging: cannot reach {self.describe()}: "
                                   f"{first_line(exc)}; nothing was restored; check "
                                   f"drill.staging in customers.yaml") from None
            raise
        return self

    def _start(self) -> None:
        port = self.port or free_port()
        try:
            # mkdtemp makes it 0700; as root the server runs as `postgres`, which must own it.
            self.root = Path(tempfile.mkdtemp(prefix="axe-drill-", dir=self.parent))
            if os.geteuid() == 0:
                shutil.chown(self.root, "postgres")
            pwfile = self.root / PASSWORD_FILE
            pwfile.touch(mode=0o600)
            password = secrets.token_urlsafe(24)
            pwfile.write_text(password + "\n")
        except OSError as exc:
            raise StagingError(f"drill staging: cannot create its folder in {self.parent}: "
                               f"{exc.strerror}; nothing was restored; "
                               f"{_hint(str(exc.strerror), self.parent)}") from None
        self.cluster = LocalCluster(self.root / "pg", password=password, port=port,
                                    bin_dir=self.bin_dir)
        try:
            self.cluster.start()
        except (PostgresError, OSError) as exc:
            reason = _start_failure(self.cluster, exc)
            raise StagingError(f"drill staging: PostgreSQL did not start on 127.0.0.1:{port} "
                               f"in {self.parent}: {reason}; nothing was restored and nothing "
                               f"is left running; {_hint(reason, self.parent)}") from None

    def __exit__(self, *exc: object) -> None:
        with sigint_ignored():
            if self.configured is not None:
                self._clean_configured()
            if self.cluster is not None:
                self._stop_cluster(self.cluster)
                self.cluster = None
            if self.root is not None:
                remove_tree(self.root, inside=self.parent)
                self.root = None

    @staticmethod
    def _stop_cluster(cluster: LocalCluster) -> None:
        with suppress(PostgresError):
            cluster.stop()
        pidfile = cluster.data / "postmaster.pid"
        # A fast stop that did not finish: SIGQUIT is PostgreSQL's immediate shutdown, SIGKILL
        # the last resort; a drill never leaves a server with a production copy running.
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(int(pidfile.read_text().splitlines()[0]), sig)
            except (OSError, ValueError, IndexError):
                return  # no pid file, or no such process: it is stopped
            for _ in range(100):
                if not pidfile.exists():
                    return
                time.sleep(0.1)

    def _clean_configured(self) -> None:
        for dbname in reversed(self._databases):
            self.drop(dbname)
        for role in reversed(self._roles):
            with suppress(PostgresError):
                self.connection("postgres").psql(f"DROP ROLE IF EXISTS {quote_ident(role)};")
        self._roles.clear()

    # --- where ---------------------------------------------------------------------------------

    @property
    def server(self) -> Server:
        """The staging server as a customers.yaml server entry (password from its 0600 file
        in the 0700 folder, for a throwaway one)."""
        if self.configured is not None:
            return self.configured
        assert self.cluster is not None and self.root is not None
        return Server(host="127.0.0.1", port=self.cluster.port, user=self.cluster.user,
                      password=FileSource(file=self.root / PASSWORD_FILE),
                      bin_dir=self.cluster.bin_dir, roles=False)

    def describe(self) -> str:
        """Return the staging server for reports (never its password)."""
        if self.configured is not None:
            where = self.configured.host or "local socket"
            return f"existing server {where}:{self.configured.port} (drill.staging)"
        port = self.cluster.port if self.cluster else self.port
        return (f"throwaway PostgreSQL {self.version} on 127.0.0.1:{port} (random password, "
                f"scram-sha-256, 0700 folder; removed afterwards)").replace("  ", " ")

    def connection(self, dbname: str) -> Connection:
        """Given a database name, return the connection to it on the staging server."""
        return Connection(SERVER_NAME, self.server, dbname)

    # --- what the drill does there ---------------------------------------------------------

    def restore_roles(self, script: str) -> tuple[list[str], list[str]]:
        """Given a server's `pg_dumpall --globals-only` output, create the roles staging lacks
        (postgres.roles.missing_roles_script); return (the roles created, psql's errors).
        Raise PostgresError if staging cannot be reached."""
        conn = self.connection("postgres")
        todo, missing, _ = missing_roles_script(script, existing_roles(conn, where="staging"))
        if not missing:
            return [], []
        errors = run_roles_script(conn, todo)
        self._roles += missing
        return missing, errors

    def load(self, dbname: str, dump_file: Path, fmt: str, *, owners: bool) -> str:
        """Given a new database's name and a dump, create the database (from template0) and
        load the dump — with its owners and grants when `owners` (the roles are restored
        first), else without. Return what the tool reported when it failed ("" when it did
        not). Raise PostgresError if the database cannot be created."""
        conn = self.connection(dbname)
        conn.admin().psql(f"DROP DATABASE IF EXISTS {quote_ident(dbname)} WITH (FORCE); "
                          f"CREATE DATABASE {quote_ident(dbname)} TEMPLATE template0;")
        self._databases.append(dbname)
        if fmt == "plain":
            argv = [*conn.tool("psql"), *conn.conn_args(), "-X", "-q", "--no-password",
                    "-v", "ON_ERROR_STOP=1", "-f", str(dump_file)]
        else:
            argv = [*conn.tool("pg_restore"), *conn.conn_args(), "--no-password", "-j", "2",
                    *([] if owners else ["--no-owner", "--no-privileges"]), str(dump_file)]
        result = run_tool(argv, env=conn.env(), check=False, what=f"staging {dbname}")
        return first_error(result.stderr) if result.code != 0 else ""

    def drop(self, dbname: str) -> None:
        """Given a database the drill created, drop it; a failure is ignored (a throwaway
        server goes as a whole at the end)."""
        with suppress(PostgresError):
            self.connection(dbname).admin().psql(
                f"DROP DATABASE IF EXISTS {quote_ident(dbname)} WITH (FORCE);")
        if dbname in self._databases:
            self._databases.remove(dbname)
