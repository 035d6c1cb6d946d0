"""cold.py's rotation and volume finding, on plain folders standing in for mounts."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.cold import (
    MARKER,
    ColdError,
    find_volumes,
    volume_at,
)
from axe_pipelines.config_tiers import ColdTier
from axe_pipelines.rotation import expected_volume, first_turn_ends

KST = ZoneInfo("Asia/Seoul")


def cold(tmp_path: Path, **extra) -> ColdTier:
    return ColdTier.model_validate({"password": {"file": "/p"}, "accept_plain_folders": True,
                                    "mount_glob": str(tmp_path / "axe-cold-*"), **extra})


def test_expected_volume_counts_quarters_on_across_years():
    assert [expected_volume(datetime(2026, m, 1), 3) for m in (1, 4, 7, 10)] == [1, 2, 3, 1]
    assert [expected_volume(datetime(2027, m, 1), 3) for m in (1, 4, 7, 10)] == [2, 3, 1, 2]
    assert expected_volume(datetime(2026, 3, 31, 23, 59), 3) == 1
    assert expected_volume(datetime(2027, 1, 1), 3, start_year=2027) == 1
    assert {expected_volume(datetime(2030, m, 1), 1) for m in range(1, 13)} == {1}


def test_first_turn_ends_at_the_end_of_the_quarter_that_first_expects_the_volume():
    assert first_turn_ends(3, 2026, "Asia/Seoul") == {
        1: datetime(2026, 4, 1, tzinfo=KST), 2: datetime(2026, 7, 1, tzinfo=KST),
        3: datetime(2026, 10, 1, tzinfo=KST)}
    assert first_turn_ends(5, 2026, "Asia/Seoul")[5] == datetime(2027, 4, 1, tzinfo=KST)


def test_find_volumes_numbers_them_by_marker_else_by_name(tmp_path: Path):
    (tmp_path / "axe-cold-2").mkdir()
    (tmp_path / "axe-cold-x").mkdir()
    (tmp_path / "axe-cold-x" / MARKER).write_text(json.dumps({"id": "abc", "number": 3}))
    (tmp_path / "axe-cold-file").write_text("not a folder")
    found = find_volumes(cold(tmp_path))
    assert [(v.name, v.number, v.identity) for v in found] == [
        ("axe-cold-2", 2, "axe-cold-2"), ("axe-cold-x", 3, "abc")]
    assert found[0].repo_path == tmp_path / "axe-cold-2" / "restic-repo"
    assert found[0].label() == f"cold volume axe-cold-2 (#2) at {tmp_path / 'axe-cold-2'}"
    # Without accept_plain_folders only mount points count: an empty mount-point folder left
    # behind by an unmounted disk is no volume.
    assert find_volumes(cold(tmp_path, accept_plain_folders=False)) == []


def test_the_mount_token_changes_when_the_folder_comes_back_as_another(tmp_path: Path):
    path = tmp_path / "axe-cold-1"
    path.mkdir()
    before = volume_at(cold(tmp_path), path).mount_token
    other = tmp_path / "elsewhere"
    other.mkdir()  # made while the first exists: another inode
    path.rmdir()
    other.rename(path)
    assert volume_at(cold(tmp_path), path).mount_token != before


def test_volume_at_a_path_that_is_not_a_volume(tmp_path: Path):
    with pytest.raises(ColdError, match="is not a mounted cold volume now") as info:
        volume_at(cold(tmp_path, accept_plain_folders=False), tmp_path / "axe-cold-9")
    assert "mount points only" in str(info.value) and info.value.exit_code == 1
