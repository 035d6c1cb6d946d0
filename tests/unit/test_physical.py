"""Physical base backups without a server: the pg_basebackup command line (also through an
exec prefix), the settings a restored copy gets, the config rules and tier A's plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from axe_pipelines.backup import Item, coverage, dump_filename, plan_tier_a
from axe_pipelines.config import Server, parse_config
from axe_pipelines.config_errors import ConfigError
from axe_pipelines.node_labels import item_label
from axe_pipelines.physical_item import (
    base_backups_only,
    newest_nightly,
    nightly_items,
    separately_scheduled,
)
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.postgres.physical import fresh_datadir, pg_basebackup_argv, safe_settings


def _site(**server: object):
    return parse_config({"axe": {
        "servers": {"frame-postgres": {"host": "127.0.0.1", "user": "frame", **server}},
        "databases": {"frame": {"server": "frame-postgres"}},
        "tiers": {"local": {"repository": "/tmp/repo", "password": {"env": "X"}}}}})


def test_argv_is_one_tar_on_stdout_with_the_wal_fetched():
    conn = Connection("s", Server(host="db", port=5433, user="frame",
                                  bin_dir=Path("/usr/lib/postgresql/16/bin")), "postgres")
    argv = pg_basebackup_argv(conn)
    assert argv[0] == "/usr/lib/postgresql/16/bin/pg_basebackup"
    assert argv[argv.index("-D") + 1] == "-" and "-Ft" in argv
    assert argv[argv.index("-X") + 1] == "fetch"  # stream cannot go to stdout as one tar
    assert ["-h", "db", "-p", "5433", "-U", "frame"] == argv[1:7]
    assert "--no-password" in argv and "-d" not in argv


def test_argv_through_an_exec_prefix_runs_inside_the_container():
    prefix = ["docker", "exec", "-i", "-e", "PGPASSWORD", "frame-postgres"]
    conn = Connection("frame-postgres", Server(exec=prefix, user="frame"), "postgres")
    argv = pg_basebackup_argv(conn)
    assert argv[:7] == [*prefix, "pg_basebackup"]
    assert not [a for a in argv if "PGPASSWORD=" in a]


def test_a_restored_copy_never_archives_and_listens_on_loopback(tmp_path):
    settings = safe_settings(15, 55000, tmp_path / "sock", tmp_path / "data",
                             {"recovery_target_time": "2026-05-20 14:37:00+09"})
    assert settings["archive_mode"] == "off" and settings["archive_command"] == ""
    assert settings["listen_addresses"] == "127.0.0.1" and settings["port"] == "55000"
    assert settings["unix_socket_directories"] == str(tmp_path / "sock")
    assert settings["hba_file"] == str(tmp_path / "data" / "pg_hba.conf")
    assert settings["recovery_target_time"] == "2026-05-20 14:37:00+09"
    assert "archive_library" not in safe_settings(14, 1, tmp_path, tmp_path)  # PG 15+


def test_unpack_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "PG_VERSION").write_text("15\n")
    with pytest.raises(PostgresError, match="not an empty folder"):
        fresh_datadir(tmp_path)
    assert (tmp_path / "PG_VERSION").read_text() == "15\n"


def test_physical_is_off_by_default_and_an_item_of_the_plan_when_on():
    axe = _site().customer("axe")
    assert not axe.servers["frame-postgres"].physical
    assert [i.kind for i in plan_tier_a(axe)] == ["roles", "pgdump"]
    axe = _site(physical=True).customer("axe")
    item = plan_tier_a(axe)[-1]
    assert item == Item("physical", "frame-postgres", "frame-postgres")
    assert item.label == "physical/frame-postgres"
    assert item.tags("axe", "r1") == ["axe-pipelines", "customer=axe", "kind=physical",
                                      "server=frame-postgres", "run=r1"]
    assert dump_filename(axe, item) == "frame-postgres.base.tar"
    assert item.lane == "server:frame-postgres"  # after that server's dumps, not beside them
    # Its node has a label of its own (the server's roles already carry the server's name).
    assert item_label("physical", "frame-postgres") == "frame-postgres-physical"
    assert not separately_scheduled(axe, item)
    # The set lacks it when no snapshot has it.
    assert [g.item for g in coverage(axe, [])][-1] == item


def test_physical_schedule_is_a_cron_of_its_own():
    axe = _site(physical=True, physical_schedule="0 4 * * sun").customer("axe")
    assert separately_scheduled(axe, plan_tier_a(axe)[-1])
    # `axe backup --local` waits for the nightly job's items only (else it said the run
    # "failed before finishing" for want of the base backup's result).
    assert nightly_items(axe, plan_tier_a(axe)) == plan_tier_a(axe)[:-1]
    assert nightly_items(_site(physical=True).customer("axe"), plan_tier_a(
        _site(physical=True).customer("axe")))[-1].kind == "physical"
    with pytest.raises(ConfigError, match="physical_schedule"):
        _site(physical=True, physical_schedule="every sunday")
    with pytest.raises(ConfigError, match="physical"):
        _site(physical="weekly")


def test_dagster_asset_check_own_job_and_schedule():
    import dagster as dg

    from axe_pipelines.definitions import build_definitions

    site = parse_config({"axe": {
        "servers": {"frame-postgres": {"host": "127.0.0.1", "physical": True,
                                       "physical_schedule": "0 4 * * 0"},
                    "index-postgres": {"host": "127.0.0.1", "port": 5433, "physical": True}},
        "databases": {"frame": {"server": "frame-postgres"},
                      "index": {"server": "index-postgres"}},
        "tiers": {"local": {"repository": "/tmp/repo", "password": {"env": "X"}}}}})
    defs = build_definitions(site)
    dg.Definitions.validate_loadable(defs)
    graph = defs.get_repository_def().asset_graph
    weekly = dg.AssetKey(["axe", "physical", "frame-postgres-physical"])
    nightly = dg.AssetKey(["axe", "physical", "index-postgres-physical"])
    the_set = dg.AssetKey(["axe", "tier_a", "nightly_set"])
    assert graph.get(weekly).group_name == "axe_tier_a"
    assert {weekly, nightly} <= set(graph.get(the_set).parent_keys)  # lineage into the set
    assert dg.AssetCheckKey(weekly, "base_backup_current") in graph.asset_check_keys
    assert graph.get(weekly).freshness_policy.fail_window.to_timedelta().total_seconds() \
        == 192 * 3600
    repo = defs.get_repository_def()
    own = repo.get_job("axe_physical_frame_postgres")
    assert own.asset_layer.selected_asset_keys == {weekly}
    assert repo.get_schedule_def("axe_physical_frame_postgres").cron_schedule == "0 4 * * 0"
    night = repo.get_job("axe_tier_a").asset_layer.selected_asset_keys
    assert nightly in night and weekly not in night
    # The CLI claims the nightly job's one pool slot before it makes the job (runs.py).
    from axe_pipelines.instance.guard import job_slots
    from axe_pipelines.names import item_key, repository_pool, tier_a_op

    assert job_slots(repo.get_job("axe_tier_a")) == [
        (repository_pool(site.customer("axe")), tier_a_op("axe"))]
    # ... and starts the items nightly_items names: exactly the job's.
    customer = site.customer("axe")
    items = {item_key("axe", i) for i in nightly_items(customer, plan_tier_a(customer))}
    assert items <= night and night - items == {the_set}


def test_tiers_b_and_c_copy_the_base_backup_with_the_set_or_carry_the_newest_one():
    """copy_set copies every snapshot of the set (the base backup is one, run=R); a nightly
    set without one (a weekly physical_schedule) carries the newest earlier base backup."""
    from datetime import UTC, datetime

    from axe_pipelines.copying import with_gaps
    from axe_pipelines.restic import Snapshot
    from axe_pipelines.sets import BackupSet

    axe = _site(physical=True, physical_schedule="0 4 * * 0", roles=False).customer("axe")

    def snap(sid: str, run: str, kind: str, key: str, day: int) -> Snapshot:
        return Snapshot(sid * 64, sid * 8, datetime(2026, 5, day, tzinfo=UTC),
                        ("axe-pipelines", "customer=axe", f"kind={kind}", key, f"run={run}"),
                        ("/x",), "h")

    weekly = BackupSet("w", datetime(2026, 5, 17, tzinfo=UTC),
                       (snap("a", "w", "physical", "server=frame-postgres", 17),))
    nightly = BackupSet("n", datetime(2026, 5, 20, tzinfo=UTC),
                        (snap("b", "n", "pgdump", "database=frame", 20),))
    both = BackupSet("m", datetime(2026, 5, 21, tzinfo=UTC),
                     (snap("c", "m", "pgdump", "database=frame", 21),
                      snap("d", "m", "physical", "server=frame-postgres", 21)))
    carried = with_gaps(axe, nightly, [weekly])
    assert [s.id for s in carried.to_copy] == ["b" * 64, "a" * 64]
    assert carried.carried[0].label == "physical/frame-postgres"
    assert carried.missing == ()  # a weekly base backup is no gap in a nightly set
    # The weekly job's set is no night's set: status, listings and the copy tiers skip it.
    assert base_backups_only(axe, weekly) and not base_backups_only(axe, nightly)
    assert newest_nightly(axe, [nightly, weekly]) is nightly
    assert coverage(axe, []) and all(g.item.kind != "physical" for g in coverage(axe, []))
    # A nightly base backup (no physical_schedule) is a member every set must hold.
    every_night = _site(physical=True, roles=False).customer("axe")
    gaps = with_gaps(every_night, nightly, [weekly])
    assert [label for label, _ in gaps.missing] == ["physical/frame-postgres"]
    assert [c.snapshot.id for c in gaps.carried] == ["a" * 64]
    assert not base_backups_only(every_night, weekly)
    assert [s.id for s in with_gaps(axe, both, [weekly, nightly]).to_copy] == \
        ["c" * 64, "d" * 64]


def test_base_backup_current_wants_a_complete_one_within_its_age():
    from datetime import UTC, datetime, timedelta

    from axe_pipelines.physical_item import base_backup_problem, max_age_hours
    from axe_pipelines.restic import Snapshot

    now = datetime(2026, 5, 20, 3, 0, tzinfo=UTC)
    axe = _site(physical=True).customer("axe")
    assert max_age_hours(axe, "frame-postgres") == 26  # tier A's freshness_hours
    weekly = _site(physical=True, physical_schedule="0 4 * * 0").customer("axe")
    assert max_age_hours(weekly, "frame-postgres") == 192
    assert max_age_hours(_site(physical=True, physical_max_age_hours=48).customer("axe"),
                         "frame-postgres") == 48

    def snap(hours_old: float, *extra: str) -> Snapshot:
        return Snapshot("a" * 64, "aaaaaaaa", now - timedelta(hours=hours_old),
                        ("kind=physical", "server=frame-postgres", *extra), ("/x",), "h")

    assert "no base backup of server frame-postgres" in base_backup_problem(axe, "frame-postgres",
                                                                            [], now)
    assert base_backup_problem(axe, "frame-postgres", [snap(2)], now) is None
    assert "30 h old, more than 26 h" in base_backup_problem(axe, "frame-postgres", [snap(30)],
                                                             now)
    assert base_backup_problem(weekly, "frame-postgres", [snap(30)], now) is None
    assert "no base backup" in base_backup_problem(axe, "frame-postgres",
                                                   [snap(1, "incomplete")], now)
