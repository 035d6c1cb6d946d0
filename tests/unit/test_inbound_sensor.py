"""The inbound sensor's honesty (issue 11): a push is recorded dated at the push's own time
(freshness counts from there, however late the sensor looked), its metadata carries
Dagster's `dagster/last_updated_timestamp` and the time in the peer's zone, and every tick
says what it saw — a push recorded, nothing new, or why there is nothing to look at."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from axe_pipelines.config import RingBackup
from axe_pipelines.names import inbound_key
from axe_pipelines.sensors.inbound import build_inbound_sensor, look_inbound


def _block(root: Path) -> RingBackup:
    return RingBackup.model_validate({"ssh_user": "u", "ssh_fqdn": "p.invalid",
                                      "receive_dir_at_peer": "/in/",
                                      "receive_dir_at_self": str(root / "in")})


def _push(root: Path, name: str, when: datetime) -> None:
    snaps = root / "in" / "snapshots"
    snaps.mkdir(parents=True, exist_ok=True)
    (snaps / name).write_text("x" * 100)
    os.utime(snaps / name, (when.timestamp(), when.timestamp()))


def test_a_missing_receive_folder_is_the_ticks_reason(tmp_path: Path):
    look = look_inbound("realchoice", _block(tmp_path), 26, None)
    assert look.push is None
    assert look.message == (f"receive folder {tmp_path / 'in'} does not exist: realchoice has "
                            f"never pushed to us (or ring_backup.receive_dir_at_self points "
                            f"elsewhere)")
    (tmp_path / "in").mkdir()
    assert "holds no snapshot from realchoice yet" in look_inbound(
        "realchoice", _block(tmp_path), 26, None).message


def test_a_push_is_said_once_in_the_peers_zone(tmp_path: Path):
    now = datetime(2026, 5, 20, 12, tzinfo=UTC)
    _push(tmp_path, "a", now - timedelta(hours=3))
    look = look_inbound("realchoice", _block(tmp_path), 26, None, now, zone="Asia/Seoul")
    assert look.message == ("recorded a push from realchoice at 2026-05-20 18:00 KST (3.0 h "
                            "ago; 1 snapshot file, 100 B)")
    assert look.push is not None and look.pushed_at == now - timedelta(hours=3)
    meta = look.push.metadata
    assert meta["dagster/last_updated_timestamp"].value == look.pushed_at.timestamp()
    assert meta["push_time"].value == "2026-05-20T18:00:00+09:00"
    again = look_inbound("realchoice", _block(tmp_path), 26, look.cursor, now, zone="UTC")
    assert again.push is None and again.events == []
    assert again.message == ("no new push from realchoice; the last one was at 2026-05-20 "
                             "09:00 UTC (3.0 h ago)")


def test_the_push_is_recorded_at_its_own_time(tmp_path: Path):
    instance = dg.DagsterInstance.ephemeral()
    pushed = datetime.now(UTC) - timedelta(hours=20)  # found late: the daemon was down
    _push(tmp_path, "a", pushed)
    result = build_inbound_sensor("realchoice", _block(tmp_path), 26)(
        dg.build_sensor_context(instance=instance))
    event = instance.get_latest_materialization_event(inbound_key("realchoice"))
    # What the freshness policy reads (TimeWindowFreshnessPolicyEvaluator: the latest
    # materialization's timestamp): the push's time, not the tick's.
    assert abs(event.timestamp - pushed.timestamp()) < 1
    assert "recorded a push from realchoice" in result.skip_reason.skip_message
    assert not [e for e in result.asset_events if isinstance(e, dg.AssetMaterialization)]
