"""A table restore reads only as much of its dump as it needs (issue 12): `restic dump` of
the dump file streams into this process, which keeps the archive's header and table of
contents (what plan_table reads with pg_restore -l / -s) and then hands the stream on to
`pg_restore -L`, which reads up to the end of the table's data and exits. A small table
early in the dump so never pays for the whole dump, and a large one is loaded while it
streams instead of after a full fetch.

restic is stopped once the rows have been read: it runs with `--no-lock` (the dump only
reads, and an early stop must leave no stale lock behind) and is stopped with SIGINT
through the process helpers. A restic that fails mid-way cuts the stream short: the
table's transaction then rolls back (table_load.load_rows) and restic's own error is told.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO

from axe_pipelines import interrupt
from axe_pipelines.actions.selection import RestoreError, dump_path
from axe_pipelines.postgres.archive_stream import StreamError, Unsupported, toc_end
from axe_pipelines.restic import Restic, ResticError, Snapshot
from axe_pipelines.restic.errors import raise_for
from axe_pipelines.restic.process import Watchdog, interrupt_and_drain, spawn

CHUNK = 1 << 20


class DumpStream:
    """`restic --no-lock dump` of one dump snapshot, its head read at once (`head_file`),
    the rest handed on by `feed`; `close` stops restic."""

    def __init__(self, restic: Restic, snap: Snapshot, workdir: Path):
        self.path = dump_path(snap)
        self._restic, self._snap = restic, snap
        self._group = interrupt.installed()
        self._proc = spawn(restic._argv(["--no-lock", "dump", "--quiet", snap.id, self.path]),
                           restic.env(), text=False, group=self._group)
        interrupt.adopt(self._proc, group=self._group)
        self._dog = Watchdog(self._proc, wall=restic.timeout, idle=restic.idle_timeout,
                             group=self._group)
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True,
                                        name="axe-dump-stderr")
        self._reader.start()
        self.ended = False  # restic's output was read to its end
        self.head_file = workdir / Path(self.path).name
        try:
            self._head = self._read_head()
        except BaseException:
            self.close()
            raise
        self.head_file.write_bytes(self._head)

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        self._stderr.append(self._proc.stderr.read())

    def _read(self) -> bytes:
        assert self._proc.stdout is not None
        chunk = self._proc.stdout.read1(CHUNK)  # type: ignore[attr-defined]
        if chunk:
            self._dog.touch()
        else:
            self.ended = True
        return chunk

    def _read_head(self) -> bytes:
        """The stream's first bytes, through the end of the table of contents (all of it for
        an archive version the parser does not know). Raise RestoreError (nothing changed)
        if restic fails or the stream is no complete archive head."""
        buf = b""
        whole = False
        while True:
            chunk = self._read()
            if not chunk:
                self._check_restic()
                if whole:
                    return buf
                raise RestoreError(f"{self.path} of snapshot {self._snap.short_id} ends after "
                                   f"{len(buf)} bytes, inside the archive's header or table "
                                   f"of contents; nothing was changed")
            buf += chunk
            if whole:
                continue
            try:
                if toc_end(buf) is not None:
                    return buf
            except Unsupported:
                whole = True  # pg_restore reads it; the head is then the whole dump
            except StreamError as exc:
                raise RestoreError(f"{self.path} of snapshot {self._snap.short_id}: {exc}; "
                                   f"a table restore needs a custom-format dump; nothing was "
                                   f"changed") from None

    def feed(self, sink: IO[bytes]) -> None:
        """Given pg_restore's stdin, write the head and then the rest of the stream into it
        until the stream ends or pg_restore stops reading (it has what it needs)."""
        try:
            sink.write(self._head)
            while chunk := self._read():
                sink.write(chunk)
        except (BrokenPipeError, ValueError, OSError):
            pass  # pg_restore exited: it read what it needed, or it failed (it says why)

    def failure(self) -> str | None:
        """Once fed, return restic's error when the stream ended because restic failed (the
        load then saw a cut-short dump), else None."""
        if not self.ended:
            return None
        try:
            self._check_restic()
        except RestoreError as exc:
            return str(exc).removesuffix("; nothing was changed")
        return None

    def _check_restic(self) -> None:
        code = self._proc.wait()
        self._reader.join(5)
        if self._dog.passed:
            raise RestoreError(f"{self._restic.repo.label}: reading {self.path} from "
                               f"{self._snap.short_id} was stopped ({self._dog.reason} bound); "
                               f"nothing was changed")
        if code != 0:
            try:
                raise_for(code, b"".join(self._stderr).decode(errors="replace"),
                          self._restic.repo, f"reading {self.path}")
            except ResticError as exc:
                raise RestoreError(f"{str(exc).strip().splitlines()[0]}; nothing was "
                                   f"changed") from None

    def close(self) -> None:
        """Stop restic if it still runs (SIGINT; it holds no lock) and wait for it."""
        self._dog.cancel()
        if self._proc.poll() is None:
            interrupt_and_drain(self._proc, grace_s=5)
        interrupt.forget(self._proc)
        self._reader.join(5)
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()
