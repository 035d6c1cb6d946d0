"""What axe deletes is provably its own (safe_paths.remove_tree): never a folder reached with
`..`, never one outside its owner folder, never one with a mount point (another volume) in it.
Real folders, a real neighbouring volume (a tmpfs mount, as root) whose files must survive."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from axe_pipelines.cold import _remove_debris, find_volumes
from axe_pipelines.config import parse_config
from axe_pipelines.safe_paths import UnsafeRemoval, remove_tree


@pytest.fixture
def neighbour(tmp_path: Path) -> Iterator[Path]:
    """/…/Volumes/axe-cold-2: another volume with files, a real mount when we are root."""
    path = tmp_path / "Volumes" / "axe-cold-2"
    path.mkdir(parents=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "axe-test", str(path)]).returncode == 0
    (path / "restic-repo").mkdir()
    (path / "restic-repo" / "config").write_text("the neighbour's repository\n")
    yield path
    if mounted:
        subprocess.run(["umount", str(path)], check=True)


def test_debris_cleanup_with_a_climbing_subdir_leaves_the_neighbour_volume(tmp_path: Path,
                                                                            neighbour: Path):
    """`repo_subdir: ".."` (refused by config now; here as an older file could have had it):
    the cleanup of what restic wrote after a pull must not remove the mount point's parent."""
    site = parse_config({"axe": {"tiers": {
        "local": {"repository": "/r", "password": {"env": "X"}},
        "cold": {"password": {"env": "C"}, "accept_plain_folders": True,
                 "mount_glob": str(tmp_path / "Volumes" / "axe-cold-*")}}}})
    cold = site.customer("axe").tiers.cold.model_copy(update={"repo_subdir": ".."})
    (tmp_path / "Volumes" / "axe-cold-1").mkdir()  # the pulled volume's bare folder
    volume = next(v for v in find_volumes(cold) if v.name == "axe-cold-1")
    said = _remove_debris(volume, root_id=None)  # the folder is not the one synced onto
    assert "refusing to remove" in said and "climbs up with '..'" in said
    assert (neighbour / "restic-repo" / "config").read_text() == "the neighbour's repository\n"
    assert (tmp_path / "Volumes" / "axe-cold-1").is_dir()


def test_remove_tree_refuses_what_it_cannot_prove_its_own(tmp_path: Path):
    owner = tmp_path / "scratch"
    (owner / "mine" / "deep").mkdir(parents=True)
    (owner / "mine" / "deep" / "dump").write_text("x")
    outside = tmp_path / "keep"
    outside.mkdir()
    (outside / "precious").write_text("y")
    (outside / "inner").mkdir()
    (owner / "link-out").symlink_to(outside)
    for path, why in [(owner / ".." / "keep", "climbs up with '..'"),
                      (outside, "is not inside"),
                      (owner, "is not inside"),
                      (owner / "link-out" / "inner", "is not inside")]:
        with pytest.raises(UnsafeRemoval, match=why):
            remove_tree(path, inside=owner)
    remove_tree(owner / "link-out", inside=owner)  # the link goes, never what it points to
    assert not (owner / "link-out").exists() and (outside / "precious").read_text() == "y"
    remove_tree(owner / "mine", inside=owner)
    assert not (owner / "mine").exists() and owner.is_dir()
    remove_tree(owner / "never-made", inside=owner)  # already gone: nothing to do


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount tmpfs")
def test_remove_tree_never_reaches_into_a_mounted_volume(tmp_path: Path):
    scratch = tmp_path / "scratch" / "work"
    mount = scratch / "mnt"
    mount.mkdir(parents=True)
    assert subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "axe-test",
                           str(mount)]).returncode == 0
    try:
        (mount / "other-volume-file").write_text("z")
        with pytest.raises(UnsafeRemoval, match=f"{mount} below it is a mount point"):
            remove_tree(scratch, inside=tmp_path / "scratch")
        assert (mount / "other-volume-file").read_text() == "z"
    finally:
        subprocess.run(["umount", str(mount)], check=True)
