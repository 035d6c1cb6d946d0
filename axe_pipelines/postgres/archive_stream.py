"""Checking a dump as it streams past, block by block: a pg_dump custom-format archive
(header, table of contents, every data block present and terminated) or a plain SQL script
(every COPY section ended, the dump's closing line present), counting the rows of every
table's COPY data on the way.

Standard library only and no other axe module: verify_stream.py (the process restic runs for
a dump) imports this, and it must start in milliseconds.

The custom format as pg_dump 12-17 writes it to a pipe (pg_backup_archiver.c,
pg_backup_custom.c): `PGDMP`, version (major, minor, revision), int size, offset size,
format; the compression (an int before 1.15, one byte after); seven ints of time; the
database name and both versions as strings. Then the TOC: an int count, and per entry its
dump id, whether it has data, and its strings (tag, kind, definition, COPY statement, ...)
ending in a NULL-terminated list of dependencies and a data offset (not set on a pipe). Then,
in TOC order, one block per entry with data: a type byte (1 table data, 3 large objects) and
the entry's dump id, then length-prefixed chunks ending in a zero length (large objects: an
oid before each object's chunks, a zero oid at the end). Nothing follows the last block.
An int is a sign byte and `int size` bytes, least significant first; a string is an int
length (-1: NULL) and that many bytes. With -Z0 every COPY row is one chunk, and the table's
data ends with a `\\.` chunk.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

_COPY_RE = re.compile(rb"^COPY (.+?) (?:\(.*\) )?FROM stdin;$")
MIN_VERSION, MAX_VERSION = (1, 12), (1, 16)  # pg_dump 11 .. 17
BLK_DATA, BLK_BLOBS = 1, 3
PLAIN_COMPLETE = b"-- PostgreSQL database dump complete"


class StreamError(Exception):
    """The stream is not a complete dump; the message says what is wrong, in one line."""


class Unsupported(Exception):
    """The archive is of a version this parser does not know (it is read back instead)."""


@dataclass
class StreamFacts:
    """What a stream held: rows per table (keyed as its COPY statement names it), bytes, and
    for an archive its version, TOC entries and data blocks."""

    tables: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    version: str = ""
    entries: int = 0
    blocks: int = 0


class _Need(Exception):
    """More bytes are needed before the header and TOC can be read."""


class _Reader:
    """Reads ints and strings of an archive's header and TOC out of one buffer."""

    def __init__(self, buf: bytes, int_size: int = 4):
        self.buf, self.pos, self.int_size = buf, 0, int_size

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise _Need
        out, self.pos = self.buf[self.pos:end], end
        return out

    def int(self) -> int:
        raw = self.take(1 + self.int_size)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def str(self) -> bytes | None:
        n = self.int()
        if n < 0:
            return None
        if n > 1 << 30:
            raise StreamError(f"TOC string of {n} bytes: the archive is corrupt")
        return self.take(n)


def _read_head(r: _Reader) -> tuple[tuple[int, int], int]:
    """Return the archive's version and offset size; raise StreamError for another stream,
    Unsupported for a version this module does not know."""
    if r.take(5) != b"PGDMP":
        raise StreamError("the stream is not a pg_dump custom-format archive (no PGDMP header)")
    major, minor, _rev = r.take(3)
    version = (major, minor)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise Unsupported(f"archive version {major}.{minor}")
    r.int_size, off_size, fmt = r.take(3)
    if r.int_size not in (4, 8) or off_size not in (4, 8) or fmt != 1:
        raise StreamError(f"archive header has int size {r.int_size}, offset size "
                          f"{off_size}, format {fmt}: not a custom-format archive")
    if version < (1, 15):
        r.int()  # compression level
    else:
        r.take(1)  # compression algorithm
    for _ in range(7):  # sec, min, hour, mday, mon, year, isdst
        r.int()
    for _ in range(3):  # database, server version, pg_dump version
        r.str()
    return version, off_size


def _read_toc(r: _Reader, version: tuple[int, int], off_size: int = 8
              ) -> list[tuple[int, str | None, str]]:
    """Return (dump id, COPY table name or None, kind) per TOC entry that has data."""
    count = r.int()
    if not 0 <= count < 10_000_000:
        raise StreamError(f"TOC claims {count} entries: the archive is corrupt")
    with_data = []
    for _ in range(count):
        dump_id, has_data = r.int(), r.int()
        r.str(), r.str()  # table oid, oid
        r.str()  # tag
        desc = (r.str() or b"").decode(errors="replace")
        r.int()  # section
        r.str(), r.str()  # definition, drop statement
        copy = r.str()
        r.str(), r.str(), r.str()  # namespace, tablespace, table access method
        if version >= (1, 16):
            r.int()  # relkind
        r.str(), r.str()  # owner, "false" (with oids)
        while r.str() is not None:  # dependencies
            pass
        r.take(1 + off_size)  # data offset: flag and position
        if has_data:
            m = _COPY_RE.match(copy.rstrip(b"\n")) if copy else None
            with_data.append((dump_id, m.group(1).decode(errors="replace") if m else None, desc))
    return with_data


def toc_end(buf: bytes) -> int | None:
    """Given the first bytes of a custom-format archive, return how many of them the header
    and the table of contents take, or None when more are needed. Raise StreamError for
    another stream, Unsupported for an archive version this module does not know."""
    r = _Reader(buf)
    try:
        version, off_size = _read_head(r)
        _read_toc(r, version, off_size)
    except _Need:
        return None
    return r.pos


class ArchiveChecker:
    """Fed a custom-format archive in pieces of any size (`feed`), then `finish`: checks its
    structure and counts each table's COPY rows. Raise StreamError where the stream stops
    being a complete archive, Unsupported for an archive version it does not know."""

    def __init__(self) -> None:
        self.facts = StreamFacts()
        self._buf = b""
        self._tried = 0  # buffer size of the last attempt at reading header and TOC
        self._todo: list[tuple[int, str | None, str]] | None = None  # entries awaiting data
        self._int_size = 4
        self._hdr: struct.Struct | None = None
        self._block: tuple[int, str | None, str] | None = None
        self._rows = 0
        self._left = 0  # bytes of the current chunk still to come
        self._last_small = b""  # the last chunk, when short (the `\\.` terminator)
        self._blob_state = ""  # in a large-object block: "oid" (expect an oid) or "data"

    def feed(self, data: bytes) -> None:
        """Given the next bytes of the stream, check them (an error may wait for `finish`
        when more bytes could still make it right)."""
        self.facts.bytes += len(data)
        self._buf = self._buf + data if self._buf else data
        if self._todo is None:
            if len(self._buf) < 2 * self._tried:
                return
            self._tried = len(self._buf)
            try:
                self._start()
            except _Need:
                return
        self._walk()

    def _start(self) -> None:
        r = _Reader(self._buf)
        version, off_size = _read_head(r)
        self._int_size = r.int_size
        self._todo = _read_toc(r, version, off_size)
        self._todo.reverse()  # popped from the end, in TOC order
        self.facts.version = f"{version[0]}.{version[1]}"
        self.facts.entries = len(self._todo)
        self._hdr = struct.Struct("<BI" if self._int_size == 4 else "<BQ")
        self._buf = self._buf[r.pos:]

    def _walk(self) -> None:
        """Check and count what the buffer holds past the TOC; keep an incomplete header."""
        buf, pos, n = self._buf, 0, len(self._buf)
        hdr, size = self._hdr, 1 + self._int_size
        assert hdr is not None
        while pos < n:
            if self._left:  # inside a chunk: count its newlines as they pass
                end = min(n, pos + self._left)
                if not self._blob_state:
                    self._rows += buf.count(b"\n", pos, end)
                self._left -= end - pos
                pos = end
            elif self._block is None:  # between blocks: a type byte and a dump id
                if n - pos < 1 + size:
                    break
                self._open_block(buf[pos], self._int(buf, pos + 1))
                pos += 1 + size
            elif n - pos < size:
                break
            else:
                if not self._blob_state:
                    pos = self._rows_run(buf, pos, n)
                    if n - pos < size:
                        break
                sign, length = hdr.unpack_from(buf, pos)
                if sign:
                    raise StreamError(f"negative length in the data of {self._what()}: the "
                                      "archive is corrupt")
                if length < 16 and n - pos - size < length:
                    break  # a short chunk (the `\\.` line?) is looked at whole
                pos += size
                if self._blob_state == "data" and length:  # a large object's bytes
                    self._left = length
                    continue
                if self._blob_state or not length:
                    self._blob_int(length)
                    continue
                # A COPY row (with -Z0, one per chunk): the hot path of the whole check.
                end = pos + length
                if end <= n:
                    self._rows += buf.count(b"\n", pos, end)
                    self._last_small = buf[pos:end] if length < 16 else b""
                    pos = end
                else:
                    self._rows += buf.count(b"\n", pos, n)
                    self._left, self._last_small, pos = end - n, b"", n
        self._buf = buf[pos:]

    def _rows_run(self, buf: bytes, pos: int, n: int) -> int:
        """The hot path of the whole check: count COPY rows (one 16+ byte chunk each with
        -Z0) wholly inside the buffer from `pos`; return where the first other thing is."""
        unpack, count = self._hdr.unpack_from, buf.count  # type: ignore[union-attr]
        size = 1 + self._int_size
        rows = 0
        while pos + size <= n:
            sign, length = unpack(buf, pos)
            end = pos + size + length
            if sign or length < 16 or end > n:
                break
            rows += count(b"\n", pos + size, end)
            pos = end
        if rows:
            self._rows += rows
            self._last_small = b""
        return pos

    def _blob_int(self, value: int) -> None:
        """A zero length ending a data run, or in a large-object block an oid or a length."""
        if self._blob_state == "oid":  # a large object's oid, or 0: the block ends
            self._blob_state = "data" if value else ""
            if not value:
                self._close_block()
        elif self._blob_state == "data":  # the end of one large object's bytes
            self._blob_state = "oid"
        else:
            self._close_block()

    def _int(self, buf: bytes, pos: int) -> int:
        value = int.from_bytes(buf[pos + 1:pos + 1 + self._int_size], "little")
        return -value if buf[pos] else value

    def _what(self) -> str:
        block = self._block
        return f"{block[1] or block[2]} (TOC entry {abs(block[0])})" if block else "the archive"

    def _open_block(self, kind: int, dump_id: int) -> None:
        assert self._todo is not None
        if not self._todo:
            raise StreamError(f"data block {dump_id} after the last TOC entry with data: "
                              "the archive is corrupt")
        want_id, name, desc = self._todo.pop()
        if dump_id != want_id or kind not in (BLK_DATA, BLK_BLOBS):
            raise StreamError(f"data of TOC entry {want_id} ({name or desc}) is missing: "
                              f"found block {dump_id} of type {kind}")
        self._block = (want_id if kind == BLK_DATA else -BLK_BLOBS, name, desc)
        self._rows, self._last_small = 0, b""
        self._blob_state = "oid" if kind == BLK_BLOBS else ""

    def _close_block(self) -> None:
        block = self._block
        assert block is not None
        self.facts.blocks += 1
        if block[0] != -BLK_BLOBS and block[1] is not None:
            if not self._last_small.startswith(b"\\.\n"):
                raise StreamError(f"the data of {block[1]} ends without its `\\.` line: "
                                  "the archive is corrupt")
            self.facts.tables[block[1]] = self._rows - self._last_small.count(b"\n")
        self._block = None

    def finish(self) -> StreamFacts:
        """Return what the stream held once it has ended. Raise StreamError if it ended
        before the archive did (inside the header, the TOC, a block, or with data missing)."""
        if self._todo is None:
            try:
                self._start()
            except _Need:
                raise StreamError(f"the stream ends after {self.facts.bytes} bytes, inside "
                                  "the archive's header or table of contents") from None
            self._walk()
        if self._block is not None or self._left:
            raise StreamError(f"the stream ends inside the data of {self._what()}: the "
                              "archive is truncated")
        if self._buf:
            raise StreamError(f"{len(self._buf)} stray bytes after the last data block: the "
                              "archive is corrupt")
        assert self._todo is not None
        if self._todo:
            _id, name, desc = self._todo[-1]
            raise StreamError(f"the stream ends before the data of {name or desc} (TOC entry "
                              f"{_id}) and {len(self._todo) - 1} more: the archive is "
                              "truncated")
        return self.facts


class ScriptChecker:
    """Fed a plain SQL dump in pieces of any size, then `finish`: counts the rows of every
    COPY ... FROM stdin section and checks that none is left open and that the script
    reaches pg_dump's closing comment. Raise StreamError otherwise."""

    def __init__(self) -> None:
        self.facts = StreamFacts()
        self._current: str | None = None
        self._rows = 0
        self._buf = b""  # always starts at the beginning of a line
        self._tail = b""  # the last bytes seen, for the closing comment

    def feed(self, data: bytes) -> None:
        """Given the next bytes of the script, count what they complete."""
        self.facts.bytes += len(data)
        self._tail = (self._tail + data)[-4096:]
        buf = self._buf + data if self._buf else data
        counts = self.facts.tables
        while buf:
            if self._current is None:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if line.startswith(b"COPY "):
                    m = _COPY_RE.match(line)
                    if m:
                        self._current, self._rows = m.group(1).decode(), 0
                continue
            if buf.startswith(b"\\.\n"):
                counts[self._current], self._current, buf = self._rows, None, buf[3:]
                continue
            end = buf.find(b"\n\\.\n")
            if end >= 0:
                self._rows += buf.count(b"\n", 0, end + 1)
                counts[self._current], self._current = self._rows, None
                buf = buf[end + 4:]
                continue
            last = buf.rfind(b"\n")
            if last < 0:
                break
            self._rows += buf.count(b"\n", 0, last + 1)
            buf = buf[last + 1:]
            break
        self._buf = buf

    def finish(self, *, complete: bool = True) -> StreamFacts:
        """Return what the script held. Raise StreamError if it ends inside a COPY section
        or (with `complete`: a whole pg_dump script) before pg_dump's closing comment."""
        if self._current is not None:
            raise StreamError(f"dump ends inside the data of {self._current}: it is "
                              "truncated")
        if complete and PLAIN_COMPLETE not in self._tail:
            raise StreamError(f"the script ends after {self.facts.bytes} bytes without "
                              f"pg_dump's closing comment ({PLAIN_COMPLETE.decode()!r}): it "
                              "is truncated")
        return self.facts


def compare_counts(tables: dict[str, int], expected: dict[str, int]) -> list[str]:
    """Given the rows per table a dump holds and the counts taken in its snapshot, return
    every problem: a counted table missing, or with another number of rows."""
    problems = []
    for table, want in sorted(expected.items()):
        got = tables.get(table)
        if got is None:
            problems.append(f"{table}: missing from the dump")
        elif got != want:
            problems.append(f"{table}: {got} rows in the dump, {want} counted at dump time")
    return problems
