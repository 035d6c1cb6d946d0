"""Tier C's rotation from a start quarter (`rotation_start: 2026-Q4`): a site whose first
sync is mid-year is not red on that sync, and the config says which start it means."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.checks.tier_c import volumes_current_result
from axe_pipelines.config import ConfigError, parse_config
from axe_pipelines.config_tiers import ColdTier
from axe_pipelines.names import tier_c_key
from axe_pipelines.rotation import expected_volume, first_turn_ends, overdue_volumes

KST = ZoneInfo("Asia/Seoul")


def cold(**extra) -> ColdTier:
    return ColdTier.model_validate({"password": {"file": "/p"}, **extra})


def test_a_start_quarter_expects_volume_1_then_moves_on_across_years():
    start = cold(rotation_start="2026-Q4").rotation_origin
    assert start == "2026-Q4"
    months = [(2026, 10), (2027, 1), (2027, 4), (2027, 7), (2027, 10)]
    assert [expected_volume(datetime(y, m, 1, tzinfo=KST), 3, start) for y, m in months] == [
        1, 2, 3, 1, 2]
    # Before the start the count runs backwards and still wraps (never a volume #0).
    assert expected_volume(datetime(2026, 7, 1, tzinfo=KST), 3, start) == 3
    # Without rotation_start: Q1 of rotation_start_year, as before.
    assert cold().rotation_origin == "2026-Q1"
    assert cold(rotation_start_year=2027).rotation_origin == "2027-Q1"
    assert expected_volume(datetime(2026, 10, 1), 3, "2026-Q1") == expected_volume(
        datetime(2026, 10, 1), 3, 2026) == 1


def test_first_turns_end_quarter_by_quarter_from_the_start():
    assert first_turn_ends(3, "2026-Q4", "Asia/Seoul") == {
        1: datetime(2027, 1, 1, tzinfo=KST), 2: datetime(2027, 4, 1, tzinfo=KST),
        3: datetime(2027, 7, 1, tzinfo=KST)}
    assert first_turn_ends(3, "2026-Q1", "Asia/Seoul") == first_turn_ends(3, 2026, "Asia/Seoul")


def test_a_site_starting_in_november_is_not_red_on_its_first_sync():
    first_sync = {1: datetime(2026, 11, 20, 9, tzinfo=KST)}
    now = datetime(2026, 11, 20, 10, tzinfo=KST)
    key = tier_c_key("axe")
    mid_year = cold(rotation_start="2026-Q4")
    assert expected_volume(now, 3, mid_year.rotation_origin) == 1
    ok = volumes_current_result(key, first_sync, 3, mid_year.overdue_days, now,
                                first_turn_ends(3, mid_year.rotation_origin, "Asia/Seoul"))
    assert ok.passed, ok.description
    assert ok.metadata["not_yet_due"].value == ["#2 (its first quarter ends 2027-04-01)",
                                                "#3 (its first quarter ends 2027-07-01)"]
    # The same first sync counted from Q1 2026 (the default) is red: #2 and #3 "never synced".
    default = cold()
    red = volumes_current_result(key, first_sync, 3, default.overdue_days, now,
                                 first_turn_ends(3, default.rotation_origin, "Asia/Seoul"))
    assert not red.passed and "#2 never synced" in red.description


def test_overdue_volumes_counts_days_and_first_turns():
    now = datetime(2027, 9, 1, tzinfo=KST)
    late, not_yet = overdue_volumes({1: datetime(2027, 1, 2, tzinfo=KST)}, 3, 100, now,
                                    first_turn_ends(3, "2026-Q4", "Asia/Seoul"))
    assert late == ["#1 last synced 2027-01-02 (242 days ago)", "#2 never synced",
                    "#3 never synced"] and not_yet == []


def test_rotation_start_is_a_quarter_and_not_given_twice():
    base = {"tiers": {"local": {"repository": "/r", "password": {"env": "A"}},
                      "cold": {"password": {"env": "C"}}}}

    def with_cold(**extra):
        data = {"axe": {**base, "tiers": {**base["tiers"],
                                          "cold": {**base["tiers"]["cold"], **extra}}}}
        return parse_config(data)

    assert with_cold(rotation_start="2026-Q4").customers["axe"].tiers.cold.rotation_origin == \
        "2026-Q4"
    with pytest.raises(ConfigError, match="rotation_start"):
        with_cold(rotation_start="2026-10")
    with pytest.raises(ConfigError, match="not both"):
        with_cold(rotation_start="2026-Q4", rotation_start_year=2026)
