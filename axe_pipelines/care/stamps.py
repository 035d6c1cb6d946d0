"""When retention and `restic check` last ran on a cold volume, per customer: kept in the
volume's identity marker (`care.<customer>.pruned` / `.checked`, aware ISO times) so the
record travels with the SSD. actions/cold_care.py reads it to see what is due after a sync;
the prune and the check stamp it whenever they ran on a cold volume (the weekly jobs too).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from axe_pipelines.cold import MARKER, read_marker

if TYPE_CHECKING:
    from axe_pipelines.care.repositories import TierRepository


def last_care(volume_path: Path, customer_name: str) -> dict[str, datetime]:
    """Given a volume's folder and a customer, return when retention ("pruned") and the check
    ("checked") last ran on it, as recorded in its marker (unreadable times left out)."""
    record = ((read_marker(volume_path) or {}).get("care") or {}).get(customer_name) or {}
    found = {}
    for what in ("pruned", "checked"):
        try:
            found[what] = datetime.fromisoformat(str(record[what]))
        except (KeyError, ValueError):
            continue
    return found


def stamp_care(repo: TierRepository, what: str, now: datetime) -> None:
    """Given a cold repository (others are ignored), record in its volume's marker that `what`
    ("pruned" or "checked") ran at `now`. Call it under the volume's lock (repo.guard()). A
    volume that cannot be written keeps its old stamp (the care is then due again)."""
    if repo.tier != "cold" or repo.path is None:
        return
    marker = read_marker(repo.path)
    if marker is None:
        return  # never synced: the sync writes the marker first
    marker.setdefault("care", {}).setdefault(repo.customer, {})[what] = now.isoformat()
    tmp = repo.path / f".{MARKER}.care.tmp"
    try:
        tmp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, repo.path / MARKER)
    except OSError:
        return
