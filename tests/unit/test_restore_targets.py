"""`--target <server>`, restore stamps on the customer's clock and `--cleanup`'s rules, on
configurations and folders made by hand (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.actions.cleanup import Leftover, find_leftovers, older_than, parse_stamp
from axe_pipelines.actions.selection import (
    RestoreError,
    Target,
    resolve_database,
    resolve_target,
    valid_targets,
)
from axe_pipelines.care.policy import Duration
from axe_pipelines.config import parse_config
from axe_pipelines.errors import UsageError
from axe_pipelines.postgres.restore import stamp

KST = ZoneInfo("Asia/Seoul")
SERVER = {"host": "127.0.0.1", "port": 1}


def customer(**extra):
    body = {"servers": {"frame-postgres": SERVER, "index-postgres": SERVER,
                        "mysrt-postgres": SERVER},
            "databases": {"frame": {"server": "frame-postgres"},
                          "hive": {"server": "frame-postgres"},
                          "index": {"server": "index-postgres"},
                          "srt": {"server": "mysrt-postgres", "aliases": ["mysrt-postgres"]}},
            "tiers": {"local": {"repository": "/r", "password": {"env": "X"}}}, **extra}
    return parse_config({"axe": body}).customers["axe"]


def test_a_server_name_targets_every_database_on_it():
    c = customer()
    assert resolve_target("axe", c, "frame-postgres") == Target("server", "frame-postgres")
    # A server with one database is that database (the runbook's containers).
    assert resolve_target("axe", c, "index-postgres") == Target("database", "index")
    # A configured alias wins over a server's name.
    assert resolve_target("axe", c, "mysrt-postgres") == Target("database", "srt")
    assert resolve_target("axe", c, "hive-postgres") == Target("database", "hive")
    assert "frame-postgres" in valid_targets(c) and "index-postgres" in valid_targets(c)
    with pytest.raises(RestoreError, match="unknown target 'nope'"):
        resolve_target("axe", c, "nope")


def test_commands_that_need_one_database_read_db_postgres_as_before():
    c = customer()
    assert resolve_database("axe", c, "frame-postgres", "integrity-check needs one") == "frame"
    c2 = customer(databases={"a": {"server": "frame-postgres"},
                             "b": {"server": "frame-postgres"}})
    with pytest.raises(RestoreError, match="frame-postgres is a server holding a, b; "
                                           "--undo needs one: name one of them"):
        resolve_database("axe", c2, "frame-postgres", "--undo needs one")


def test_stamps_are_on_the_customers_clock():
    moment = datetime(2026, 5, 19, 18, 0, 42, tzinfo=UTC)
    assert stamp(moment, "Asia/Seoul") == "20260520030042"
    assert stamp(moment) == "20260519180042"  # an aware time without a zone: as given
    now = stamp(zone="Asia/Seoul")
    assert abs((parse_stamp(now, "Asia/Seoul") - datetime.now(KST)).total_seconds()) < 5


def test_older_than_and_stamps():
    assert older_than("7d") == Duration(days=7) and older_than("36h") == Duration(hours=36)
    assert older_than("0") == Duration() and older_than("0d") == Duration()
    with pytest.raises(UsageError, match="--older-than: cannot read duration 'soon'"):
        older_than("soon")
    assert parse_stamp("20260520030042", "Asia/Seoul") == datetime(2026, 5, 20, 3, 0, 42,
                                                                   tzinfo=KST)
    assert parse_stamp("20261340000000", "Asia/Seoul") is None
    line = Leftover("database", "frame_before_restore_20260520030042", "frame-postgres",
                    datetime(2026, 5, 20, 3, 0, 42, tzinfo=KST), "frame").line(
        datetime(2026, 5, 27, 15, 0, 42, tzinfo=KST))
    assert line == ("database frame_before_restore_20260520030042 on frame-postgres: kept by "
                    "a restore of frame on 2026-05-20 03:00 (7.5 days ago)")


def test_cleanup_finds_only_axes_folders_beside_configured_ones(tmp_path):
    home = tmp_path / "data" / "files"
    home.mkdir(parents=True)
    for name in ("files.restored-20200101000000", "files.restored-20991231000000",
                 "files.restored-2020", "other.restored-20200101000000"):
        (tmp_path / "data" / name).mkdir()
    (tmp_path / "data" / "files.restored-20200102000000").write_text("a file, not a folder")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "files.restored-20200101000000").mkdir()
    (tmp_path / "data" / "files.restored-20200103000000").symlink_to(tmp_path / "elsewhere")
    c = parse_config({"axe": {"folders": {"files": {"path": str(home)}},
                              "tiers": {"local": {"repository": "/r",
                                                  "password": {"env": "X"}}}}}
                     ).customers["axe"]
    found, problems = find_leftovers(c, Duration(days=7), datetime(2026, 6, 1, tzinfo=UTC))
    assert problems == []
    assert [(f.kind, f.name, f.of) for f in found] == [
        ("folder", str(tmp_path / "data" / "files.restored-20200101000000"), "files")]
