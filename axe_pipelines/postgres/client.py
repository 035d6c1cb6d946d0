"""How axe talks to PostgreSQL: the connection, the one place that spawns the client tools
(psql, pg_dump, pg_dumpall, pg_restore, initdb, pg_ctl), SQL quoting and the libpq
environment.

A tool runs as a child process, optionally behind an exec prefix such as
`docker exec -i -e PGPASSWORD frame-postgres`, so a containerised server needs no published
port. Passwords travel in `PGPASSWORD` in the child's environment, never in its argv.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from axe_pipelines.config import Customer, Server
from axe_pipelines.errors import ItemFailed
from axe_pipelines.secrets import SecretError

Say = Callable[[str], None]
CONNECT_TIMEOUT = "10"  # seconds; an unreachable server fails fast instead of hanging a run


class PostgresError(ItemFailed):
    """A PostgreSQL step failed or was refused; the message names the server, what to do and
    whether anything was changed."""


# --- quoting -----------------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    """Given an identifier, return it double-quoted for SQL (`a"b` -> `"a""b"`)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Given a text, return it as a standard-conforming SQL string literal (`'it''s'`)."""
    return "'" + text.replace("'", "''") + "'"


# --- running the tools -------------------------------------------------------------------------


def find_bin_dir(preferred: Path | None = None) -> Path:
    """Given a configured `bin_dir` (or None), return the folder holding the client tools:
    `preferred`, else the newest /usr/lib/postgresql/*/bin, else the folder of `pg_dump` on
    PATH. Raise PostgresError if there is none."""
    if preferred is not None:
        return preferred
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: int(re.sub(r"\D", "", p.split("/")[-2]) or 0))
    if versions:
        return Path(versions[-1])
    found = shutil.which("pg_dump")
    if found:
        return Path(found).resolve().parent
    raise PostgresError("PostgreSQL client tools not found; install postgresql-client "
                        "or set bin_dir for the server in customers.yaml")


def local_tool(name: str, bin_dir: Path | None = None) -> str:
    """Given a tool name and an optional `bin_dir`, return the path of that tool on this
    machine (see find_bin_dir). Raise PostgresError if no client tools are installed."""
    return str(find_bin_dir(bin_dir) / name)


def first_line(exc: BaseException) -> str:
    """Given an exception, return the first line of its message (its type's name if none):
    the one line an operator's error shows."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def first_error(stderr: str) -> str:
    """Given a tool's stderr, return its first error line without the tool's prefix (the
    first non-empty line when none says error)."""
    lines = stderr.splitlines()
    errors = [ln for ln in lines if "error:" in ln.lower() or
              ln.startswith(("ERROR", "FATAL", "psql:"))]
    line = (errors or [ln for ln in lines if ln.strip()] or ["no message"])[0]
    for prefix in ("pg_restore: error: ", "psql: error: ", "pg_restore: ", "error: "):
        line = line.removeprefix(prefix)
    return line.strip()


@dataclass(frozen=True)
class ToolResult:
    """A finished tool: exit status, stdout (when captured) and stderr."""

    code: int
    stdout: str
    stderr: str


def spawn_tool(argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None,
               text: bool = False, stdin: IO[bytes] | int | None = None) -> subprocess.Popen:
    """Given a tool's argv, start it with piped stdout and stderr (and stdin, unless a file
    or subprocess.DEVNULL is given) for a caller that streams through it; return the process.
    Raise PostgresError naming `what` if the tool does not exist."""
    try:
        return subprocess.Popen(list(argv), env=dict(env) if env is not None else None,
                                stdin=stdin if stdin is not None else subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text,
                                bufsize=1 if text else -1)
    except FileNotFoundError as exc:
        raise PostgresError(f"{what}: {exc.filename} not found") from None


def run_tool(argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None,
             stdin: IO[bytes] | None = None, input: str | None = None,
             capture: bool = False, on_line: Say | None = None,
             timeout: float | None = None, check: bool = True) -> ToolResult:
    """Given a tool's argv, run it to the end: stdin from `input` or the file `stdin`
    (else none), stdout kept when `capture`, each stderr line passed to `on_line` as it comes.
    Return its exit status and output. Raise PostgresError naming `what` if the tool does not
    exist or outlives `timeout`, and with `check` if it was killed or exited non-zero (the
    message holds its first error line)."""
    proc = spawn_tool(argv, what=what, env=env, stdin=stdin if input is None else None)
    assert proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    # stdout is always read (a tool blocks on a full pipe), kept only when asked for.
    threads = [threading.Thread(target=_drain, args=(proc.stdout, out if capture else None),
                                daemon=True)]
    if proc.stdin is not None:
        threads.append(threading.Thread(target=_feed, args=(proc.stdin, (input or "").encode()),
                                        daemon=True))
    for thread in threads:
        thread.start()
    fired = threading.Event()
    killer = threading.Timer(timeout, lambda: (fired.set(), proc.kill())) if timeout else None
    if killer:
        killer.start()
    err: list[str] = []
    try:
        for raw in iter(proc.stderr.readline, b""):
            err.append(raw.decode(errors="replace").rstrip())
            if on_line:
                on_line(err[-1])
        code = proc.wait()
    finally:
        if killer:
            killer.cancel()
        for thread in threads:
            thread.join()
        proc.stderr.close()
    if fired.is_set():
        raise PostgresError(f"{what}: did not finish within {timeout:.0f} s")
    stderr = "\n".join(err)
    if check and code < 0:
        raise PostgresError(f"{what}: {Path(argv[0]).name} was killed "
                            f"({signal.Signals(-code).name})")
    if check and code != 0:
        raise PostgresError(f"{what}: {first_error(stderr)}")
    return ToolResult(code, b"".join(out).decode(errors="replace"), stderr)


def _drain(pipe: IO[bytes], keep: list[bytes] | None) -> None:
    while chunk := pipe.read(1 << 16):
        if keep is not None:
            keep.append(chunk)
    pipe.close()


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
    except OSError:
        pass  # the tool stopped reading (BrokenPipeError); its exit status says why
    finally:
        try:
            pipe.close()
        except OSError:
            pass


# --- the connection ----------------------------------------------------------------------------

PSQL_FLAGS = ("-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "--no-password")


@dataclass(frozen=True)
class Connection:
    """How to run client tools against one database of one server."""

    server_name: str
    server: Server
    dbname: str

    @property
    def where(self) -> str:
        """The server as an operator knows it, for messages (never a password)."""
        if self.server.exec:
            return f"{self.server_name} (via {' '.join(self.server.exec[:3])}…)"
        return f"{self.server_name} ({self.server.host or 'local socket'}:{self.server.port})"

    def tool(self, name: str) -> list[str]:
        """Given a tool name, return the start of its argv: with the exec prefix when one is
        configured, else the tool in the server's bin_dir. Raise PostgresError if no client
        tools are installed."""
        if self.server.exec:
            # Inside a container the tools are on its PATH.
            return [*self.server.exec, name]
        return [local_tool(name, self.server.bin_dir)]

    def conn_args(self, *, with_db: bool = True) -> list[str]:
        """Return the -h/-p/-U (and -d unless `with_db` is false) arguments for a tool."""
        args: list[str] = []
        if self.server.host:
            args += ["-h", self.server.host]
        args += ["-p", str(self.server.port)]
        if self.server.user:
            args += ["-U", self.server.user]
        if with_db:
            args += ["-d", self.dbname]
        return args

    def libpq_env(self, *, target: bool = False) -> dict[str, str]:
        """Return only the libpq variables a child needs: PGPASSWORD (when the server has a
        password) and PGCONNECT_TIMEOUT; with `target` also PGHOST, PGPORT, PGDATABASE and
        PGUSER naming this database (for command checks). Raise PostgresError if the
        password source fails."""
        env = {"PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)}
        if self.server.password is not None:
            try:
                env["PGPASSWORD"] = self.server.password.resolve()
            except SecretError as exc:
                raise PostgresError(f"{self.where}: password source failed: {exc}") from None
        if target:
            if self.server.host:
                env["PGHOST"] = self.server.host
            env["PGPORT"] = str(self.server.port)
            env["PGDATABASE"] = self.dbname
            if self.server.user:
                env["PGUSER"] = self.server.user
        return env

    def env(self, *, target: bool = False) -> dict[str, str]:
        """Return this process's environment with libpq_env(target=...) on top; an inherited
        PGPASSWORD is dropped so that a server without a password never gets another's. Raise
        PostgresError if the password source fails."""
        env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        env.update(self.libpq_env(target=target))
        return env

    def with_db(self, dbname: str) -> Connection:
        """Given a database name, return the same server's connection to it."""
        return Connection(self.server_name, self.server, dbname)

    def admin(self) -> Connection:
        """Return the server's maintenance database, for CREATE/ALTER/DROP DATABASE."""
        return self.with_db("postgres")

    def psql(self, sql: str, *, timeout: float = 120) -> list[list[str]]:
        """Given SQL, run it with psql (stop on the first error) and return the rows
        (unaligned, tab separated). Raise PostgresError naming the server if it fails or
        outlives `timeout` seconds."""
        result = run_tool([*self.tool("psql"), *self.conn_args(), *PSQL_FLAGS], input=sql,
                          capture=True, env=self.env(), timeout=timeout,
                          what=f"{self.where}/{self.dbname}")
        return [line.split("\t") for line in result.stdout.splitlines() if line]


def connection_for(customer: Customer, db_name: str) -> Connection:
    """Given a customer and one of its database names, return the connection to it."""
    db = customer.databases[db_name]
    return Connection(db.server, customer.servers[db.server], customer.database_name(db_name))


def server_connection(customer: Customer, server_name: str) -> Connection:
    """Given a customer and one of its servers, return a connection to the server's first
    configured database (for server-wide tools: pg_dumpall, roles)."""
    db_name = next(n for n, d in customer.databases.items() if d.server == server_name)
    return Connection(server_name, customer.servers[server_name], customer.database_name(db_name))
