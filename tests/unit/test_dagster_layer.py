"""The Dagster layer's pure pieces: a run's logical time, the mount sensor's plan, the
inbound sensor's events, on plain folders standing in for volumes and the peer's pushes."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from axe_pipelines.assets.tier_a import logical_time
from axe_pipelines.config import RingBackup
from axe_pipelines.config_tiers import ColdTier
from axe_pipelines.sensors.cold import plan_syncs
from axe_pipelines.sensors.inbound import inbound_events

KST = ZoneInfo("Asia/Seoul")


def test_logical_time_is_the_schedules_tick_else_now_in_whole_seconds():
    tick = {"dagster/scheduled_execution_time": "2026-05-19T18:00:00+00:00"}
    assert logical_time(tick, "Asia/Seoul") == datetime(2026, 5, 20, 3, tzinfo=KST)
    now = datetime(2026, 5, 20, 3, 0, 42, 123456, tzinfo=UTC)
    at = logical_time({}, "Asia/Seoul", now=now)
    assert at == now.replace(microsecond=0) and at.tzinfo == KST
    # `axe backup` chose its run's time before the run; a re-execution from the UI copies
    # that tag, but is a backup of now.
    chosen = {"axe/logical_time": "2026-05-18T03:00:00+09:00"}
    assert logical_time(chosen, "Asia/Seoul", now=now) == datetime(2026, 5, 18, 3, tzinfo=KST)
    assert logical_time(chosen, "Asia/Seoul", now=now, rerun=True) == now.replace(microsecond=0)


def test_the_mount_sensor_asks_once_per_mount(tmp_path: Path):
    cold = ColdTier.model_validate({"password": {"file": "/p"}, "accept_plain_folders": True,
                                    "mount_glob": str(tmp_path / "axe-cold-*")})
    requests, cursor = plan_syncs("axe", cold, None)
    assert requests == []
    vol = tmp_path / "axe-cold-1"
    vol.mkdir()
    requests, first = plan_syncs("axe", cold, cursor)
    assert [r.volume.name for r in requests] == ["axe-cold-1"]
    assert requests[0].run_key.startswith("cold:axe:axe-cold-1:dir") and \
        requests[0].run_key.endswith(":g1")
    assert plan_syncs("axe", cold, cursor)[0][0].run_key == requests[0].run_key  # same tick
    assert plan_syncs("axe", cold, first)[0] == []  # still mounted: nothing new
    vol.rename(tmp_path / "drawer")
    _, away = plan_syncs("axe", cold, first)
    (tmp_path / "drawer").rename(vol)
    again, _ = plan_syncs("axe", cold, away)
    assert len(again) == 1 and again[0].run_key.endswith(":g2")  # a new mount generation
    assert json.loads(away)["generations"] == {str(vol): 1}


def test_the_inbound_sensor_reports_a_push_once_and_ignores_a_prune(tmp_path: Path):
    block = RingBackup.model_validate({"ssh_user": "u", "ssh_fqdn": "p.invalid",
                                       "receive_dir_at_peer": "/in/",
                                       "receive_dir_at_self": str(tmp_path / "in")})
    now = datetime(2026, 5, 20, 12, tzinfo=UTC)
    events, cursor = inbound_events("realchoice", block, 26, None, now)
    assert [type(e).__name__ for e in events] == ["AssetCheckEvaluation"]
    assert "never pushed" in events[0].description
    snaps = tmp_path / "in" / "snapshots"
    snaps.mkdir(parents=True)
    for name, hours in (("old", 30), ("new", 2)):
        (snaps / name).write_text("x")
        stamp = (now - timedelta(hours=hours)).timestamp()
        os.utime(snaps / name, (stamp, stamp))
    events, cursor = inbound_events("realchoice", block, 26, cursor, now)
    assert [type(e).__name__ for e in events] == ["AssetMaterialization", "AssetCheckEvaluation"]
    assert events[0].asset_key == dg.AssetKey(["peers", "inbound", "from-realchoice"])
    assert events[1].passed
    assert inbound_events("realchoice", block, 26, cursor, now)[0] == []
    (snaps / "new").unlink()  # the peer's prune: the newest file gets older, no push
    events, _ = inbound_events("realchoice", block, 26, cursor, now)
    assert [type(e).__name__ for e in events] == ["AssetCheckEvaluation"]
    assert not events[0].passed
