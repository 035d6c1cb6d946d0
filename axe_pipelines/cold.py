"""Tier C, cold SSDs: find mounted volumes, sync the latest tier-A set onto one with
`restic copy`. Plain functions; the quarter rotation is rotation.py, the Dagster layer
assets/tier_c.py and sensors/cold.py.

A volume is a directory matching `tiers.cold.mount_glob` (default `/Volumes/axe-cold-*`) that
is a mount point — or any directory when `accept_plain_folders` is on (tests, demo). Its
repository is `<volume>/<repo_subdir>`; next to it an identity marker `axe-cold-volume.json`
records the volume number, a random id, when it was created and when each customer last
synced onto it.

A new repository is created in a temporary folder on the volume and renamed into place only
when `restic init` succeeded, so a volume pulled out during initialisation never holds a
half-made repository that looks valid. One sync at a time per volume (a lock file on the
volume), whatever started it (sensor, CLI, UI).
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from axe_pipelines.backup import local_repository
from axe_pipelines.config import Customer, Site
from axe_pipelines.config_tiers import ColdTier
from axe_pipelines.copying import NoSetToCopy, copy_set, newest_finished_set
from axe_pipelines.errors import ItemFailed
from axe_pipelines.restic import Repository, Restic, ResticError, WrongPassword
from axe_pipelines.safe_paths import UnsafeRemoval, proven_inside, remove_tree
from axe_pipelines.secrets import SecretError
from axe_pipelines.sets import BackupSet

MARKER = "axe-cold-volume.json"
LOCK_FILE = ".axe-cold.lock"
INIT_PREFIX = ".axe-init-"


class ColdError(ItemFailed):
    """Tier C failed or is not available; the message names the volume and the next step."""


@dataclass(frozen=True)
class Volume:
    """A cold volume present now: where it is and its repository, whether it is a real mount
    point, the token of this mount, its number in the rotation and its identity marker."""

    path: Path
    repo_path: Path
    mounted: bool  # a real mount point (False: a plain folder accepted by config)
    mount_token: str  # changes when the volume is unmounted and mounted again
    number: int | None
    marker: dict[str, Any] | None

    @property
    def name(self) -> str:
        """Return the volume's folder name (`axe-cold-2`)."""
        return self.path.name

    @property
    def identity(self) -> str:
        """The marker's id once the volume has one, else its folder name."""
        return str((self.marker or {}).get("id") or self.name)

    def label(self) -> str:
        """Return the volume as messages name it: `cold volume axe-cold-2 (#2) at /Volumes/..`."""
        num = f" (#{self.number})" if self.number else ""
        return f"cold volume {self.name}{num} at {self.path}"


@dataclass
class SyncResult:
    """What one sync did: the set, what was copied or already there, and when the sync was
    recorded in the volume's marker."""

    customer: str
    volume: Volume
    run_id: str
    set_time: datetime
    copied: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    bytes: int = 0
    duration_s: float = 0.0
    created_repository: bool = False
    cleared_locks: int = 0
    synced_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    the_set: BackupSet | None = None


def cold_settings(customer_name: str, customer: Customer) -> ColdTier:
    """`tiers.cold` of the customer; ColdError when it is not configured."""
    if not (customer.tiers and customer.tiers.cold):
        raise ColdError(f"tier C of {customer_name}: no tiers.cold in customers.yaml (add a "
                        f"cold section with its own password source)")
    return customer.tiers.cold


def _mount_id(path: Path) -> str | None:
    """Linux's id of the mount at `path` (new for every mount), from /proc/self/mountinfo."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    target = str(path)
    found = None
    for line in lines:
        parts = line.split()
        if len(parts) > 4 and parts[4].encode().decode("unicode_escape") == target:
            found = parts[0]  # the last one listed is the one on top
    return found


def mount_token(path: Path, mounted: bool) -> str:
    """Given a volume's folder, return a token that changes when it is unmounted and mounted
    again: Linux's mount id and the device for a mount point, device and inode for a plain
    folder. Raise OSError when the folder is gone."""
    st = path.stat()
    if mounted:
        return f"mnt{_mount_id(path) or ''}-dev{st.st_dev}"
    return f"dir{st.st_dev}-{st.st_ino}"


def read_marker(volume_path: Path) -> dict[str, Any] | None:
    """Given a volume's folder, return its identity marker, or None when it has none (or an
    unreadable one)."""
    try:
        data = json.loads((volume_path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(volume_path: Path, data: dict[str, Any]) -> None:
    tmp = volume_path / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, volume_path / MARKER)


def _number_from_name(name: str) -> int | None:
    m = re.search(r"(\d+)$", name)
    return int(m[1]) if m else None


def find_volumes(cold: ColdTier) -> list[Volume]:
    """Every volume present now, in path order."""
    found = []
    for text in sorted(glob.glob(os.path.expanduser(cold.mount_glob))):
        path = Path(text)
        try:
            if not path.is_dir():
                continue
            mounted = os.path.ismount(path)
            if not mounted and not cold.accept_plain_folders:
                continue  # an empty mount-point folder left behind by an unmounted disk
            token = mount_token(path, mounted)
        except OSError:
            continue
        marker = read_marker(path)
        number = (marker or {}).get("number") or _number_from_name(path.name)
        found.append(Volume(path=path, repo_path=path / cold.repo_subdir, mounted=mounted,
                            mount_token=token, number=int(number) if number else None,
                            marker=marker))
    return found


def volume_at(cold: ColdTier, path: str | Path) -> Volume:
    """The volume at `path` if it is present and counts; ColdError otherwise."""
    for volume in find_volumes(cold):
        if volume.path == Path(path):
            return volume
    raise ColdError(f"tier C: {path} is not a mounted cold volume now (glob {cold.mount_glob}"
                    f"{'' if cold.accept_plain_folders else ', mount points only'}); mount it "
                    f"and try again")


@contextmanager
def volume_lock(volume: Volume, timeout: float) -> Iterator[None]:
    """Holds the volume's lock file: one sync per volume repository at a time. Waits up to
    `timeout` seconds for another sync to finish, then raises ColdError."""
    try:
        handle = open(volume.path / LOCK_FILE, "a+")  # noqa: SIM115 - held for the block
    except OSError as exc:
        raise ColdError(f"tier C: cannot open the lock file on {volume.label()}: "
                        f"{exc.strerror}; is the volume writable?") from None
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ColdError(f"tier C: another sync of {volume.label()} is still "
                                    f"running after {timeout:.0f} s; try again later") from None
                time.sleep(0.2)
        yield
    finally:
        handle.close()  # closing releases the lock


def volume_restic(volume: Volume, cold: ColdTier) -> Restic:
    """Given a present volume, return a Restic for the repository on it (tier C's password,
    every call bounded by `timeout_s`)."""
    return _restic(volume, cold)


def _restic(volume: Volume, cold: ColdTier, path: Path | None = None) -> Restic:
    repo = path or volume.repo_path
    return Restic(Repository(str(repo), cold.password, f"tier C repository on {volume.label()}"),
                  timeout=cold.timeout_s)


def _init_atomically(volume: Volume, cold: ColdTier, source: Repository) -> None:
    """restic init into a temporary folder, then rename it into place."""
    tmp = volume.path / f"{INIT_PREFIX}{uuid.uuid4().hex[:8]}"
    try:
        _restic(volume, cold, tmp).init(copy_chunker_params_from=source)
        os.rename(tmp, volume.repo_path)
    finally:
        remove_tree(tmp, inside=volume.path)


def _gone(volume: Volume, cold: ColdTier) -> bool:
    """True when the volume is no longer there (removed, unmounted, remounted)."""
    try:
        return volume_at(cold, volume.path).mount_token != volume.mount_token
    except ColdError:
        return True


def _dir_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _remove_debris(volume: Volume, root_id: tuple[int, int] | None) -> str:
    """restic's local backend re-creates missing folders when it saves a file, so a restic
    still writing after the volume went away leaves `restic-repo/...` on the disk underneath
    (under the bare mount point, or as a new plain folder). That is not the volume: remove it,
    so nothing there poses as a cold repository or fills the system disk. Only a tree with no
    restic config and no axe marker, in a folder that is not the one the sync started on."""
    path = volume.path
    now_id = _dir_id(path)
    if now_id is None or now_id == root_id or (path / MARKER).exists():
        return ""
    entries = list(path.iterdir())
    if any(e.name != volume.repo_path.name for e in entries) or (
            volume.repo_path / "config").exists():
        return ""
    try:
        proven_inside(volume.repo_path, path)
        files = sum(1 for p in volume.repo_path.rglob("*") if p.is_file())
        remove_tree(volume.repo_path, inside=path)
    except UnsafeRemoval as exc:
        return f" (what restic wrote there is left: {exc})"
    if not volume.mounted and not any(path.iterdir()):
        path.rmdir()  # a plain folder restic made anew: it was not there before
    return f" (removed {files} file(s) restic wrote to {path} after the volume had gone)"


def _prepare_repository(volume: Volume, cold: ColdTier, source: Repository, restic: Restic,
                        result: SyncResult, say: Callable[[str], None]) -> dict[str, Any]:
    """Create the volume's repository on first use (or clear its provably stale locks) and
    give the volume its identity marker; return the marker. Raise ColdError when the
    repository folder holds something that is not a restic repository."""
    if not (volume.repo_path / "config").is_file():
        if volume.repo_path.exists() and any(volume.repo_path.iterdir()):
            raise ColdError(
                f"tier C: {volume.repo_path} exists but is not a restic repository "
                f"(no config file); it was not made by axe or is damaged. Move it "
                f"away and mount the volume again; nothing was written")
        if volume.repo_path.exists():
            volume.repo_path.rmdir()
        _init_atomically(volume, cold, source)
        result.created_repository = True
        say(f"tier C: created the repository on {volume.label()}")
    else:
        result.cleared_locks = len(restic.clear_stale_locks())
    marker = read_marker(volume.path) or {}
    if not marker.get("id"):
        marker.update(id=uuid.uuid4().hex, created_at=datetime.now(UTC).isoformat(),
                      number=volume.number, volume=volume.name)
        _write_marker(volume.path, marker)
    return marker


def _failure(exc: ResticError | OSError | SecretError, volume: Volume, cold: ColdTier,
             root_id: tuple[int, int] | None) -> ColdError:
    """The ColdError for a sync that failed part way: a wrong password, a volume that went
    away (its debris removed), or another failure of restic or the disk."""
    if isinstance(exc, WrongPassword):
        return ColdError(f"tier C: {exc}; the cold password is kept apart from tier A's "
                         f"(on paper); nothing on tier A changed")
    why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
    if _gone(volume, cold):
        debris = _remove_debris(volume, root_id)
        return ColdError(f"tier C: {volume.label()} went away during the sync ({why}); "
                         f"nothing on tier A changed{debris}; mount it again and the "
                         f"next sync finishes the copy")
    return ColdError(f"tier C: sync of {volume.label()} failed: {why}; nothing on tier "
                     f"A changed; try again or run `restic check` on the volume")


def sync_volume(config: Site, customer_name: str, volume: Volume, *,
                now: datetime | None = None,
                log: Callable[[str], None] | None = None,
                in_progress: Callable[[str], bool] | None = None) -> SyncResult:
    """Given a mounted volume, copy every snapshot of the latest finished tier-A set that it
    lacks (a set whose tier-A run is still writing it, per `in_progress(run_id)`, is left out)
    and return the SyncResult.

    Creates the volume's repository (and identity marker) on first use, clears provably stale
    locks, copies, reads the volume back to confirm (copying.copy_set) and records the sync
    in the marker. Idempotent: an interrupted sync is finished by the next one. Raise
    ColdError.
    """
    say = log or (lambda _msg: None)
    customer = config.customer(customer_name)
    cold = cold_settings(customer_name, customer)
    source = local_repository(customer_name, customer)
    started = time.monotonic()
    with volume_lock(volume, cold.timeout_s):
        try:
            the_set = newest_finished_set(customer_name, customer, tier="tier C",
                                          in_progress=in_progress, say=say)
        except NoSetToCopy as exc:
            raise ColdError(str(exc) + ("; mount the volume again (or run `axe backup "
                                        "--cold`) when it has finished" if exc.waiting
                                        else "")) from None
        for leftover in volume.path.glob(f"{INIT_PREFIX}*"):
            remove_tree(leftover, inside=volume.path)  # an initialisation cut short
        result = SyncResult(customer=customer_name, volume=volume, run_id=the_set.run_id,
                            set_time=the_set.time, the_set=the_set)
        restic = _restic(volume, cold)
        root_id = _dir_id(volume.path)
        try:
            marker = _prepare_repository(volume, cold, source, restic, result, say)
            copied = copy_set(restic, source, the_set, customer_name, tier="tier C",
                              to=volume.label(), say=say)
            if not copied.still_missing:
                result.synced_at = now or datetime.now(UTC)
                marker.setdefault("last_sync", {})[customer_name] = result.synced_at.isoformat()
                _write_marker(volume.path, marker)
        except (ResticError, OSError, SecretError) as exc:
            raise _failure(exc, volume, cold, root_id) from None
        if copied.still_missing:
            raise ColdError(f"tier C: {len(copied.still_missing)} snapshot(s) of set "
                            f"{the_set.run_id[:8]} still missing on {volume.label()} after "
                            f"the copy; try again")
        result.copied, result.already_present = copied.copied, copied.already_present
        result.bytes = copied.bytes
        result.volume = Volume(volume.path, volume.repo_path, volume.mounted, volume.mount_token,
                               volume.number or marker.get("number"), marker)
        result.duration_s = time.monotonic() - started
        return result


def open_cold(config: Site, customer_name: str) -> Restic:
    """Given a customer with tier C, return a Restic for its copy on a mounted volume (the
    most recently synced one). Raise ColdError when no volume with a repository is mounted."""
    customer = config.customer(customer_name)
    cold = cold_settings(customer_name, customer)
    volumes = [v for v in find_volumes(cold) if (v.repo_path / "config").is_file()]
    if not volumes:
        raise ColdError(f"tier C of {customer_name}: no cold volume with a repository is "
                        f"mounted ({cold.mount_glob}); mount one of the SSDs")

    def last(v: Volume) -> str:
        return str(((v.marker or {}).get("last_sync") or {}).get(customer_name, ""))

    return _restic(max(volumes, key=last), cold)
