"""Which process runs a run, and whether it provably no longer does; each run's own folder.

A run `axe` starts records its process (host, pid, and on Linux the boot and the process's
start tick, so a pid the kernel has handed to another process since does not look alive) in
its Dagster tags and in `<DAGSTER_HOME>/axe/runs/<run id>/owner.json`. That folder is also
the run's scratch space (the dump tools' stderr files): the next run removes the folders whose
process is gone, and never anything outside `<DAGSTER_HOME>/axe/runs`. Plain: no Dagster here.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from axe_pipelines.instance import DEFAULT_HOME
from axe_pipelines.safe_paths import UnsafeRemoval, remove_tree

OWNER_FILE = "owner.json"


def _start_token(pid: int) -> str | None:
    """The boot and start tick of `pid` (Linux /proc), None where /proc does not say."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts after the command name, which may hold spaces: split after
    # its closing parenthesis.
    return f"{boot}/{stat.rsplit(')', 1)[1].split()[19]}"


@dataclass(frozen=True)
class ProcessRecord:
    """A process as a run records it: host, pid, and start token (None off Linux)."""

    host: str
    pid: int
    start: str | None = None

    @classmethod
    def current(cls) -> ProcessRecord:
        """Return the record of this process."""
        return cls(socket.gethostname(), os.getpid(), _start_token(os.getpid()))

    @property
    def gone(self) -> bool:
        """True when the process is provably gone: it ran on this host and no process has its
        pid, or one has it that started later (or in another boot). A process on another host
        is never provably gone."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
        if self.start is None:
            return False
        now = _start_token(self.pid)
        return now is not None and now != self.start

    def as_dict(self) -> dict[str, str]:
        """Return the record as strings (for run tags and owner.json)."""
        return {"host": self.host, "pid": str(self.pid), "start": self.start or ""}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ProcessRecord | None:
        """Given as_dict's output (or run tags holding it), return the record, or None when
        it names no host and pid."""
        try:
            return cls(str(data["host"]), int(data["pid"]), data.get("start") or None)
        except (KeyError, TypeError, ValueError):
            return None


def runs_dir() -> Path:
    """Return `<DAGSTER_HOME>/axe/runs`, the folder that holds one folder per live run."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).expanduser().resolve()
    return home / "axe" / "runs"


def _run_path(run_id: str) -> Path:
    if not run_id or not all(c.isalnum() or c == "-" for c in run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return runs_dir() / run_id


def run_dir(run_id: str) -> Path:
    """Given a run id, return its folder (0700), made with this process as its owner unless it
    exists. Raise OSError if it cannot be made."""
    path = _run_path(run_id)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = path / OWNER_FILE
    if not owner.exists():
        owner.write_text(json.dumps(ProcessRecord.current().as_dict()))
    return path


def owner_of(run_id: str) -> ProcessRecord | None:
    """Given a run id, return the process its folder names, or None without one."""
    try:
        return ProcessRecord.from_dict(json.loads((_run_path(run_id) / OWNER_FILE).read_text()))
    except (OSError, ValueError):
        return None


def release(run_id: str) -> None:
    """Given a run id, remove its folder (the run has ended)."""
    remove_tree(_run_path(run_id), inside=runs_dir())


def sweep() -> list[str]:
    """Remove the folder of every run whose process is provably gone (a killed run's
    leftovers), only folders directly inside runs_dir(); return their run ids."""
    root = runs_dir()
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.iterdir()):
        if path.is_symlink() or not path.is_dir():
            continue
        owner = owner_of(path.name)
        if owner is not None and owner.gone:
            try:
                remove_tree(path, inside=root)
            except UnsafeRemoval:
                continue  # a mount point inside: not ours to remove
            removed.append(path.name)
    return removed
