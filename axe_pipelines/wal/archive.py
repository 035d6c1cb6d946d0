"""The `archive_command` PostgreSQL runs for each finished WAL file (README "Point-in-time
recovery"):

    archive_command = '/usr/bin/python3 /opt/axe/axe_pipelines/wal/archive.py %p %f /spool'

(or `<venv>/bin/python -m axe_pipelines.wal.archive %p %f <spool>`). It copies `%p` into the
spool folder as a hidden temp file, fsyncs it, links it to its name `%f` (atomic, and never
over an existing file), removes the temp name and fsyncs the folder: a file under its real
name in the spool is always whole and on disk. Exit 0 only then. A file of that name already
there (in the spool or in a batch being pushed) with the same bytes is success too:
PostgreSQL archives a file again after a crash between our exit and its bookkeeping. The same
name with other bytes, a missing spool (an unmounted volume), a full disk or any other error:
exit 1 with one line on stderr (the server log); PostgreSQL keeps the file in pg_wal and
tries again.

Standard library only, no axe imports: it runs once per 16 MiB of WAL as the server's own
user, often under the system python3, and must start in milliseconds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PUSHING = "pushing"  # the pusher's batches: spool/pushing/<batch-id>/<file>
_CHUNK = 1 << 20


class ArchiveFailed(Exception):
    """The file was not archived; the message is the one line for the server log."""


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def fsync_dir(folder: Path) -> None:
    """Given a folder, fsync it: a rename or link in it is then on disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def already_there(source: Path, name: str, spool: Path) -> Path | None:
    """Given the WAL file, its name and the spool, return the spool's copy of that name (in
    the spool or in a batch being pushed), or None when there is none. Raise ArchiveFailed
    when a copy exists with other bytes."""
    candidates = [spool / name]
    pushing = spool / PUSHING
    if pushing.is_dir():
        candidates += [batch / name for batch in pushing.iterdir() if batch.is_dir()]
    for copy in candidates:
        if copy.is_file():
            if _same_bytes(source, copy):
                return copy
            raise ArchiveFailed(f"{copy} exists with other content than {source}; not "
                                f"overwritten (two servers archiving into one spool?)")
    return None


def archive(source: Path, name: str, spool: Path) -> str:
    """Given `%p`, `%f` and the spool folder, put the file into the spool durably (module
    docstring) and return what was done. Raise ArchiveFailed if it is not certainly there."""
    if not name or "/" in name or name.startswith("."):
        raise ArchiveFailed(f"refusing file name {name!r}")
    if not spool.is_dir():
        raise ArchiveFailed(f"spool {spool} is not a folder (volume not mounted?)")
    if already_there(source, name, spool) is not None:
        return f"{name} already in {spool} with the same content"
    temp = spool / f".{name}.{os.getpid()}.tmp"
    try:
        with open(source, "rb") as src, open(temp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.link(temp, spool / name)  # fails instead of replacing a file that appeared
    except FileExistsError:
        _discard(temp)
        if already_there(source, name, spool) is None:
            raise ArchiveFailed(f"{spool / name} appeared and vanished while archiving") from None
    except OSError as exc:
        _discard(temp)
        raise ArchiveFailed(f"cannot copy {source} into {spool}: {exc.strerror or exc}"
                            f"{' (spool disk full)' if exc.errno == 28 else ''}") from None
    _discard(temp)
    fsync_dir(spool)
    return f"{name} archived into {spool}"


def _discard(temp: Path) -> None:
    # On a read-only spool even unlinking a file that was never created fails (EROFS): that
    # must not replace the reason the copy failed.
    try:
        temp.unlink(missing_ok=True)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """Given `[%p, %f, spool]`, archive the file; return 0 when it is safely in the spool,
    1 (with one line on stderr) otherwise, 2 for wrong arguments."""
    if len(argv) != 3:
        print("axe wal archive: usage: archive.py %p %f SPOOL_DIR", file=sys.stderr)
        return 2
    try:
        archive(Path(argv[0]), argv[1], Path(argv[2]))
    except ArchiveFailed as exc:
        print(f"axe wal archive: {argv[1]}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # reading the source, listing the spool, fsync of the folder
        print(f"axe wal archive: {argv[1]}: {exc.strerror or exc} ({exc.filename or ''})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
