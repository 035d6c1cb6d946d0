"""Tier A: the night's backup set of one customer, as plain functions.

`plan_tier_a` lists what goes into the set (one item per database dump, per server's roles and
optional pg_dumpall, per folder). `run_tier_a` backs the items up into the local repository —
servers in parallel lanes, `parallel_items` at a time per server (lanes.py) — and reports
progress. `coverage`
says what the set lacks. Reading a dump back (the restorable check) is readback.py; progress
reporters and the result table are progress.py.
"""

from __future__ import annotations

import copy
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from axe_pipelines import interrupt
from axe_pipelines.config import Customer, tier_timezone
from axe_pipelines.coverage import Gap, coverage  # noqa: F401 - re-exported
from axe_pipelines.dump_proof import failure_line, verified_dump
from axe_pipelines.errors import ItemFailed
from axe_pipelines.instance.owner import release, run_dir, sweep
from axe_pipelines.lanes import run_in_lanes
from axe_pipelines.physical_item import backup_base, physical_items
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.postgres.dump import SnapshotSession, pg_dump_argv, pg_dumpall_argv
from axe_pipelines.postgres.physical import base_filename
from axe_pipelines.progress import NullReporter, Reporter
from axe_pipelines.readback import DumpCheck
from axe_pipelines.restic import (
    BackupIncomplete,
    BackupSummary,
    Repository,
    Restic,
    ResticError,
    Snapshot,
)
from axe_pipelines.restic.warm import pool_for
from axe_pipelines.secrets import SecretError
from axe_pipelines.set_meta import SetMetaWriter

ItemKind = Literal["pgdump", "roles", "dumpall", "files", "physical"]
TAG_TOOL = "axe-pipelines"


@dataclass(frozen=True)
class Item:
    """One member of the night's set."""

    kind: ItemKind
    name: str  # database, server or folder name from customers.yaml
    server: str | None = None

    @property
    def label(self) -> str:
        """Return the item as the operator reads it: `db/frame`, `roles/frame-postgres`."""
        return {"pgdump": "db", "roles": "roles", "dumpall": "dumpall", "files": "files",
                "physical": "physical"}[self.kind] + f"/{self.name}"

    @property
    def lane(self) -> str:
        """Items of one lane run one after another; lanes run in parallel."""
        return f"server:{self.server}" if self.server else "folders"

    def tags(self, customer: str, run_id: str) -> list[str]:
        """Given the customer and the Dagster run, return the item's snapshot tags (a set is
        one run's snapshots; restore and coverage find members by these)."""
        key = {"pgdump": "database", "roles": "server", "dumpall": "server",
               "files": "folder", "physical": "server"}[self.kind]
        return [TAG_TOOL, f"customer={customer}", f"kind={self.kind}", f"{key}={self.name}",
                f"run={run_id}"]


@dataclass
class ItemResult:
    """How one item's backup went: its snapshot and bytes, or its one-line error; `skipped`
    for an optional folder that is absent. A dump also records its exact row counts."""

    item: Item
    ok: bool
    snapshot_id: str | None = None
    bytes_read: int = 0
    bytes_added: int = 0
    duration_s: float = 0.0
    error: str | None = None
    path: str | None = None  # the file name inside the snapshot (dumps) or the folder
    format: str | None = None
    server_version: str | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    table_digests: dict[str, str | None] = field(default_factory=dict)  # checksum_tables
    skipped: bool = False
    proof: DumpCheck | None = None  # what the verifier proved while restic stored the dump


@dataclass
class TierAResult:
    """One tier-A run: every item's result and the snapshots the repository holds for it."""

    customer: str
    run_id: str
    at: datetime
    repository: str
    results: list[ItemResult]
    snapshots: list[Snapshot] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> list[ItemResult]:
        """Return the items that failed (a skipped optional folder did not)."""
        return [r for r in self.results if not r.ok and not r.skipped]

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return not self.failed


def local_repository(customer_name: str, customer: Customer) -> Repository:
    """Given a customer with tier A, return its tier-A repository (location, password)."""
    assert customer.tiers is not None
    tier = customer.tiers.local
    return Repository(location=str(tier.repository.expanduser()), password=tier.password,
                      label=f"tier A repository of {customer_name} "
                            f"({tier.repository.expanduser()})")


def local_restic(customer_name: str, customer: Customer) -> Restic:
    """Given a customer with tier A, return a Restic for its tier-A repository, stamping
    snapshot times in the tier's zone. Raise ResticNotFound without a usable restic."""
    assert customer.tiers is not None
    tier = customer.tiers.local
    # A call that only reads metadata (list, tag, unlock) shows no progress, so all of it is
    # idle time: the idle bound is its bound; a backup's stream is stopped after
    # idle_timeout_s without bytes; a restore, prune or check has the wall bound.
    return Restic(local_repository(customer_name, customer), timezone=tier_timezone(customer),
                  timeout=tier.timeout_s, idle_timeout=tier.idle_timeout_s,
                  call_timeout=tier.idle_timeout_s)


def plan_tier_a(customer: Customer) -> list[Item]:
    """Given a customer, return every item the night's set must hold, in a stable order:
    each server's roles (and dumpall), each database, each folder."""
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
    items += physical_items(customer)  # after its server's dumps, in the server's lane
    for folder_name in customer.folders:
        items.append(Item("files", folder_name))
    return items


def dump_filename(customer: Customer, item: Item) -> str:
    """Given a dump item, return its file name inside the snapshot (`frame.pgdump`,
    `hive.sql` for a plain dump, `frame-postgres.roles.sql`)."""
    if item.kind == "pgdump":
        fmt = customer.databases[item.name].format
        return f"{item.name}.pgdump" if fmt == "custom" else f"{item.name}.sql"
    if item.kind == "physical":
        return base_filename(item.name)
    return f"{item.name}.{item.kind}.sql"


def _server_connection(customer: Customer, server_name: str) -> Connection:
    """A connection to a server's maintenance database (`maintenance_db`, default postgres)
    for server-wide tools: a backed-up database that is gone or misnamed must not fail the
    roles and pg_dumpall items too."""
    server = customer.servers[server_name]
    return Connection(server_name, server, server.maintenance_db)


# restic passes the dump tool's stderr on only as far as it gets before restic itself exits,
# so the tool's own reason ("Dumping the contents of table … failed") is sometimes lost. The
# dump runs under `sh` with its stderr appended to a file of ours as well (the file's name is
# in the environment, the argv carries nothing new).
_STDERR_TO_FILE = 'exec 2>>"$AXE_DUMP_STDERR"; exec "$@"'


def _dump_command(argv: Sequence[str], conn: Connection, errfile: Path,
                  ) -> tuple[list[str], dict[str, str]]:
    return (["sh", "-c", _STDERR_TO_FILE, "sh", *argv],
            {**conn.libpq_env(), "AXE_DUMP_STDERR": str(errfile)})


class ItemError(ItemFailed):
    """An item cannot be backed up as configured (a required folder or its excludes file is
    missing); the message says what to fix."""


@dataclass(frozen=True)
class _Job:
    """What backing up one item needs besides the item: where, with which tags and time, and
    where its progress and the dump tool's stderr go."""

    restic: Restic
    customer: Customer
    tags: list[str]
    at: datetime
    progress: Callable[[int], None]
    errfile: Path
    counted: Callable[[ItemResult], None] = lambda _result: None  # a dump's counts taken


def _backup_folder(job: _Job, item: Item, result: ItemResult) -> BackupSummary | None:
    """restic backup of one folder with its excludes; None when an optional folder is absent."""
    folder = job.customer.folders[item.name]
    path = folder.path.expanduser()
    result.path = str(path)
    if not path.exists():
        if folder.required:
            raise ItemError(f"required folder {path} does not exist (is its volume mounted?); "
                            f"nothing was backed up for it")
        result.skipped, result.error = True, f"optional folder {path} does not exist"
        return None
    excludes = folder.excludes_file.expanduser() if folder.excludes_file else None
    if excludes is not None and not excludes.is_file():
        raise ItemError(f"excludes file {excludes} for folder {item.name} does not exist; "
                        f"create it (it may be empty) or remove the setting")
    return job.restic.backup_paths([path], tags=job.tags, at=job.at, exclude_file=excludes,
                                   on_progress=job.progress)


def _backup_database(job: _Job, item: Item, result: ItemResult) -> BackupSummary:
    """pg_dump of one database inside an exported snapshot whose row counts it records,
    streamed into restic."""
    assert item.server is not None
    customer = job.customer
    db = customer.databases[item.name]
    conn = Connection(item.server, customer.servers[item.server],
                      customer.database_name(item.name))
    result.format = db.format
    result.path = dump_filename(customer, item)
    with SnapshotSession(conn) as session:
        info = session.export(digest_tables=db.checksum_tables)
        result.server_version = info.server_version
        result.row_counts = info.row_counts
        result.table_digests = info.table_digests
        job.counted(result)
        # Verify while writing (dump_proof.py): a dump that is incomplete or disagrees with
        # these counts makes the command fail, so restic stores no snapshot of it.
        verifier = verified_dump(pg_dump_argv(conn, snapshot=info.snapshot, fmt=db.format),
                                 conn.libpq_env(), fmt=db.format, counts=info.row_counts,
                                 errfile=job.errfile)
        try:
            summary = job.restic.backup_command(
                verifier.argv, filename=result.path, tags=job.tags, at=job.at,
                on_progress=job.progress, env_extra=verifier.env)
        except ResticError as exc:
            reason = verifier.reason()
            if reason:  # the verifier stopped it: its reason, not restic's "exit status 1"
                raise ItemError(f"{job.restic.repo.label}: the dump of {item.label} was not "
                                f"stored: {reason}") from exc
            raise
        finally:
            result.proof = verifier.proof()
            verifier.remove()
        return summary


def _backup_server(job: _Job, item: Item, result: ItemResult) -> BackupSummary:
    """pg_dumpall of a server (its roles only, or everything), streamed into restic."""
    assert item.server is not None
    conn = _server_connection(job.customer, item.server)
    # restic would only say "command failed"; asking first gives the server's reason.
    conn.psql("SELECT 1;")
    result.format = "plain"
    result.path = dump_filename(job.customer, item)
    argv, env = _dump_command(pg_dumpall_argv(conn, globals_only=item.kind == "roles"), conn,
                              job.errfile)
    return job.restic.backup_command(argv, filename=result.path, tags=job.tags, at=job.at,
                                     on_progress=job.progress, env_extra=env)


def backup_item(restic: Restic, customer_name: str, customer: Customer, item: Item, *,
                at: datetime, run_id: str, reporter: Reporter,
                counted: Callable[[ItemResult], None] | None = None) -> ItemResult:
    """Given one item of the plan, back it up into the repository with the run's tags and
    logical time `at` and return its ItemResult (`counted` is told a dump's result once its
    counts are taken). Never raise for an operational failure: it is the result's one-line
    `error` (an incomplete folder snapshot is tagged `incomplete`)."""
    started = time.monotonic()
    result = ItemResult(item=item, ok=False)
    # In the run's own folder, so a killed run's file is removed by the next run (owner.py).
    errfd, errname = tempfile.mkstemp(prefix="axe-dump-", suffix=".stderr", dir=run_dir(run_id))
    os.close(errfd)
    job = _Job(restic, customer, item.tags(customer_name, run_id), at,
               lambda n: reporter.progress(item, n), Path(errname), counted or (lambda _r: None))
    backup = {"files": _backup_folder, "pgdump": _backup_database,
              "physical": backup_base}.get(item.kind, _backup_server)
    try:
        summary = backup(job, item, result)
        if summary is not None:
            result.ok = True
            result.snapshot_id = summary.snapshot_id
            result.bytes_read = summary.bytes_read
            result.bytes_added = summary.bytes_added
    except BackupIncomplete as exc:
        # restic wrote a snapshot that lacks files: mark it so nothing treats it as good.
        result.error = str(exc)
        if exc.snapshot_id:
            try:
                restic.tag(exc.snapshot_id, ["incomplete"])
            except ResticError:
                pass
    except (ResticError, PostgresError, ItemError, SecretError, OSError) as exc:
        try:
            child_stderr = job.errfile.read_text(errors="replace")
        except OSError:  # the run's folder is gone: the error alone says what failed
            child_stderr = ""
        result.error = _one_line(exc, item, child_stderr)
    finally:
        job.errfile.unlink(missing_ok=True)
        result.duration_s = time.monotonic() - started
    return result


def _one_line(exc: BaseException, item: Item, child_stderr: str = "") -> str:
    tool = {"pgdump": "pg_dump", "physical": "pg_basebackup"}.get(item.kind, "pg_dumpall")
    return failure_line(exc, item.label, tool, child_stderr)


def run_tier_a(customer_name: str, customer: Customer, *, at: datetime, run_id: str,
               items: Iterable[Item] | None = None, reporter: Reporter | None = None,
               restic: Restic | None = None,
               cancel: threading.Event | None = None) -> TierAResult:
    """Given the logical time and run id, back up `items` (default: the whole plan), servers
    in parallel lanes and `parallel_items` of one server at once, and return the TierAResult:
    per-item results plus the snapshots restic reported storing for this run (each
    `restic backup --json` summary names its snapshot). Items fail one by one; never raise
    for an item's failure. Once `cancel` is set (early_run.py), no further item starts."""
    assert customer.tiers is not None
    tier = customer.tiers.local
    reporter = reporter or NullReporter()
    restic = restic or local_restic(customer_name, customer)
    todo = list(items) if items is not None else plan_tier_a(customer)
    started = time.monotonic()
    results: dict[Item, ItemResult] = {}
    lock = threading.Lock()

    def run_one(item: Item) -> None:
        if interrupt.requested() or (cancel is not None and cancel.is_set()):
            # Ctrl-C / SIGTERM: what runs now is being stopped; nothing new starts.
            why = "interrupted" if interrupt.requested() else "its run ended before it"
            res = ItemResult(item=item, ok=False, error=f"not started: {why}")
        else:
            reporter.start(item)
            res = backup_item(restic, customer_name, customer, item, at=at, run_id=run_id,
                              reporter=reporter, counted=meta.counted)
        with lock:
            results[item] = res
        reporter.finish(res)

    warm = pool_for(run_id)  # backups `axe backup` started ahead of this run (warm.py)
    if warm is not None:
        restic = copy.copy(restic)
        restic.warm = warm
    base = [TAG_TOOL, f"customer={customer_name}"]
    meta = SetMetaWriter(restic, base, at, run_id, [i for i in todo if i.kind == "pgdump"])
    sweep()  # a killed run's scratch files (its process is provably gone)
    try:
        run_in_lanes(todo, lambda i: i.lane, run_one, lanes_at_once=tier.parallel_servers,
                     per_lane=tier.parallel_items)
        stored_meta = meta.finish([results[i] for i in todo])
    finally:
        if warm is not None:
            warm.close()  # what this run did not claim: no snapshot, no lock
        release(run_id)
    ordered = [results[i] for i in todo]
    snapshots = [_stored(r, r.item.tags(customer_name, run_id), at) for r in ordered
                 if r.ok and r.snapshot_id]
    if stored_meta is not None:
        snapshots.append(stored_meta)
    return TierAResult(customer=customer_name, run_id=run_id, at=at,
                       repository=restic.repo.location, results=ordered, snapshots=snapshots,
                       wall_s=time.monotonic() - started)


def _stored(result: ItemResult, tags: list[str], at: datetime) -> Snapshot:
    """The snapshot restic reported storing for an item, as `restic snapshots` would list it
    (no read-back: one more process opening the repository costs half a second)."""
    assert result.snapshot_id and result.path
    path = result.path if result.item.kind == "files" else "/" + result.path
    return Snapshot(id=result.snapshot_id, short_id=result.snapshot_id[:8], time=at,
                    tags=tuple(tags), paths=(path,), hostname=socket.gethostname())
