"""Repository damage, made visible: when reading a snapshot back meets a damaged pack file
(restic/errors.RepositoryDamaged), say which older snapshots of the same item do not use that
pack, and record the damage where `axe status` and `axe doctor` look.

Deduplication makes one damaged pack poison every later backup that reuses its blobs (restic
reports the new backup as fine: it never reads the old blob), so the first reader to meet it
names it: the restorable check after each backup, a restore, an integrity check. The record
is `axe-damage.json` in the Dagster home (one entry per repository location); it goes away
when `axe check --read-data` passes on that repository (`clear_damage`), or, for a repository
on a local disk, when the pack file is gone (repaired or pruned).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from axe_pipelines.restic import RepositoryDamaged, Restic, ResticError, Snapshot

RECORD = "axe-damage.json"
SHOWN_SETS = 3


def _record_path() -> Path:
    home = os.environ.get("DAGSTER_HOME") or "~/.axe/dagster"
    return Path(home).expanduser() / RECORD


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_record_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(data: dict[str, Any]) -> None:
    path = _record_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # the error line itself still names the damage; the record only helps status


def record_damage(restic: Restic, exc: RepositoryDamaged, by: str) -> None:
    """Given the repository, the damage met and who met it ("restorable check of db/frame"),
    remember it for `axe status`/`axe doctor` (the newest finding per repository)."""
    data = _read()
    data[restic.repo.location] = {"pack": exc.pack, "cause": exc.cause, "by": by,
                                  "label": restic.repo.label,
                                  "seen": datetime.now(UTC).isoformat(timespec="seconds")}
    _write(data)


def clear_damage(location: str) -> None:
    """Given a repository location, forget its recorded damage (after a passing
    `restic check --read-data`, or a repair)."""
    data = _read()
    if data.pop(location, None) is not None:
        _write(data)


def _pack_gone(location: str, pack: str) -> bool:
    """True when the repository is a local folder and no pack file starting with `pack` is
    left in it (repaired or pruned); False when that cannot be known (sftp, unreadable)."""
    data = Path(location) / "data" / pack[:2]
    if ":" in location.split("/", 1)[0] or not (Path(location) / "config").is_file():
        return False
    try:
        return not any(p.name.startswith(pack) for p in data.iterdir())
    except OSError:
        return not data.exists()


def recorded_damage(location: str) -> str | None:
    """Given a repository location, return the line saying what damage was seen there and
    what to run, or None when none is recorded (or its pack is gone since)."""
    seen = _read().get(location)
    if not isinstance(seen, dict):
        return None
    if _pack_gone(location, str(seen.get("pack", ""))):
        clear_damage(location)
        return None
    return (f"pack {str(seen.get('pack'))[:8]} of {seen.get('label', location)} is damaged "
            f"({seen.get('cause')}; seen {seen.get('seen')} by {seen.get('by')}): run `restic "
            f"check --read-data` on it (`axe check --read-data`), then `restic repair packs` "
            f"or a new backup")


def _item(snap: Snapshot) -> tuple[str | None, ...]:
    return (snap.tag("customer"), snap.tag("kind"), snap.tag("database"), snap.tag("server"),
            snap.tag("folder"))


def clear_of(restic: Restic, pack: str, snapshot_id: str) -> list[Snapshot] | None:
    """Given a damaged pack and the snapshot that met it, return the other snapshots of the
    same item (customer, kind, name) that use no blob of that pack, newest first; None when
    restic cannot say (`restic find --pack` failed)."""
    try:
        snaps = restic.snapshots()
        found = json.loads(restic.run(["find", "--json", "--pack", pack],
                                      what=f"looking for the snapshots using pack {pack[:8]}")
                           or "[]")
    except (ResticError, ValueError):
        return None
    touching = {m.get("snapshot", "") for m in found if isinstance(m, dict)}
    met = next((s for s in snaps if s.id.startswith(snapshot_id)), None)
    if met is None:
        return None
    return [s for s in reversed(snaps) if _item(s) == _item(met) and s.id != met.id
            and s.id not in touching]


def explain_damage(restic: Restic, exc: RepositoryDamaged, snapshot_id: str, by: str) -> str:
    """Given damage met reading `snapshot_id`, record it and return the operator's line:
    which pack of which repository, what to run, and the older snapshots of the same item
    that do not use the pack (the --as-of values that would work)."""
    record_damage(restic, exc, by)
    clear = clear_of(restic, exc.pack, snapshot_id)
    if clear is None:
        older = "older sets: unknown (`restic find --pack` failed)"
    elif not clear:
        older = "no other snapshot of it is clear of that pack"
    else:
        older = "older sets clear of it: " + ", ".join(
            f"--as-of {s.time.isoformat(timespec='minutes')} (snapshot {s.short_id})"
            for s in clear[:SHOWN_SETS])
    return f"{exc}; {older}"
