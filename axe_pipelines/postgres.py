"""PostgreSQL side: client commands, the exported-snapshot session that makes row counts exact,
dump verification, and throwaway clusters (tests, demo, staging restores).

Every client tool runs as a child process (psql, pg_dump, pg_dumpall, pg_restore), optionally
behind an exec prefix such as `docker exec -i -e PGPASSWORD frame-postgres`, so a containerised
server needs no published port. Passwords travel in `PGPASSWORD` in the child's environment.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from axe_pipelines.config import Server
from axe_pipelines.errors import ItemFailed
from axe_pipelines.secrets import SecretError

MARKER = "__axe_end_of_result__"


class PostgresError(ItemFailed):
    """A PostgreSQL client step failed; the message names the server and what to do."""


def find_bin_dir(preferred: Path | None = None) -> Path:
    """Folder holding the client tools: `preferred`, the newest /usr/lib/postgresql/*/bin,
    then whatever `pg_dump` on PATH lives in."""
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


@dataclass(frozen=True)
class Connection:
    """How to run client tools against one database of one server."""

    server_name: str
    server: Server
    dbname: str

    @property
    def where(self) -> str:
        if self.server.exec:
            return f"{self.server_name} (via {' '.join(self.server.exec[:3])}…)"
        return f"{self.server_name} ({self.server.host or 'local socket'}:{self.server.port})"

    def tool(self, name: str) -> list[str]:
        """argv start for a client tool, with the exec prefix when configured."""
        if self.server.exec:
            # Inside a container the tools are on its PATH.
            return [*self.server.exec, name]
        return [str(find_bin_dir(self.server.bin_dir) / name)]

    def conn_args(self, *, with_db: bool = True) -> list[str]:
        args: list[str] = []
        if self.server.host:
            args += ["-h", self.server.host]
        args += ["-p", str(self.server.port)]
        if self.server.user:
            args += ["-U", self.server.user]
        if with_db:
            args += ["-d", self.dbname]
        return args

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PGPASSWORD", None)
        if self.server.password is not None:
            try:
                env["PGPASSWORD"] = self.server.password.resolve()
            except SecretError as exc:
                raise PostgresError(f"{self.where}: password source failed: {exc}") from None
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return env

    def with_db(self, dbname: str) -> Connection:
        return Connection(self.server_name, self.server, dbname)

    # --- commands ------------------------------------------------------------------------------

    def pg_dump_argv(self, *, snapshot: str | None, fmt: str = "custom") -> list[str]:
        argv = [*self.tool("pg_dump"), *self.conn_args(), "--no-password"]
        argv += ["-Fc", "-Z0"] if fmt == "custom" else ["-Fp"]
        if snapshot:
            argv.append(f"--snapshot={snapshot}")
        return argv

    def pg_dumpall_argv(self, *, globals_only: bool) -> list[str]:
        argv = [*self.tool("pg_dumpall"), *self.conn_args(with_db=False), "--no-password",
                "-l", self.dbname]
        if globals_only:
            argv.append("--globals-only")
        return argv

    def psql(self, sql: str, *, timeout: float = 120) -> list[list[str]]:
        """Runs SQL, returns rows (unaligned, tab separated); raises PostgresError."""
        argv = [*self.tool("psql"), *self.conn_args(), "-X", "-q", "-A", "-t", "-F", "\t",
                "-v", "ON_ERROR_STOP=1", "--no-password"]
        try:
            proc = subprocess.run(argv, input=sql, capture_output=True, text=True,
                                  env=self.env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PostgresError(
                f"{self.where}: query did not finish within {timeout:.0f} s") from None
        except FileNotFoundError as exc:
            raise PostgresError(f"{self.where}: {exc.filename} not found") from None
        if proc.returncode != 0:
            raise PostgresError(f"{self.where}/{self.dbname}: {_first_error(proc.stderr)}")
        return [line.split("\t") for line in proc.stdout.splitlines() if line]


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        line = line.strip()
        if line:
            return line.removeprefix("psql: ").removeprefix("error: ")
    return "failed with no message"


COUNTABLE_TABLES_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1;
"""


@dataclass
class SnapshotInfo:
    snapshot: str
    server_version: str
    row_counts: dict[str, int] = field(default_factory=dict)


class SnapshotSession:
    """Holds a REPEATABLE READ transaction open and exports its snapshot, so that row counts
    taken here and `pg_dump --snapshot` see exactly the same data. Use as a context manager;
    the transaction ends when the block does."""

    def __init__(self, conn: Connection, *, timeout: float = 600):
        self.conn = conn
        self.timeout = timeout
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SnapshotSession:
        argv = [*self.conn.tool("psql"), *self.conn.conn_args(), "-X", "-q", "-A", "-t",
                "-F", "\t", "-v", "ON_ERROR_STOP=1", "--no-password"]
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, bufsize=1,
                                          env=self.conn.env())
        except FileNotFoundError as exc:
            raise PostgresError(f"{self.conn.where}: {exc.filename} not found") from None
        return self

    def query(self, sql: str) -> list[list[str]]:
        """Runs SQL inside the held transaction; returns rows."""
        proc = self._proc
        assert proc is not None and proc.stdin and proc.stdout
        try:
            proc.stdin.write(f"{sql.rstrip()}\n\\echo {MARKER}\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        rows: list[list[str]] = []
        timer = threading.Timer(self.timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                if line == MARKER:
                    return rows
                if line:
                    rows.append(line.split("\t"))
        finally:
            timer.cancel()
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait()
        raise PostgresError(f"{self.conn.where}/{self.conn.dbname}: {_first_error(err)}")

    def export(self, *, count_rows: bool = True) -> SnapshotInfo:
        """Starts the transaction, exports its snapshot and (optionally) counts every table's
        rows inside it."""
        self.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")
        snapshot = self.query("SELECT pg_export_snapshot();")[0][0]
        version = self.query("SHOW server_version;")[0][0]
        info = SnapshotInfo(snapshot=snapshot, server_version=version)
        if count_rows:
            tables = [r[0] for r in self.query(COUNTABLE_TABLES_SQL)]
            if tables:
                union = "\nUNION ALL ".join(
                    f"SELECT {_sql_literal(t)}, count(*) FROM {t}" for t in tables)
                for name, count in self.query(union + ";"):
                    info.row_counts[name] = int(count)
        return info

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin:
                proc.stdin.write("COMMIT;\n\\q\n")
                proc.stdin.close()
            proc.wait(timeout=30)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- reading a dump back --------------------------------------------------------------------

_COPY_RE = re.compile(rb"^COPY (.+?) (?:\(.*\) )?FROM stdin;$")


@dataclass
class DumpContents:
    """What a dump holds: per table, the number of rows in its COPY section."""

    tables: dict[str, int]
    bytes: int


def count_script_rows(chunks: Iterable[bytes]) -> dict[str, int]:
    """Counts rows per table in a plain SQL dump script (COPY … FROM stdin sections), reading
    it in blocks of any size. Raises PostgresError when the script ends inside a COPY section.

    Inside a COPY section every line is one row (COPY escapes newlines in values) and the
    section ends with a line holding only `\\.`, so rows are counted with bytes.count on whole
    blocks instead of line by line.
    """
    counts: dict[str, int] = {}
    current: str | None = None
    n = 0
    buf = b""  # always starts at the beginning of a line
    for chunk in chunks:
        buf += chunk
        while buf:
            if current is None:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if line.startswith(b"COPY "):
                    m = _COPY_RE.match(line)
                    if m:
                        current, n = m.group(1).decode(), 0
                continue
            if buf.startswith(b"\\.\n"):
                counts[current], current, buf = n, None, buf[3:]
                continue
            end = buf.find(b"\n\\.\n")
            if end >= 0:
                n += buf.count(b"\n", 0, end + 1)
                counts[current], current, buf = n, None, buf[end + 4:]
                continue
            last = buf.rfind(b"\n")
            if last < 0:
                break
            n += buf.count(b"\n", 0, last + 1)
            buf = buf[last + 1:]
            break
    if current is not None:
        raise PostgresError(f"dump ends inside the data of {current}: it is truncated")
    return counts


def read_dump(stream: IO[bytes], *, fmt: str, bin_dir: Path | None = None) -> DumpContents:
    """Reads a whole dump from `stream` and returns its tables with row counts.

    A custom-format dump is run through `pg_restore -f -` (the SQL it would execute), which
    reads every data block, so a truncated or corrupt archive fails here. The stream is always
    read to the end, even when pg_restore stops early.
    """
    total = 0
    if fmt == "plain":
        def chunks() -> Iterator[bytes]:
            nonlocal total
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                yield chunk
        return DumpContents(tables=count_script_rows(chunks()), bytes=total)

    argv = [str(find_bin_dir(bin_dir) / "pg_restore"), "-f", "-"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin and proc.stdout and proc.stderr
    err_chunks: list[bytes] = []
    broken = threading.Event()

    def feed() -> None:
        nonlocal total
        while chunk := stream.read(1 << 20):
            total += len(chunk)
            if broken.is_set():
                continue  # keep draining the source
            try:
                proc.stdin.write(chunk)
            except (BrokenPipeError, OSError):
                broken.set()
        try:
            proc.stdin.close()
        except OSError:
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    err_reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()),
                                  daemon=True)
    err_reader.start()
    try:
        tables = count_script_rows(iter(lambda: proc.stdout.read(1 << 20), b""))
    except PostgresError:
        tables = None
    finally:
        while proc.stdout.read(1 << 20):
            pass
    feeder.join()
    code = proc.wait()
    err_reader.join(5)
    if code != 0 or tables is None:
        err = b"".join(err_chunks).decode(errors="replace").strip().splitlines()
        reason = err[0].removeprefix("pg_restore: error: ") if err else "truncated archive"
        raise PostgresError(f"pg_restore cannot read the dump: {reason}")
    return DumpContents(tables=tables, bytes=total)


# --- throwaway clusters ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A PostgreSQL cluster of its own in a folder, on a free loopback port (initdb + pg_ctl).

    As root, the server runs as the `postgres` system user (PostgreSQL refuses root). Used by the
    tests, the demo and staging restores.
    """

    def __init__(self, root: Path | None = None, *, password: str | None = None,
                 bin_dir: Path | None = None, port: int | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="axe-pg-"))
        self.data = self.root / "data"
        self.bin_dir = find_bin_dir(bin_dir)
        self.port = port or free_port()
        self.password = password
        self.user = "postgres"

    def _as_owner(self, argv: Sequence[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def start(self) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        if not (self.data / "PG_VERSION").exists():
            args = [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user,
                    "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"]
            pwfile = None
            if self.password is not None:
                pwfile = self.root / "pwfile"
                pwfile.write_text(self.password + "\n")
                if os.geteuid() == 0:
                    shutil.chown(pwfile, "postgres")
                pwfile.chmod(0o600)
                args += ["--auth-host=scram-sha-256", "--auth-local=trust",
                         f"--pwfile={pwfile}"]
            _checked(self._as_owner(args), "initdb")
            if pwfile:
                pwfile.unlink()
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off -c max_connections=40")
        _checked(self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                 "-l", str(self.root / "server.log"), "-w", "-t", "60",
                                 "start"]), "pg_ctl start")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data),
                                           "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=60)

    def server_config(self, **extra: object) -> dict[str, object]:
        """A `servers:` entry for customers.yaml reaching this cluster over loopback TCP."""
        return {"host": "127.0.0.1", "port": self.port, "user": self.user,
                "bin_dir": str(self.bin_dir), **extra}

    def psql(self, sql: str, dbname: str = "postgres") -> list[list[str]]:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        proc = subprocess.run([str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-F", "\t",
                               "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", self.user, "-d", dbname],
                              input=sql, capture_output=True, text=True, env=env, timeout=300)
        if proc.returncode != 0:
            raise PostgresError(f"local cluster :{self.port}/{dbname}: {proc.stderr.strip()}")
        return [ln.split("\t") for ln in proc.stdout.splitlines() if ln]

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _checked(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise PostgresError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")


def wait_for_backend(cluster: LocalCluster, application: str, dbname: str,
                     timeout: float = 30) -> int:
    """Returns the pid of a backend with that application_name, waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = cluster.psql("SELECT pid FROM pg_stat_activity WHERE application_name = "
                            f"{_sql_literal(application)} AND datname = {_sql_literal(dbname)} "
                            "AND state = 'active';")
        if rows:
            return int(rows[0][0])
        time.sleep(0.02)
    raise PostgresError(f"no active {application} backend on {dbname} within {timeout} s")
