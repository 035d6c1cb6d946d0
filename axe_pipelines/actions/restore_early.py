"""Fetching a database's newest dump while the repository is still being listed (issue 12).

A restore lists the customer's sets (`restic snapshots`) to pick the snapshot, then fetches
it (`restic restore`): two restic processes one after the other, each spending about half a
second deriving the repository's key before it reads anything. For `--as-of latest` the
snapshot the listing will pick is, nearly always, restic's own `latest` of the database's
tags, so EarlyFetch starts `restic restore latest --tag …` beside the listing. Its file is
used only when it is provably the picked snapshot: restic names the snapshot it restored
(short id, paths, time to the second), and that must be the pick's, with no other listed
snapshot sharing its short id; otherwise it is thrown away and the pick is fetched as
before. A wrong guess costs one more restic process, never a wrong restore.

A restore that is refused or fails before it takes the file (open connections without
--force, a bad pick) does not wait for it: `close` stops restic with SIGINT (through the
process helpers, so it removes its own lock) and removes the folder.
"""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path

from axe_pipelines import interrupt
from axe_pipelines.backup import TAG_TOOL, Item, dump_filename
from axe_pipelines.config import Customer
from axe_pipelines.restic import Restic, ResticError, Snapshot
from axe_pipelines.restic.process import Watchdog, spawn
from axe_pipelines.safe_paths import remove_tree
from axe_pipelines.sets import BackupSet

# restic 0.17+: "restoring snapshot 39d16e7e of [/frame.pgdump] at 2026-12-02 11:53:35 +0900
# +0900 by root@vm to …"; older: "restoring <Snapshot 39d16e7e of [/frame.pgdump] at …".
_RESTORING = re.compile(r"restoring <?snapshot ([0-9a-f]{8,}) of \[(.*?)\] at "
                        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", re.IGNORECASE)


class EarlyFetch:
    """`restic restore latest` of one database's dump, started at once in a thread."""

    def __init__(self, restic: Restic, customer_name: str, customer: Customer, db_name: str):
        self.path = "/" + dump_filename(customer, Item("pgdump", db_name))
        self.dir = Path(tempfile.mkdtemp(prefix="axe-restore-early-"))
        tags = ",".join([TAG_TOOL, f"customer={customer_name}", "kind=pgdump",
                         f"database={db_name}"])
        self._argv = ["restore", "latest", "--tag", tags, "--target", str(self.dir),
                      "--include", self.path]
        self._restic = restic
        self._out: str | None = None
        self._dog: Watchdog | None = None
        self._thread = threading.Thread(target=self._run, name=f"early-{db_name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Any failure (a lock, a timeout, a cancel) leaves _out None: the pick is then
        # fetched as usual, and its error is the one told.
        group = interrupt.installed()
        try:
            proc = spawn(self._restic._argv(self._argv), self._restic.env(),
                                      group=group)
        except (ResticError, OSError):
            return
        self._dog = Watchdog(proc, wall=self._restic.timeout, group=group)
        with interrupt.watched(proc, group=group):
            out, _err = proc.communicate()
        self._dog.cancel()
        if proc.returncode == 0 and not self._dog.reason:
            self._out = out

    def take(self, snap: Snapshot, sets: list[BackupSet]) -> Path | None:
        """Given the picked snapshot and the listed sets, wait for the early restore and
        return its file when it restored exactly that snapshot, else None."""
        self._thread.join()
        found = _RESTORING.search(self._out or "")
        out = self.dir / self.path.lstrip("/")
        if found is None or not out.is_file():
            return None
        short, paths, at = found.groups()
        same_short = {s.id for b in sets for s in b.snapshots if s.id.startswith(short)}
        local = snap.time.astimezone(self._zone()).strftime("%Y-%m-%d %H:%M:%S")
        if same_short != {snap.id} or paths != " ".join(snap.paths) or at != local:
            out.unlink()  # not the pick: its room is the fetch's (a temp folder fits one dump)
            return None
        return out

    def _zone(self):  # restic prints times in TZ, which Restic.env sets to the tier's zone
        from zoneinfo import ZoneInfo

        return ZoneInfo(self._restic.timezone) if self._restic.timezone else None

    def close(self) -> None:
        """Stop restic if it still runs (SIGINT: it removes its lock; the file was not
        taken), wait for it to end and remove the folder."""
        while self._thread.is_alive() and self._dog is None:
            self._thread.join(0.01)  # spawning (or failing to): the process is known next
        if self._dog is not None and self._thread.is_alive():
            self._dog.stop("cancelled")
        self._thread.join()
        remove_tree(self.dir, inside=self.dir.parent)
