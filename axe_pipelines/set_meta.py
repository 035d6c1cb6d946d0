"""A set's own record of what tier A measured at dump time, kept inside the repository.

The row counts and `checksum_tables` digests tier A takes inside each dump's exported
snapshot are recorded in Dagster's history, but a rebuilt machine whose DAGSTER_HOME is lost
(the disaster a drill rehearses) has none of it. So tier A also writes, at the end of each
run, one small snapshot tagged `kind=set-meta` and the run's `run=`: a JSON file holding,
per dump, its snapshot id, row counts and digests. Being a member of the set by its `run=`
tag, it is copied to tiers B and C with the set and forgotten with it; one snapshot per set,
not one per dump, because every restic process costs about half a second of key derivation.

Coverage (backup.coverage) and BackupSet.member look items up by kind and name, so this
member is neither a missing nor an extra item.
"""

from __future__ import annotations

import json
import logging
import tempfile
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


def set_meta_content(run_id: str, results: Iterable[_DumpResult]) -> dict[str, Any] | None:
    """Given a tier-A run's item results, return the set-meta JSON data (per database: the
    dump's snapshot id, row counts, digests), or None when the run stored no dump."""
    dumps = {r.item.name: {"snapshot": r.snapshot_id, "row_counts": r.row_counts,
                           "table_digests": r.table_digests}
             for r in results if r.ok and r.snapshot_id and r.item.kind == "pgdump"}
    if not dumps:
        return None
    return {"version": _VERSION, "run": run_id, "dumps": dumps}


def write_set_meta(restic: Restic, tags: Sequence[str], at: datetime, run_id: str,
                   results: Iterable[_DumpResult], scratch: Path | None = None) -> str | None:
    """Given tier A's repository, the set-meta snapshot's tags (kind=set-meta, run=…), the
    run's logical time and its item results, store the set-meta snapshot and return its id
    (None when the run stored no dump). Raise ResticError if restic cannot store it."""
    content = set_meta_content(run_id, results)
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
                   results: Iterable[_DumpResult]) -> None:
    """Given tier A's repository, the customer's tags, the run's logical time, id and item
    results, store the set's set-meta snapshot (backup.run_tier_a calls this). Never raise: a
    failure fails no item (Dagster's history still holds the counts); it is logged."""
    if interrupt.requested():  # Ctrl-C / SIGTERM: nothing new starts
        return
    tags = [*base_tags, f"kind={SET_META_KIND}", f"run={run_id}"]
    try:
        write_set_meta(restic, tags, at, run_id, results)
    except (ResticError, OSError) as exc:
        logging.getLogger(__name__).warning(
            "tier A: the set's dump-time counts and digests (kind=%s) were not stored: %s",
            SET_META_KIND, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


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
            # set-meta names the tier-A id; a copy in tier B or C keeps it as `original`.
            if isinstance(dump, dict) and dump.get("snapshot") == (snap.original or snap.id):
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
