"""Tier A: the night's backup set of one customer, as plain functions.

`plan_tier_a` lists what goes into the set (one item per database dump, per server's roles and
optional pg_dumpall, per folder). `run_tier_a` backs the items up into the local repository —
servers in parallel lanes, one item at a time per server — and reports progress. `coverage`
says what the set lacks. `verify_dump` reads a dump back and compares it with the row counts
taken when it was made.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from axe_pipelines.config import Customer, tier_timezone
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.postgres.dump import (
    SnapshotSession,
    pg_dump_argv,
    pg_dumpall_argv,
    read_dump,
)
from axe_pipelines.restic import BackupIncomplete, Repository, Restic, ResticError, Snapshot
from axe_pipelines.secrets import SecretError

ItemKind = Literal["pgdump", "roles", "dumpall", "files"]
TAG_TOOL = "axe-pipelines"


@dataclass(frozen=True)
class Item:
    """One member of the night's set."""

    kind: ItemKind
    name: str  # database, server or folder name from customers.yaml
    server: str | None = None

    @property
    def label(self) -> str:
        return {"pgdump": "db", "roles": "roles", "dumpall": "dumpall", "files": "files"}[
            self.kind] + f"/{self.name}"

    @property
    def lane(self) -> str:
        """Items of one lane run one after another; lanes run in parallel."""
        return f"server:{self.server}" if self.server else "folders"

    def tags(self, customer: str, run_id: str) -> list[str]:
        key = {"pgdump": "database", "roles": "server", "dumpall": "server",
               "files": "folder"}[self.kind]
        return [TAG_TOOL, f"customer={customer}", f"kind={self.kind}", f"{key}={self.name}",
                f"run={run_id}"]


@dataclass
class ItemResult:
    item: Item
    ok: bool
    snapshot_id: str | None = None
    bytes_read: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    duration_s: float = 0.0
    error: str | None = None
    path: str | None = None  # the file name inside the snapshot (dumps) or the folder
    format: str | None = None
    server_version: str | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    skipped: bool = False


@dataclass
class TierAResult:
    customer: str
    run_id: str
    at: datetime
    repository: str
    results: list[ItemResult]
    snapshots: list[Snapshot] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if not r.ok and not r.skipped]

    @property
    def ok(self) -> bool:
        return not self.failed


class Reporter(Protocol):
    def start(self, item: Item) -> None: ...
    def progress(self, item: Item, bytes_done: int) -> None: ...
    def finish(self, result: ItemResult) -> None: ...


class NullReporter:
    def start(self, item: Item) -> None:
        pass

    def progress(self, item: Item, bytes_done: int) -> None:
        pass

    def finish(self, result: ItemResult) -> None:
        pass


def local_repository(customer_name: str, customer: Customer) -> Repository:
    assert customer.tiers is not None
    tier = customer.tiers.local
    return Repository(location=str(tier.repository.expanduser()), password=tier.password,
                      label=f"tier A repository of {customer_name} "
                            f"({tier.repository.expanduser()})")


def local_restic(customer_name: str, customer: Customer, **kwargs: object) -> Restic:
    return Restic(local_repository(customer_name, customer), timezone=tier_timezone(customer),
                  **kwargs)  # type: ignore[arg-type]


def plan_tier_a(customer: Customer) -> list[Item]:
    """Every item the night's set must hold, in a stable order."""
    items: list[Item] = []
    for server_name, server in customer.servers.items():
        if not any(db.server == server_name for db in customer.databases.values()):
            continue
        if server.roles:
            items.append(Item("roles", server_name, server_name))
        if server.dumpall:
            items.append(Item("dumpall", server_name, server_name))
    for db_name, db in customer.databases.items():
        items.append(Item("pgdump", db_name, db.server))
    for folder_name in customer.folders:
        items.append(Item("files", folder_name))
    return items


def dump_filename(customer: Customer, item: Item) -> str:
    if item.kind == "pgdump":
        fmt = customer.databases[item.name].format
        return f"{item.name}.pgdump" if fmt == "custom" else f"{item.name}.sql"
    return f"{item.name}.{item.kind}.sql"


def _server_connection(customer: Customer, server_name: str) -> Connection:
    """A connection to a server's first configured database (for server-wide tools)."""
    db_name = next(n for n, d in customer.databases.items() if d.server == server_name)
    return Connection(server_name, customer.servers[server_name], customer.database_name(db_name))


# restic passes the dump tool's stderr on only as far as it gets before restic itself exits,
# so the tool's own reason ("Dumping the contents of table … failed") is sometimes lost. The
# dump runs under `sh` with its stderr appended to a file of ours as well (the file's name is
# in the environment, the argv carries nothing new).
_STDERR_TO_FILE = 'exec 2>>"$AXE_DUMP_STDERR"; exec "$@"'


def _dump_command(argv: Sequence[str], conn: Connection, errfile: Path,
                  ) -> tuple[list[str], dict[str, str]]:
    return (["sh", "-c", _STDERR_TO_FILE, "sh", *argv],
            {**conn.libpq_env(), "AXE_DUMP_STDERR": str(errfile)})


def backup_item(restic: Restic, customer_name: str, customer: Customer, item: Item, *,
                at: datetime, run_id: str, reporter: Reporter) -> ItemResult:
    """Backs up one item into the repository; never raises for an operational failure."""
    started = time.monotonic()
    result = ItemResult(item=item, ok=False)
    tags = item.tags(customer_name, run_id)
    errfd, errname = tempfile.mkstemp(prefix="axe-dump-", suffix=".stderr")
    os.close(errfd)
    errfile = Path(errname)

    def progress(n: int) -> None:
        reporter.progress(item, n)

    try:
        if item.kind == "files":
            folder = customer.folders[item.name]
            path = folder.path.expanduser()
            result.path = str(path)
            if not path.exists():
                if folder.required:
                    raise PostgresError(f"required folder {path} does not exist (is its volume "
                                        f"mounted?); nothing was backed up for it")
                result.skipped, result.error = True, f"optional folder {path} does not exist"
                return result
            excludes = folder.excludes_file.expanduser() if folder.excludes_file else None
            if excludes is not None and not excludes.is_file():
                raise PostgresError(f"excludes file {excludes} for folder {item.name} does not "
                                    f"exist; create it (it may be empty) or remove the setting")
            summary = restic.backup_paths([path], tags=tags, at=at, exclude_file=excludes,
                                          on_progress=progress)
        else:
            assert item.server is not None
            if item.kind == "pgdump":
                db = customer.databases[item.name]
                conn = Connection(item.server, customer.servers[item.server],
                                  customer.database_name(item.name))
                result.format = db.format
                result.path = dump_filename(customer, item)
                with SnapshotSession(conn) as session:
                    info = session.export()
                    result.server_version = info.server_version
                    result.row_counts = info.row_counts
                    argv, env = _dump_command(
                        pg_dump_argv(conn, snapshot=info.snapshot, fmt=db.format), conn, errfile)
                    summary = restic.backup_command(argv, filename=result.path, tags=tags,
                                                    at=at, on_progress=progress, env_extra=env)
            else:
                conn = _server_connection(customer, item.server)
                # restic would only say "command failed"; asking first gives the server's reason.
                conn.psql("SELECT 1;")
                result.format = "plain"
                result.path = dump_filename(customer, item)
                argv, env = _dump_command(
                    pg_dumpall_argv(conn, globals_only=item.kind == "roles"), conn, errfile)
                summary = restic.backup_command(argv, filename=result.path, tags=tags, at=at,
                                                on_progress=progress, env_extra=env)
        result.ok = True
        result.snapshot_id = summary.snapshot_id
        result.bytes_read = summary.bytes_read
        result.bytes_added = summary.bytes_added
        result.bytes_stored = summary.bytes_stored
    except BackupIncomplete as exc:
        # restic wrote a snapshot that lacks files: mark it so nothing treats it as good.
        result.error = str(exc)
        if exc.snapshot_id:
            try:
                restic.tag(exc.snapshot_id, ["incomplete"])
            except ResticError:
                pass
    except (ResticError, PostgresError, SecretError, OSError) as exc:
        result.error = _one_line(exc, item, errfile.read_text(errors="replace"))
    finally:
        errfile.unlink(missing_ok=True)
        result.duration_s = time.monotonic() - started
    return result


def _one_line(exc: BaseException, item: Item, child_stderr: str = "") -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = "\n".join(filter(None, [child_stderr, getattr(exc, "detail", "")]))
    if "command failed" in text and detail:
        # restic says only "command failed: exit status N"; the dump tool's own message went
        # to restic's stderr, which is in the detail.
        tool = "pg_dump" if item.kind == "pgdump" else "pg_dumpall"
        # restic passes the child's stderr on as "subprocess pg_dump: pg_dump: error: …".
        said = [ln.split(f"{tool}: error:", 1)[1].strip() for ln in detail.splitlines()
                if f"{tool}: error:" in ln]
        reason = f": {said[0]}" if said else "; see the server log or run `axe doctor`"
        text = f"{text} ({tool} for {item.label} failed{reason})"
    return text


def run_tier_a(customer_name: str, customer: Customer, *, at: datetime, run_id: str,
               items: Iterable[Item] | None = None, reporter: Reporter | None = None,
               restic: Restic | None = None) -> TierAResult:
    """Backs up `items` (default: the whole plan) and returns per-item results plus the
    snapshots the repository now holds for this run (read back, not assumed)."""
    assert customer.tiers is not None
    reporter = reporter or NullReporter()
    restic = restic or local_restic(customer_name, customer)
    todo = list(items) if items is not None else plan_tier_a(customer)
    started = time.monotonic()
    lanes: dict[str, list[Item]] = {}
    for item in todo:
        lanes.setdefault(item.lane, []).append(item)
    results: dict[Item, ItemResult] = {}
    lock = threading.Lock()

    def run_lane(lane_items: Sequence[Item]) -> None:
        for item in lane_items:
            reporter.start(item)
            res = backup_item(restic, customer_name, customer, item, at=at, run_id=run_id,
                              reporter=reporter)
            with lock:
                results[item] = res
            reporter.finish(res)

    workers = max(1, min(customer.tiers.local.parallel_servers, len(lanes)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="axe-lane") as pool:
        for f in [pool.submit(run_lane, lane) for lane in lanes.values()]:
            f.result()
    ordered = [results[i] for i in todo]
    snapshots: list[Snapshot] = []
    if any(r.ok for r in ordered):
        snapshots = restic.snapshots(tags=[f"customer={customer_name}", f"run={run_id}"])
    return TierAResult(customer=customer_name, run_id=run_id, at=at,
                       repository=restic.repo.location, results=ordered, snapshots=snapshots,
                       wall_s=time.monotonic() - started)


@dataclass(frozen=True)
class Gap:
    item: Item
    reason: str


def coverage(customer: Customer, snapshots: Iterable[Snapshot]) -> list[Gap]:
    """What the set lacks: every configured database, roles/dumpall item and required folder
    must have a complete snapshot among `snapshots`."""
    present = {(s.tag("kind"), s.tag("database") or s.tag("server") or s.tag("folder"))
               for s in snapshots if "incomplete" not in s.tags}
    gaps = []
    for item in plan_tier_a(customer):
        if (item.kind, item.name) in present:
            continue
        if item.kind == "files":
            folder = customer.folders[item.name]
            if not folder.required:
                continue
            reason = f"required folder {folder.path.expanduser()} is not in the set"
        elif item.kind == "pgdump":
            db = customer.databases[item.name]
            reason = (f"database {customer.database_name(item.name)} on {db.server} "
                      f"is not in the set")
        else:
            reason = f"{item.kind} of server {item.server} is not in the set"
        gaps.append(Gap(item, reason))
    return gaps


@dataclass
class DumpCheck:
    ok: bool
    tables_in_dump: int
    rows_in_dump: int
    bytes: int
    problems: list[str]


def verify_dump(restic: Restic, snapshot_id: str, path: str, *, fmt: str,
                expected_counts: dict[str, int], bin_dir: Path | None = None) -> DumpCheck:
    """Reads the dump out of the repository and checks that it is complete and holds every
    counted table with exactly the counted number of rows."""
    with restic.dump(snapshot_id, "/" + path.lstrip("/")) as stream:
        contents = read_dump(stream, fmt=fmt, bin_dir=bin_dir)
    problems = []
    for table, want in sorted(expected_counts.items()):
        got = contents.tables.get(table)
        if got is None:
            problems.append(f"{table}: missing from the dump")
        elif got != want:
            problems.append(f"{table}: {got} rows in the dump, {want} counted at dump time")
    return DumpCheck(ok=not problems, tables_in_dump=len(contents.tables),
                     rows_in_dump=sum(contents.tables.values()), bytes=contents.bytes,
                     problems=problems)


def summarize(results: Sequence[ItemResult], wall_s: float) -> list[dict[str, object]]:
    """Rows for the result table: one per item plus a total."""
    rows: list[dict[str, object]] = []
    for r in results:
        rows.append({"item": r.item.label, "status": "ok" if r.ok else
                     ("skipped" if r.skipped else "FAILED"),
                     "snapshot": (r.snapshot_id or "")[:8], "read": r.bytes_read,
                     "added": r.bytes_added, "seconds": round(r.duration_s, 2)})
    failed = sum(1 for r in results if not r.ok and not r.skipped)
    rows.append({"item": "total", "status": f"{failed} failed" if failed else "ok",
                 "snapshot": "", "read": sum(r.bytes_read for r in results),
                 "added": sum(r.bytes_added for r in results), "seconds": round(wall_s, 2)})
    return rows
