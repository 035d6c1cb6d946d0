"""A folder in a restore drill: its snapshot restored into a temporary folder, then proven.

- `files`: the restored folder holds exactly the regular files and bytes the snapshot lists
  (`restic ls --json`: every file with its size and mtime).
- `content`: every file (when all of them fit under `drill.sample_bytes`), else
  `drill.sample_files` of them picked at random (seeded by the snapshot id, so a drill can be
  repeated), hashed (SHA-256) and compared with a reference read another way than the
  restore: the source file itself when it is unchanged since the backup (same size and
  mtime as the snapshot records — the test restic itself uses to skip unchanged files), else
  the same file streamed out of the repository by `restic dump`.

restic records no content hash of a file, so comparing with the source is the strongest proof
there is: what was on disk at backup time came back byte for byte. Files changed since the
backup fall back to `restic dump`, which reads the same blobs but writes nothing to disk: it
proves what the restore wrote, not what was backed up; the report says which reference each
file was compared with.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from axe_pipelines.integrity import CheckResult
from axe_pipelines.restic import Restic, Snapshot

BLOCK = 1 << 20
_TIME = re.compile(r"^(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class Listed:
    """One regular file of a snapshot as `restic ls --json` lists it."""

    path: str  # absolute, as backed up
    size: int
    mtime_ns: int | None


def mtime_ns(text: str) -> int | None:
    """Given restic's RFC 3339 time with up to nanoseconds (`…T20:59:44.745295467Z`), return
    it in nanoseconds since the epoch, or None when it cannot be read."""
    m = _TIME.match(text or "")
    if not m:
        return None
    zone = "+00:00" if m[3] == "Z" else m[3]
    try:
        whole = datetime.fromisoformat(m[1] + zone)
    except ValueError:
        return None
    return int(whole.timestamp()) * 1_000_000_000 + int((m[2] or "0")[:9].ljust(9, "0"))


def list_files(restic: Restic, snap: Snapshot) -> list[Listed]:
    """Given a folder snapshot, return its regular files (restic ls --json, read as it comes).
    Raise the mapped ResticError if restic cannot read the snapshot."""
    found: list[Listed] = []

    def on_line(line: str) -> None:
        if not line.startswith("{"):
            return
        node = json.loads(line)
        if node.get("struct_type") == "node" and node.get("type") == "file":
            found.append(Listed(node["path"], int(node.get("size") or 0),
                                mtime_ns(node.get("mtime", ""))))

    restic.stream(["ls", "--json", snap.id], what=f"listing snapshot {snap.short_id}",
                  on_line=on_line)
    return found


def restored_files(root: Path) -> dict[str, int]:
    """Given a restored folder, return its regular files (path relative to it) and sizes."""
    out: dict[str, int] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                out[str(path.relative_to(root))] = info.st_size
    return out


def sha256_file(path: Path) -> str:
    """Given a file, return its SHA-256 (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


def choose_sample(files: list[Listed], *, max_files: int, max_bytes: int,
                  seed: str) -> list[Listed]:
    """Given a snapshot's files and the bounds, return the files to hash: all of them when
    their bytes together are at most `max_bytes`, else `max_files` picked at random with
    `seed` (the same snapshot gives the same sample)."""
    if sum(f.size for f in files) <= max_bytes:
        return list(files)
    return random.Random(seed).sample(files, min(max_files, len(files)))


def files_check(listed: list[Listed], restored: dict[str, int], origin: str) -> CheckResult:
    """Given the snapshot's files, the restored ones and the snapshot's folder, return the
    `files` check: the same count and bytes, and no file missing or of another size."""
    want = {os.path.relpath(f.path, origin): f.size for f in listed}
    missing = sorted(set(want) - set(restored))
    extra = sorted(set(restored) - set(want))
    resized = sorted(p for p in set(want) & set(restored) if want[p] != restored[p])
    counts = (f"{len(restored)} file(s), {sum(restored.values())} bytes restored; the "
              f"snapshot lists {len(want)} file(s), {sum(want.values())} bytes")
    problems = [f"{what}: {', '.join(paths[:5])}" for what, paths in
                (("missing", missing), ("not in the snapshot", extra),
                 ("another size", resized)) if paths]
    return CheckResult("files", "builtin", not problems,
                       counts if not problems else f"{counts}; " + "; ".join(problems))


def _reference(restic: Restic, snap: Snapshot, item: Listed) -> tuple[str, str]:
    """The hash to compare a restored file with, and where it came from."""
    source = Path(item.path)
    try:
        info = source.stat()
        if info.st_size == item.size and info.st_mtime_ns == item.mtime_ns:
            return sha256_file(source), "source"
    except OSError:
        pass  # gone or unreadable on this machine: read the repository instead
    digest = hashlib.sha256()
    with restic.dump(snap.id, item.path) as stream:
        while chunk := stream.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest(), "restic dump"


def content_check(restic: Restic, snap: Snapshot, sample: list[Listed], restored_root: Path,
                  origin: str) -> CheckResult:
    """Given the sampled files, return the `content` check: each restored file's SHA-256
    equals its reference (module docstring). Raise the mapped ResticError if `restic dump`
    fails."""
    started = time.monotonic()
    bad: list[str] = []
    by: dict[str, int] = {}
    for item in sample:
        rel = os.path.relpath(item.path, origin)
        restored = restored_root / rel
        if not restored.is_file():
            bad.append(f"{rel}: not restored")
            continue
        have = sha256_file(restored)
        want, where = _reference(restic, snap, item)
        by[where] = by.get(where, 0) + 1
        if have != want:
            bad.append(f"{rel}: sha256 {have[:12]} restored, {want[:12]} in the {where}")
    compared = ", ".join(f"{n} with the {where}" for where, n in sorted(by.items()))
    detail = (f"{len(sample)} file(s) hashed, equal ({compared or 'none'})" if not bad else
              "; ".join(bad[:5]))
    return CheckResult("content", "builtin", not bad, detail, seconds=time.monotonic() - started)


def prove_folder(restic: Restic, snap: Snapshot, target: Path, *, max_files: int,
                 max_bytes: int) -> list[CheckResult]:
    """Given a folder snapshot and an empty temporary folder, restore the snapshot there and
    return the `files` and `content` checks. Raise the mapped ResticError if restic cannot
    list or restore the snapshot."""
    origin = snap.paths[0] if snap.paths else "/"
    listed = list_files(restic, snap)
    restic.run(["restore", f"{snap.id}:{origin}", "--target", str(target)],
               what=f"restoring folder {origin} from snapshot {snap.short_id}")
    checks = [files_check(listed, restored_files(target), origin)]
    sample = choose_sample(listed, max_files=max_files, max_bytes=max_bytes, seed=snap.id)
    checks.append(content_check(restic, snap, sample, target, origin))
    return checks
