"""What restic talks about: a repository (where, and how to open it), a snapshot, the summary
of a backup. Plain data, read from restic's `--json` output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from axe_pipelines.secrets import SecretSource

RESTIC_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Repository:
    """Where a repository is and how to open it. `label` names it in messages
    ("tier A repository /x")."""

    location: str
    password: SecretSource
    label: str
    extra_args: tuple[str, ...] = ()  # e.g. ("-o", "sftp.args=...") for the sftp backend


@dataclass(frozen=True)
class Snapshot:
    """One restic snapshot as `restic snapshots --json` lists it; `original` is the id it was
    copied from (tiers B and C), None for a snapshot made here."""

    id: str
    short_id: str
    time: datetime
    tags: tuple[str, ...]
    paths: tuple[str, ...]
    hostname: str
    original: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def tag(self, key: str) -> str | None:
        """Given a tag key, return the value of this snapshot's `key=value` tag, or None."""
        prefix = key + "="
        for t in self.tags:
            if t.startswith(prefix):
                return t[len(prefix):]
        return None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        """Given one entry of `restic snapshots --json`, return the Snapshot."""
        return cls(
            id=data["id"],
            short_id=data.get("short_id", data["id"][:8]),
            time=parse_time(data["time"]),
            tags=tuple(data.get("tags") or ()),
            paths=tuple(data.get("paths") or ()),
            hostname=data.get("hostname", ""),
            original=data.get("original"),
            summary=data.get("summary") or {},
        )


@dataclass(frozen=True)
class BackupSummary:
    """What `restic backup --json` reported at its end."""

    snapshot_id: str
    bytes_read: int
    bytes_added: int
    duration_s: float

    @classmethod
    def from_json(cls, summary: dict[str, Any]) -> BackupSummary:
        """Given restic's `summary` message (with a snapshot id), return the BackupSummary."""
        return cls(
            snapshot_id=summary["snapshot_id"],
            bytes_read=int(summary.get("total_bytes_processed") or 0),
            bytes_added=int(summary.get("data_added") or 0),
            duration_s=float(summary.get("total_duration") or 0.0),
        )


def parse_time(text: str) -> datetime:
    """Given a time as restic prints it (RFC 3339 with up to nanoseconds), return it as an
    aware datetime (microseconds: Python has no finer unit)."""
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return datetime.fromisoformat(text)
    frac = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}{frac}{zone}")


def from_repo_env(repo: Repository) -> dict[str, str]:
    """Given the source repository of a `restic copy`/`init --from-repo`, return the
    environment that gives restic its password as RESTIC_FROM_* (never in argv)."""
    env = {}
    for key, value in repo.password.restic_env().items():
        env[key.replace("RESTIC_", "RESTIC_FROM_", 1)] = value
    return env
