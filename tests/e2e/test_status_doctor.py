"""`axe doctor`'s findings of issue 10 against real servers, repositories and Dagster
instances: client tools older than a server, password sources that do not resolve (never
printed), a copy tier with other chunker parameters, free space, the Dagster instance and its
daemon; and its exit codes (0 ok, 1 a FAIL, warnings keep 0)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import yaml

from axe_pipelines.actions.doctor_checks import Finding, free_space, tool_major
from axe_pipelines.checks.history import instance_findings
from axe_pipelines.instance import ensure_dagster_home
from axe_pipelines.restic import Repository, Restic
from axe_pipelines.secrets import EnvSource
from axe_pipelines.sets import BackupSet
from tests.conftest import PG_PASSWORD, REPO_PASSWORD, server_entry
from tests.e2e.test_cli_backup import run_axe


def lines_of(proc) -> list[str]:
    return proc.stdout.splitlines()


def old_client_tools(tmp_path: Path, real_bin: Path) -> Path:
    """A bin_dir whose pg_dump and pg_restore say they are PostgreSQL 9.6 (an old client
    install cannot be had here for real); psql is the real one."""
    fake = tmp_path / "old-bin"
    fake.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        (fake / tool).write_text(f"#!/bin/sh\necho '{tool} (PostgreSQL) 9.6.24'\n")
        (fake / tool).chmod(0o755)
    (fake / "psql").symlink_to(real_bin / "psql")
    return fake


def test_tools_passwords_chunker_and_exit_codes(make_config, tmp_path, server_a, restic_bin,
                                                monkeypatch):
    monkeypatch.setenv("AXE_TEST_COLD_PASSWORD", "cold-" + os.urandom(6).hex())
    monkeypatch.delenv("AXE_TEST_NOT_SET", raising=False)
    path, config = make_config(
        servers={"frame-postgres": server_entry(server_a),
                 "old-client": server_entry(server_a, bin_dir=str(
                     old_client_tools(tmp_path, server_a.bin_dir)))},
        databases={"hive": {"server": "frame-postgres"}, "frame": {"server": "old-client"}})
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    proc = run_axe(path, home, "doctor")
    lines = lines_of(proc)
    major = server_a.psql("SHOW server_version_num;")[0][0][:2]
    assert any(ln.startswith(f"ok   server frame-postgres (PostgreSQL {major}")
               and f"pg_dump {major}." in ln and f"pg_restore {major}." in ln for ln in lines)
    assert any(ln.startswith(f"FAIL server old-client of axe is PostgreSQL {major}") and
               "older client tools: pg_dump 9.6, pg_restore 9.6; install postgresql-client-"
               in ln for ln in lines), lines
    assert "ok   password source for axe.servers.frame-postgres.password, " \
           "axe.servers.old-client.password: environment variable AXE_TEST_PG_PASSWORD " \
           "resolves" in lines
    assert proc.returncode == 1
    # The values never show, resolved or not.
    assert PG_PASSWORD not in proc.stdout + proc.stderr
    assert REPO_PASSWORD not in proc.stdout + proc.stderr

    # A cold volume made without --copy-chunker-params, and a source that does not resolve.
    data = yaml.safe_load(path.read_text())
    data["axe"]["servers"].pop("old-client")
    data["axe"]["databases"].pop("frame")
    data["axe"]["tiers"]["cold"] = {"password": {"env": "AXE_TEST_COLD_PASSWORD"},
                                    "mount_glob": str(tmp_path / "vol" / "axe-cold-*"),
                                    "accept_plain_folders": True}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    volume = tmp_path / "vol" / "axe-cold-1"
    volume.mkdir(parents=True)
    Restic(Repository(str(volume / "restic-repo"), EnvSource(env="AXE_TEST_COLD_PASSWORD"),
                      "a volume made by hand"), timeout=60).init()
    proc = run_axe(path, home, "doctor")
    lines = lines_of(proc)
    assert any(ln.startswith(f"FAIL tier C of axe on cold volume axe-cold-1 (#1) at {volume}: "
                             f"chunker parameters differ from tier A's") for ln in lines), lines
    assert proc.returncode == 1
    volume.joinpath("restic-repo").rename(tmp_path / "moved-away")
    proc = run_axe(path, home, "doctor")
    assert any("no repository yet (the next copy creates it with tier A's chunker parameters)"
               in ln for ln in lines_of(proc))
    assert proc.returncode == 0, proc.stdout  # warnings (no daemon) keep 0

    data["axe"]["tiers"]["cold"]["password"] = {"env": "AXE_TEST_NOT_SET"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = run_axe(path, home, "doctor")
    assert "FAIL password source for axe.tiers.cold.password: environment variable " \
           "AXE_TEST_NOT_SET is not set" in proc.stdout
    assert proc.returncode == 1


def test_free_space_against_the_last_set():
    from axe_pipelines.restic import Snapshot

    def snap(read: int, added: int) -> Snapshot:
        return Snapshot("i" * 64, "i" * 8, __import__("datetime").datetime.now(), (), (), "h",
                        summary={"total_bytes_processed": read, "data_added": added})

    the_set = BackupSet("r", snap(0, 0).time, (snap(800, 100), snap(200, 50)))
    [(fail)] = free_space("tier A", 149, the_set)
    assert fail.status == "FAIL" and "the next backup does not fit" in fail.text
    assert "149 B free; the last set read 1000 B and added 150 B" in fail.text
    [(warn)] = free_space("tier A", 999, the_set)
    assert warn.status == "warn" and "a full copy of it would not fit" in warn.text
    assert [f.status for f in free_space("tier A", 1000, the_set)] == ["ok"]
    assert list(free_space("tier A", None, the_set)) == []
    assert Finding("warn", "x").exit_code == 0 and Finding("FAIL", "x").exit_code == 1
    assert tool_major("pg_dump (PostgreSQL) 15.4 (Debian 15.4-1.pgdg120+1)") == (15, 4)
    assert tool_major("pg_restore (PostgreSQL) 17beta1") == (17, 0)


def _heartbeat(instance: dg.DagsterInstance, daemon: str, age_s: float) -> None:
    from dagster._daemon.types import DaemonHeartbeat

    instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - age_s, daemon, "test", None))


def _stop_schedule(instance: dg.DagsterInstance, name: str) -> None:
    """Stores a stopped state for a schedule, as turning it off in the UI does."""
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        ScheduleInstigatorData,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="x"))
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), name)
    instance.add_instigator_state(InstigatorState(origin, InstigatorType.SCHEDULE,
                                                  InstigatorStatus.STOPPED,
                                                  ScheduleInstigatorData("0 3 * * *")))


def test_the_dagster_instance_and_whether_a_daemon_should_run(tmp_path):
    home = tmp_path / "home"
    [(status, text)] = instance_findings(home)
    assert status == "warn" and text == (f"no Dagster instance at {home} (no dagster.yaml); "
                                         "`axe init` creates it")
    ensure_dagster_home(home)
    # The last finding is about pool slots and dead runs (tests/e2e/test_faults_runs.py).
    ok, no_daemon, _slots = instance_findings(home)
    assert ok == ("ok", f"Dagster instance {home}: 0 run(s) recorded (SqliteRunStorage)")
    assert no_daemon[0] == "warn" and "no dagster-daemon has run on" in no_daemon[1]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        required = list(instance.get_required_daemon_types())
        for daemon in required:
            _heartbeat(instance, daemon, 3600)  # a daemon ran here, an hour ago
    _, down, _, _slots = instance_findings(home)
    assert down[0] == "FAIL" and "dagster-daemon expected (one has run on this instance " \
                                 "before) but not running: " in down[1]
    assert "SCHEDULER silent for 3600 s" in down[1] or "SCHEDULER silent for 3601 s" in down[1]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        for daemon in required:
            _heartbeat(instance, daemon, 5)
        _stop_schedule(instance, "axe_tier_a_nightly")
    _, running, stopped, _slots = instance_findings(home)
    assert running[0] == "ok" and running[1].startswith("dagster-daemon running")
    assert stopped == ("FAIL", "turned off in the UI: axe_tier_a_nightly; turn them on again "
                               "(Automation) or backups and checks do not run on time")

    # A deployment's instance (not the embedded dagster.yaml) expects a daemon from day one.
    other = tmp_path / "deployed"
    other.mkdir()
    (other / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    _, expected, _, _slots = instance_findings(other)
    assert expected[0] == "FAIL" and "is not axe's embedded default" in expected[1]

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dagster.yaml").write_text("storage: [not, a, mapping\n")
    [(status, text)] = instance_findings(broken)
    assert status == "FAIL" and text.startswith(f"cannot open the Dagster instance at {broken}")
