"""WAL file names as PostgreSQL writes them into the archive, and the arithmetic on them.

A segment is `TTTTTTTTXXXXXXXXYYYYYYYY` (hex): timeline, then the segment number split into
the "xlogid" (high 32 bits of the LSN) and the segment within it. With 16 MiB segments an
xlogid holds 0x100 of them, so `...000000FF` is followed by the next xlogid's `...00000000`.
Besides segments the archive holds `TTTTTTTT.history` (a timeline's history), `<segment>.
<offset>.backup` (a base backup's label) and `<segment>.partial` (the last, incomplete
segment of a timeline that was promoted away from); none of these is part of the sequence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

SEGMENT_SIZE = 16 << 20  # PostgreSQL's default wal_segment_size (initdb --wal-segsize)
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")
_BACKUP = re.compile(r"^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$")
_PARTIAL = re.compile(r"^[0-9A-F]{24}\.partial$")
FileKind = Literal["segment", "history", "backup", "partial"]


def per_xlogid(segment_size: int = SEGMENT_SIZE) -> int:
    """Given the segment size in bytes, return how many segments one xlogid holds."""
    return 0x100000000 // segment_size


@dataclass(frozen=True, order=True)
class Segment:
    """One WAL segment: its timeline and its number (xlogid x per_xlogid + segment)."""

    timeline: int
    number: int
    segment_size: int = SEGMENT_SIZE

    @property
    def name(self) -> str:
        """Return the file name, `000000010000000000000003`."""
        log, seg = divmod(self.number, per_xlogid(self.segment_size))
        return f"{self.timeline:08X}{log:08X}{seg:08X}"

    def next(self) -> Segment:
        """Return the segment after this one on the same timeline (FF rolls over to the next
        xlogid)."""
        return Segment(self.timeline, self.number + 1, self.segment_size)

    def __str__(self) -> str:
        return self.name


def parse_segment(name: str, segment_size: int = SEGMENT_SIZE) -> Segment | None:
    """Given a file name, return its Segment, or None when it is not a plain segment name
    (or its segment part does not fit the segment size)."""
    m = _SEGMENT.match(name)
    if not m:
        return None
    tli, log, seg = (int(g, 16) for g in m.groups())
    if seg >= per_xlogid(segment_size) or tli == 0:
        return None
    return Segment(tli, log * per_xlogid(segment_size) + seg, segment_size)


def file_kind(name: str) -> FileKind | None:
    """Given a file name, return which kind of archive file it is, or None for anything else
    (a temp file, a stray name)."""
    if _SEGMENT.match(name):
        return "segment"
    if _HISTORY.match(name):
        return "history"
    if _BACKUP.match(name):
        return "backup"
    if _PARTIAL.match(name):
        return "partial"
    return None


def segment_of_lsn(lsn: str, timeline: int, segment_size: int = SEGMENT_SIZE) -> Segment:
    """Given an LSN as PostgreSQL prints it (`0/3000028`) and the timeline, return the
    segment holding it. Raise ValueError if the LSN cannot be read."""
    m = re.match(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$", lsn.strip())
    if not m:
        raise ValueError(f"not an LSN: {lsn!r}")
    position = (int(m.group(1), 16) << 32) | int(m.group(2), 16)
    return Segment(timeline, position // segment_size, segment_size)


@dataclass(frozen=True)
class Gap:
    """Segments missing on one timeline: after `after`, `first`..`last` are not there."""

    timeline: int
    after: Segment
    first: Segment
    last: Segment

    @property
    def count(self) -> int:
        """Return how many segments are missing."""
        return self.last.number - self.first.number + 1

    def describe(self) -> str:
        """Return the gap as an operator reads it."""
        if self.count == 1:
            return f"segment {self.first} is missing (timeline {self.timeline})"
        return (f"{self.count} segments {self.first}..{self.last} are missing (timeline "
                f"{self.timeline})")


def segments_of(names: Iterable[str], segment_size: int = SEGMENT_SIZE) -> list[Segment]:
    """Given archive file names, return the distinct plain segments among them, sorted by
    timeline and number."""
    found = {s for n in names if (s := parse_segment(n, segment_size)) is not None}
    return sorted(found)


def find_gaps(names: Iterable[str], segment_size: int = SEGMENT_SIZE,
              since: Segment | None = None) -> list[Gap]:
    """Given archive file names (`since`: ignore segments before this position, e.g. before
    the oldest base backup), return every run of segments missing inside each timeline's
    sequence, oldest first. The segment being written now is never a gap: only holes between
    two archived segments are."""
    gaps: list[Gap] = []
    by_timeline: dict[int, list[Segment]] = {}
    for s in segments_of(names, segment_size):
        if since is None or s.number >= since.number:
            by_timeline.setdefault(s.timeline, []).append(s)
    for tli, segs in sorted(by_timeline.items()):
        for before, after in zip(segs, segs[1:], strict=False):
            if after.number != before.number + 1:
                gaps.append(Gap(tli, before, before.next(),
                                Segment(tli, after.number - 1, segment_size)))
    return gaps
