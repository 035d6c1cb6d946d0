"""Runtime dependencies the Dagster layer hands to plain code.

DagsterDumpHistory: the row counts (and checksum_tables digests) tier A took inside each
dump's own snapshot, read from the dump assets' materializations. The restore, integrity and
drill actions take it as an integrity.DumpHistory, so they never import Dagster: the CLI
builds one on $DAGSTER_HOME, a Dagster op on its run's instance.

Dagster is imported only when the history is read (issue 12): importing it and opening the
instance costs the CLI one to two seconds, which `warm()` moves into a thread of its own that
overlaps with restic fetching the dump, and the instance is opened once per process.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from axe_pipelines.backup import Item
from axe_pipelines.instance import DEFAULT_HOME

if TYPE_CHECKING:
    import dagster as dg

# One opening at a time in a process: two first opens of a new home would both create its
# SQLite storage, and the second one's migration fails.
_OPENING = threading.Lock()

# How far back the history is read: dump materializations of one database, newest first.
HISTORY_LIMIT = 1000


class DagsterDumpHistory:
    """An integrity.DumpHistory over the Dagster instance: `instance` when given (an op's
    run), else the one in `home` (default: $DAGSTER_HOME, else ~/.axe/dagster — where
    `axe backup` records), opened only when asked. A machine without that history (a new
    machine) has none: then the dump's own COPY counts serve. With `warm`, opening it starts
    at once (see warm)."""

    def __init__(self, instance: dg.DagsterInstance | None = None,
                 home: Path | str | None = None, *, warm: bool = False):
        self.instance = instance
        self.home = Path(home or os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).expanduser()
        self._lock = threading.Lock()
        self._opened = False  # the home's instance was opened (or found missing) once
        if warm:
            self.warm()

    def warm(self) -> None:
        """Start importing Dagster and opening the instance in a background thread, so a
        later read finds it open (reads wait for it; a failure there reads as no history)."""
        if self.instance is None:
            worker = threading.Thread(target=self._open, name="axe-history", daemon=True)
            worker.start()
            # Never exit while it may be creating the instance's SQLite storage (a
            # half-created one breaks the next run's schema migration).
            atexit.register(worker.join)

    def _open(self) -> dg.DagsterInstance | None:
        """The instance to read: the one given, else the home's, opened on first use and
        kept (None when the home has none or it cannot be opened)."""
        with self._lock, _OPENING:
            if self.instance is None and not self._opened:
                self._opened = True
                if (self.home / "dagster.yaml").is_file():
                    import dagster as dg

                    try:
                        self.instance = dg.DagsterInstance.from_config(str(self.home))
                    except Exception:  # noqa: BLE001 - history is optional
                        self.instance = None
            return self.instance

    def counts_for(self, customer: str, database: str,
                   snapshot_id: str) -> dict[str, int] | None:
        """Given a customer, a database and a dump's snapshot id, return the row counts of
        the `<customer>/dumps/<database>` materialization that recorded that snapshot, or
        None when there is none or the instance cannot be read."""
        found = self._read(customer, database, snapshot_id, "row_counts")
        return None if found is None else {str(k): int(v) for k, v in found.items()}

    def digests_for(self, customer: str, database: str,
                    snapshot_id: str) -> dict[str, str | None] | None:
        """Given a customer, a database and a dump's snapshot id, return the checksum_tables
        digests recorded for that dump (table -> digest, None for a table that did not
        exist), or None when there is no such record or the instance cannot be read."""
        found = self._read(customer, database, snapshot_id, "table_digests")
        return None if found is None else {str(k): None if v is None else str(v)
                                           for k, v in found.items()}

    def _read(self, customer: str, database: str, snapshot_id: str,
              field: str) -> dict | None:
        try:
            instance = self._open()
            if instance is None:
                return None
            from axe_pipelines.names import item_key  # imports Dagster: after _open

            key = item_key(customer, Item("pgdump", database))
            return _recorded(instance, key, snapshot_id, field)
        except Exception:  # noqa: BLE001 - history is optional; an unreadable one is none
            return None


def _recorded(instance: dg.DagsterInstance, key: dg.AssetKey, snapshot_id: str,
              field: str) -> dict | None:
    from axe_pipelines.assets.metadata import row_counts_from
    from axe_pipelines.names import history_keys

    # Dumps recorded before issue 11's key rename are under the former key (names.former_keys).
    for where in history_keys(key):
        for record in instance.fetch_materializations(where, limit=HISTORY_LIMIT).records:
            mat = record.asset_materialization
            if mat is None or "snapshot_id" not in mat.metadata:
                continue
            if mat.metadata["snapshot_id"].value == snapshot_id and field in mat.metadata:
                value = mat.metadata[field]
                # row_counts: a table since issue 11, a JSON mapping before.
                return row_counts_from(value) if field == "row_counts" else dict(value.value)
    return None
