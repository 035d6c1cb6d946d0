"""Deleting only what is the tool's own: every folder axe removes (scratch folders, a staging
cluster, an initialisation cut short, restic's debris on a bare mount point) goes through
`remove_tree`, which first proves the folder is inside the folder it belongs to.

Proven means: the path as given has no `..`; resolved (symlinks followed) it lies strictly
below the resolved owner folder; and neither it nor anything below it is a mount point, so a
removal never reaches into another volume (a `repo_subdir: ".."` once made the debris cleanup
remove the mount point's parent, with a neighbouring volume's files under it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from axe_pipelines.errors import Unusable


class UnsafeRemoval(Unusable):
    """A folder was not removed because it could not be proven to be the tool's own; the
    message says which folder, why, and that nothing was removed."""


def _refuse(path: Path, root: Path, why: str) -> UnsafeRemoval:
    return UnsafeRemoval(f"refusing to remove {path}: {why}; only a folder inside {root} "
                         f"(resolved, without '..', with no mount point in it) is removed; "
                         f"nothing was removed")


def proven_inside(path: Path, root: Path) -> Path:
    """Given a path about to be deleted and the folder it must be inside, return the path
    resolved. Raise UnsafeRemoval when the path has a `..` part, or resolved is the folder
    itself, or lies outside it."""
    if ".." in path.parts:
        raise _refuse(path, root, "the path climbs up with '..'")
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real == real_root or real_root not in real.parents:
        raise _refuse(path, root, f"it resolves to {real}, which is not inside {real_root}")
    return real


def _mount_below(real: Path) -> Path | None:
    """The first mount point at or below `real` (a device change counts), None if none."""
    if os.path.ismount(real):
        return real
    device = real.lstat().st_dev
    for folder, dirs, _files in os.walk(real):
        for name in dirs:
            here = Path(folder, name)
            try:
                if not here.is_symlink() and (os.path.ismount(here) or
                                              here.lstat().st_dev != device):
                    return here
            except OSError:
                continue
    return None


def remove_tree(path: Path, *, inside: Path) -> None:
    """Given a folder to delete and the folder it must be inside, remove it (what cannot be
    removed, e.g. already gone, is left as it is; a symlink is removed, never followed).
    Raise UnsafeRemoval, removing nothing, when it is not proven inside `inside` or a mount
    point is at or below it."""
    if not os.path.lexists(path):
        return
    if path.is_symlink():
        # The link itself is removed, so it is the link's folder that must be ours.
        real_parent = Path(os.path.realpath(path.parent))
        real_root = Path(os.path.realpath(inside))
        if ".." in path.parts or (real_parent != real_root and
                                  real_root not in real_parent.parents):
            raise _refuse(path, inside, "the link is not inside it")
        path.unlink(missing_ok=True)
        return
    real = proven_inside(path, inside)
    mount = _mount_below(real)
    if mount is not None:
        raise _refuse(path, inside, f"{mount} below it is a mount point (another volume)")
    shutil.rmtree(real, ignore_errors=True)
