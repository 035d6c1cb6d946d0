"""A set's own record of what tier A measured at dump time, kept inside the repository.

The row counts and `checksum_tables` digests tier A takes inside each dump's exported
snapshot are recorded in Dagster's history, but a rebuilt machine whose DAGSTER_HOME is lost
(the disaster a drill rehearses) has none of it. So tier A also writes, once the last dump's
counts are taken, one small snapshot tagged `kind=set-meta` and the run's `run=`: a JSON
file holding, per dump, its snapshot id (None for a dump still streaming then: it is stored
alongside the last dumps, not after them), row counts and digests. Being a member of the
set by its `run=` tag, it is copied to tiers B and C with the set and forgotten with it; one
snapshot per set, not one per dump, because every restic process costs about half a second
of key derivation.

Coverage (backup.coverage) and BackupSet.member look items up by kind and name, so this
member is neither a missing nor an extra item.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from axe_pipelines import interrupt
from axe_pipelines.restic import Restic, ResticError, Snapshot

if TYPE_CHECKING:
    from axe_pipelines.sets import BackupSet

SET_META_KIND = "set-meta"
SET_META_FILE = "axe-set-meta.json"
_VERSION = 1


class _DumpResult(Protocol):
    """What this module reads of backup.ItemResult (duck-typed: backup.py imports us)."""

    ok: bool
    snapshot_id: str | None
    row_counts: dict[str, int]
    table_digests: dict[str, str | None]

    @property
    def item(self) -> Any: ...


def set_meta_content(run_id: str, results: Iterable[_DumpResult],
                     in_flight: Iterable[_DumpResult] = ()) -> dict[str, Any] | None:
    """Given a tier-A run's item results (and the dumps whose counts are taken and whose
    backup is still under way), return the set-meta JSON data (per database: the dump's
    snapshot id, None while under way, row counts, digests), or None when there is no dump."""
    dumps = {r.item.name: {"snapshot": r.snapshot_id, "row_counts": r.row_counts,
                           "table_digests": r.table_digests}
             for r in results if r.ok and r.snapshot_id and r.item.kind == "pgdump"}
    for r in in_flight:
        dumps.setdefault(r.item.name, {"snapshot": None, "row_counts": r.row_counts,
                                       "table_digests": r.table_digests})
    if not dumps:
        return None
    return {"version": _VERSION, "run": run_id, "dumps": dumps}


def write_set_meta(restic: Restic, tags: Sequence[str], at: datetime, run_id: str,
                   results: Iterable[_DumpResult], scratch: Path | None = None,
                   in_flight: Iterable[_DumpResult] = ()) -> str | None:
    """Given tier A's repository, the set-meta snapshot's tags (kind=set-meta, run=…), the
    run's logical time and its item results (and dumps under way), store the set-meta
    snapshot and return its id (None when there is no dump). Raise ResticError if restic
    cannot store it."""
    content = set_meta_content(run_id, results, in_flight)
    if content is None:
        return None
    with tempfile.TemporaryDirectory(prefix="axe-set-meta-", dir=scratch) as tmp:
        path = Path(tmp) / SET_META_FILE
        path.write_text(json.dumps(content, sort_keys=True) + "\n")
        # --stdin-from-command: the file is stored under one fixed name, not its temp path.
        summary = restic.backup_command(["cat", str(path)], filename=SET_META_FILE,
                                        tags=tags, at=at)
    return summary.snapshot_id


def store_set_meta(restic: Restic, base_tags: Sequence[str], at: datetime, run_id: str,
                   results: Iterable[_DumpResult],
                   in_flight: Iterable[_DumpResult] = ()) -> Snapshot | None:
    """Given tier A's repository, the customer's tags, the run's logical time, id and item
    results (and the dumps still under way: backup.run_tier_a stores the set-meta while the
    last dumps stream, so it costs no time of its own), store the set's set-meta snapshot and
    return it as restic reported storing it (None when none was stored). Never raise: a
    failure fails no item (Dagster's history still holds the counts); it is logged."""
    if interrupt.requested():  # Ctrl-C / SIGTERM: nothing new starts
        return None
    tags = [*base_tags, f"kind={SET_META_KIND}", f"run={run_id}"]
    try:
        snapshot_id = write_set_meta(restic, tags, at, run_id, results, in_flight=in_flight)
    except (ResticError, OSError) as exc:
        logging.getLogger(__name__).warning(
            "tier A: the set's dump-time counts and digests (kind=%s) were not stored: %s",
            SET_META_KIND, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    if snapshot_id is None:
        return None
    return Snapshot(id=snapshot_id, short_id=snapshot_id[:8], time=at, tags=tuple(tags),
                    paths=("/" + SET_META_FILE,), hostname=socket.gethostname())


def set_meta_snapshot(the_set: BackupSet) -> Snapshot | None:
    """Given a set (in any tier), return its set-meta member, or None (a set from before
    set-meta existed, or one whose run stored no dump)."""
    return next((s for s in the_set.snapshots if s.tag("kind") == SET_META_KIND), None)


def read_set_meta(restic: Restic, the_set: BackupSet) -> dict[str, Any] | None:
    """Given a repository and one of its sets, return the set-meta data of that set, or None
    when it has none or it cannot be read (it is a fallback: an unreadable one is none)."""
    snap = set_meta_snapshot(the_set)
    if snap is None:
        return None
    try:
        with restic.dump(snap.id, "/" + SET_META_FILE) as stream:
            data = json.loads(stream.read().decode())
    except (ResticError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("dumps"), dict) else None


class SetMetaHistory:
    """A DumpHistory that asks `history` (Dagster's) first and, when it has nothing for a
    dump, the set-meta snapshot of the set holding that dump in `restic` (read once per set).
    Dumps are found by their tier-A id: a copy in tier B or C keeps it as `original`."""

    def __init__(self, history: object, restic: Restic, sets: list[BackupSet]):
        self.history, self.restic, self.sets = history, restic, sets
        self._read: dict[str, dict[str, Any] | None] = {}

    def _meta(self, database: str, snapshot_id: str) -> dict[str, Any] | None:
        for the_set in self.sets:
            snap = next((s for s in the_set.snapshots if snapshot_id in (s.id, s.original)),
                        None)
            if snap is None:
                continue
            if the_set.run_id not in self._read:
                self._read[the_set.run_id] = read_set_meta(self.restic, the_set)
            dump = (self._read[the_set.run_id] or {}).get("dumps", {}).get(database)
            # set-meta names the tier-A id (a copy in tier B or C keeps it as `original`), or
            # None for a dump still under way when it was written: a set holds one dump of a
            # database, so this set's is that one.
            if isinstance(dump, dict) and dump.get("snapshot") in (None, snap.original or snap.id):
                return dump
            return None
        return None

    def _ask(self, method: str, customer: str, database: str, snapshot_id: str) -> Any:
        reader = getattr(self.history, method, None)
        if reader is not None:
            try:
                found = reader(customer, database, snapshot_id)
            except Exception:  # noqa: BLE001 - history is optional; an unreadable one is none
                found = None
            if found is not None:
                return found
        return None

    def counts_for(self, customer: str, database: str,
                   snapshot_id: str) -> dict[str, int] | None:
        """Given a customer, a database and a dump's tier-A snapshot id, return its row
        counts from the history, else from its set's set-meta, else None."""
        found = self._ask("counts_for", customer, database, snapshot_id)
        if found is not None:
            return found
        counts = (self._meta(database, snapshot_id) or {}).get("row_counts")
        return {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) and \
            counts else None

    def digests_for(self, customer: str, database: str,
                    snapshot_id: str) -> dict[str, str | None] | None:
        """Given a customer, a database and a dump's tier-A snapshot id, return its
        checksum_tables digests from the history, else from its set's set-meta, else None."""
        found = self._ask("digests_for", customer, database, snapshot_id)
        if found is not None:
            return found
        digests = (self._meta(database, snapshot_id) or {}).get("table_digests")
        return {str(k): None if v is None else str(v) for k, v in digests.items()} \
            if isinstance(digests, dict) and digests else None


class SetMetaWriter:
    """Stores a run's set-meta snapshot as soon as the counts of every dump of the run are
    taken, in a thread beside the dumps still streaming (backup.run_tier_a): the snapshot's
    own restic process then costs the night no time. `counted` is told each dump whose
    counts are taken; `finish` (after every item) stores it if that never happened (no dump
    got that far) and returns it."""

    def __init__(self, restic: Restic, base_tags: Sequence[str], at: datetime, run_id: str,
                 dumps: Iterable[Any]):
        self._args = (restic, base_tags, at, run_id)
        self._waiting = set(dumps)  # dump items whose counts are not taken yet
        self._counted: list[_DumpResult] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stored: Snapshot | None = None

    def counted(self, result: _DumpResult) -> None:
        """Given a dump's result whose counts are now taken (its backup about to start), start
        storing the set-meta when it is the last one."""
        with self._lock:
            self._counted.append(result)
            self._waiting.discard(result.item)
            if self._waiting or self._thread is not None:
                return
            done = [r for r in self._counted if r.ok and r.snapshot_id]
            # Not yet done and not failed: under way (its id is None in the set-meta).
            under_way = [r for r in self._counted if not (r.ok and r.snapshot_id)
                         and not getattr(r, "error", None)]
            self._thread = threading.Thread(target=self._store, args=(done, under_way),
                                            daemon=True, name="axe-set-meta")
            self._thread.start()

    def _store(self, done: list[_DumpResult], under_way: list[_DumpResult]) -> None:
        self._stored = store_set_meta(*self._args, done, in_flight=under_way)

    def finish(self, results: Iterable[_DumpResult]) -> Snapshot | None:
        """Given every item's result, wait for the set-meta snapshot (store it now from the
        results when no dump's counts were taken) and return it (None when none was
        stored)."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return store_set_meta(*self._args, results)
        thread.join()
        return self._stored
