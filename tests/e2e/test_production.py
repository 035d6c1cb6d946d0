"""The production deployment, end to end: `dagster-webserver` and `dagster-daemon` as two
processes on a dagster-postgres instance made from deploy/dagster.yaml (Dagster's default run
launcher instead of Docker: no engine here), a per-minute tier-A schedule that the daemon ticks
on its own, a cold volume that appears and the mount sensor that starts its sync; then the
runs, materializations, check results and freshness as GraphQL reports them, and both
processes stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from tests.conftest import PG_PASSWORD
from tests.ui_support import (
    BIN,
    DEPLOY,
    ROOT,
    Dagster,
    postgres_env,
    production_instance_yaml,
    running_dagster,
    wait_for,
    write_home,
)

EVERY_MINUTE = "* * * * *"
NEEDED_DAEMONS = {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "FRESHNESS_DAEMON"}

REPOSITORIES = """{ repositoriesOrError { ... on RepositoryConnection { nodes { name
  location { name }
  schedules { id name cronSchedule pipelineName scheduleState { status } }
  sensors { id name sensorState { status } } } } } }"""
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
RUNS = """{ runsOrError(limit: 50) { __typename ... on Runs { results { runId status jobName
  tags { key value } } } ... on PythonError { message } } }"""
RUN = """query ($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run {
  runId status jobName assetMaterializations { assetKey { path } }
  assetChecks { name assetKey { path } } } } }"""
CHECK_EXECUTIONS = """query ($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 1) {
    runId status evaluation { success severity } } }"""
ASSETS = """{ assetNodes { assetKey { path } jobNames
  internalFreshnessPolicy { __typename ... on TimeWindowFreshnessPolicy { failWindowSeconds } }
  freshnessStatusInfo { freshnessStatus } } }"""
LAUNCH = """mutation ($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
EVENTS = """query ($runId: ID!) { runOrError(runId: $runId) { ... on Run { status
  eventConnection { events { __typename ... on MessageEvent { message }
    ... on EngineEvent { error { className message } } } } } } }"""
STOP_SCHEDULE = """mutation ($id: String!) { stopRunningSchedule(id: $id) { __typename
  ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""


def site_config(tmp_path: Path, make_config) -> Path:
    """Given the test's folder, return a customers.yaml for one small database whose tier A
    runs every minute, and a tier C of plain folders under tmp_path (one volume, so the
    rotation always expects the one that appears)."""
    path, _ = make_config(databases={"hive": {"server": "frame-postgres"}}, folders={},
                          local={"schedule": EVERY_MINUTE})
    data = yaml.safe_load(path.read_text())
    password = tmp_path / "cold-password"
    password.write_text(f"cold-{uuid.uuid4().hex}\n")
    password.chmod(0o600)
    data["axe"]["tiers"]["cold"] = {
        "password": {"file": str(password)}, "mount_glob": str(tmp_path / "Volumes" / "axe-cold-*"),
        "accept_plain_folders": True, "volumes": 1, "sensor_interval_s": 5, "timeout_s": 120}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    subprocess.run([str(BIN / "axe"), "--config", str(path), "init"], check=True, timeout=120,
                   capture_output=True)
    return path


def _repository(dagster: Dagster) -> dict[str, Any]:
    [repository] = dagster.graphql(REPOSITORIES)["repositoriesOrError"]["nodes"]
    return repository


def _runs(dagster: Dagster) -> list[dict[str, Any]]:
    answer = dagster.graphql(RUNS)["runsOrError"]
    assert answer["__typename"] == "Runs", answer
    for run in answer["results"]:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return answer["results"]


def _run_by_tag(dagster: Dagster, key: str, value: str) -> dict[str, Any] | None:
    found = [r for r in _runs(dagster) if r["tags"].get(key) == value]
    return found[-1] if found else None  # the oldest: runsOrError lists the newest first


def _finished(dagster: Dagster, run_id: str) -> dict[str, Any] | None:
    [run] = [r for r in _runs(dagster) if r["runId"] == run_id]
    return run if run["status"] in {"SUCCESS", "FAILURE", "CANCELED"} else None


def _healthy_daemons(dagster: Dagster) -> set[str] | None:
    statuses = dagster.graphql(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
    healthy = {s["daemonType"] for s in statuses if s["healthy"]}
    return healthy if NEEDED_DAEMONS <= healthy else None


def _job_assets(dagster: Dagster, job_name: str) -> set[tuple[str, ...]]:
    return {tuple(n["assetKey"]["path"]) for n in dagster.graphql(ASSETS)["assetNodes"]
            if job_name in n["jobNames"]}


def assert_run_recorded(dagster: Dagster, run_id: str) -> set[tuple[str, ...]]:
    """Given a finished run, assert it succeeded, materialized every asset of its job and that
    every check it ran passed (the latest execution of each is this run's); return the keys."""
    run = dagster.graphql(RUN, {"runId": run_id})["runOrError"]
    assert run["__typename"] == "Run" and run["status"] == "SUCCESS", (run, dagster.logs())
    selected = _job_assets(dagster, run["jobName"])
    materialized = {tuple(m["assetKey"]["path"]) for m in run["assetMaterializations"]}
    assert selected and materialized == selected, run
    assert run["assetChecks"], f"run {run_id} evaluated no asset check"
    for check in run["assetChecks"]:
        [execution] = dagster.graphql(CHECK_EXECUTIONS, {
            "key": {"path": check["assetKey"]["path"]}, "name": check["name"]}
        )["assetCheckExecutions"]
        assert execution["runId"] == run_id, (check, execution)
        assert execution["status"] == "SUCCEEDED", (check, execution)
        assert execution["evaluation"]["success"], (check, execution)
    return materialized


def _fresh(dagster: Dagster, keys: set[tuple[str, ...]]) -> dict[tuple[str, ...], str] | None:
    nodes = {tuple(n["assetKey"]["path"]): n for n in dagster.graphql(ASSETS)["assetNodes"]}
    unwatched = [k for k in keys if not nodes[k]["internalFreshnessPolicy"]]
    assert not unwatched, f"tier-A assets without a freshness policy: {unwatched}"
    status = {k: (nodes[k]["freshnessStatusInfo"] or {}).get("freshnessStatus") for k in keys}
    return status if all(s == "HEALTHY" for s in status.values()) else None


@pytest.fixture
def dagster_db(server_a) -> Iterator[str]:
    """A fresh database for Dagster's instance storage on server A; dropped afterwards."""
    name = f"dagster_{uuid.uuid4().hex[:8]}"
    server_a.psql(f"CREATE DATABASE {name};")
    yield name
    server_a.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


def first_scheduled_run(dagster: Dagster, started: float) -> tuple[dict, set[tuple[str, ...]]]:
    """Given running services, assert the schedules and sensors are on by default, wait for
    the per-minute tier-A schedule's first run (the daemon ticks it by itself), stop the
    schedule and return (schedule, the keys its run materialized)."""
    repository = _repository(dagster)
    # On by default: nobody flips a switch in the UI before the first night.
    [schedule] = [s for s in repository["schedules"] if s["cronSchedule"] == EVERY_MINUTE]
    assert schedule["scheduleState"]["status"] == "RUNNING"
    assert all(s["sensorState"]["status"] == "RUNNING" for s in repository["sensors"])
    wait_for(lambda: _healthy_daemons(dagster), timeout=90, what="the daemon's heartbeats",
             on_timeout=dagster.logs)
    scheduled = wait_for(lambda: _run_by_tag(dagster, "dagster/schedule_name", schedule["name"]),
                         timeout=150 - (time.monotonic() - started), interval=2,
                         what="the per-minute schedule's first run", on_timeout=dagster.logs)
    # One tick proves it; later ticks would only queue behind the sync below.
    stopped = dagster.graphql(STOP_SCHEDULE, {"id": schedule["id"]})["stopRunningSchedule"]
    assert stopped["scheduleState"]["status"] == "STOPPED", stopped
    wait_for(lambda: _finished(dagster, scheduled["runId"]), timeout=180, interval=2,
             what="the scheduled tier-A run to finish", on_timeout=dagster.logs)
    return schedule, assert_run_recorded(dagster, scheduled["runId"])


def sensor_started_sync(dagster: Dagster, volume: Path) -> tuple[dict, set[tuple[str, ...]]]:
    """Given running services, make a cold volume appear at `volume`, wait for the run the
    mount sensor starts and return (that run, the keys it materialized)."""
    volume.mkdir(parents=True)
    synced = wait_for(lambda: next((r for r in _runs(dagster)
                                    if "dagster/sensor_name" in r["tags"]), None),
                      timeout=90, interval=2, what="a sensor-started run",
                      on_timeout=dagster.logs)
    wait_for(lambda: _finished(dagster, synced["runId"]), timeout=180, interval=2,
             what="the cold sync to finish", on_timeout=dagster.logs)
    assert synced["tags"]["axe/tier"] == "c"
    return synced, assert_run_recorded(dagster, synced["runId"])


def stop_like_systemd(dagster: Dagster) -> None:
    """Given running services, send each SIGTERM (what systemd and launchd send) and assert
    it exits 0 within a minute."""
    for service in reversed(dagster.services):
        code = service.stop(timeout=60)
        assert code is not None, f"{service.name} ignored SIGTERM\n{service.tail()}"
        assert code == 0, f"{service.name} exited {code}\n{service.tail()}"


def test_webserver_and_daemon_on_dagster_postgres(tmp_path, server_a, make_config, dagster_db):
    started = time.monotonic()
    config = site_config(tmp_path, make_config)
    home = write_home(tmp_path / "dagster_home", production_instance_yaml())
    env = {"AXE_CONFIG": str(config), **postgres_env(server_a, dagster_db, PG_PASSWORD)}
    with running_dagster(home, env, tmp_path / "logs") as dagster:
        schedule, tier_a = first_scheduled_run(dagster, started)
        synced, tier_c = sensor_started_sync(dagster, tmp_path / "Volumes" / "axe-cold-1")
        assert tier_a and tier_c and not tier_a & tier_c
        runs = _runs(dagster)  # one tick and one mount: one run each
        assert [r["tags"].get("dagster/schedule_name") for r in runs].count(schedule["name"]) == 1
        sensor = synced["tags"]["dagster/sensor_name"]
        assert [r["tags"].get("dagster/sensor_name") for r in runs].count(sensor) == 1, runs
        # Every tier-A asset has a freshness policy, and the freshness daemon judges it fresh.
        wait_for(lambda: _fresh(dagster, tier_a), timeout=120, interval=3,
                 what="tier A's freshness to be evaluated", on_timeout=dagster.logs)
        stop_like_systemd(dagster)


def test_docker_run_launcher_loads_from_deploy_yaml(tmp_path, server_a, dagster_db,
                                                    monkeypatch):
    """deploy/dagster.yaml's DockerRunLauncher section passes dagster-docker's config schema
    and carries only the names of secrets, never their values."""
    from dagster_docker import DockerRunLauncher

    home = write_home(tmp_path / "home", production_instance_yaml(run_launcher=True))
    for key, value in {**postgres_env(server_a, dagster_db, PG_PASSWORD),
                       "AXE_RUN_IMAGE": "axe-pipelines:test", "AXE_DOCKER_NETWORK": "axe"}.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, DockerRunLauncher)
        assert launcher.image == "axe-pipelines:test" and launcher.networks == ["axe"]
        assert {"AXE_CONFIG", "DAGSTER_PG_PASSWORD"} <= set(launcher.env_vars)
        assert "/var/run/docker.sock:/var/run/docker.sock" in \
            launcher.container_kwargs["volumes"]
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert PG_PASSWORD not in json.dumps(instance.get_settings("storage"), default=str)
        assert PG_PASSWORD not in json.dumps(launcher.inst_data.config_dict, default=str)


def test_run_without_a_docker_engine_fails_with_the_reason(tmp_path, server_a, make_config,
                                                          dagster_db):
    """The full deploy/dagster.yaml where no Docker engine answers: a run launched from the UI
    is queued, the daemon's launch fails, and the run says why."""
    path, _ = make_config(databases={"hive": {"server": "frame-postgres"}}, folders={})
    home = write_home(tmp_path / "home", production_instance_yaml(run_launcher=True))
    env = {"AXE_CONFIG": str(path), **postgres_env(server_a, dagster_db, PG_PASSWORD),
           "AXE_RUN_IMAGE": "axe-pipelines:test", "AXE_DOCKER_NETWORK": "axe",
           # Nothing listens there, whatever this machine has.
           "DOCKER_HOST": f"unix://{tmp_path / 'no-engine.sock'}"}
    with running_dagster(home, env, tmp_path / "logs") as dagster:
        repository = _repository(dagster)
        job = repository["schedules"][0]["pipelineName"]
        launched = dagster.graphql(LAUNCH, {"params": {"selector": {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"], "jobName": job}}})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        wait_for(lambda: _finished(dagster, run_id), timeout=120, interval=2,
                 what="the daemon to try the launch", on_timeout=dagster.logs)
        run = dagster.graphql(EVENTS, {"runId": run_id})["runOrError"]
        assert run["status"] == "FAILURE", run
        # What the run's page in the UI shows (README "Deployment" quotes it): dagster-docker
        # passes docker-py's own error through.
        errors = [e["error"] for e in run["eventConnection"]["events"]
                  if e["__typename"] == "EngineEvent" and e.get("error")]
        assert errors, run
        assert errors[0]["className"] == "DockerException", errors
        assert "Error while fetching server API version" in errors[0]["message"], errors
        stop_like_systemd(dagster)


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_matches_the_image_and_the_instance():
    """Without an engine the compose file cannot run here; what can be checked is that its
    parts fit: the four services, one image, the workspace they load, the PostgreSQL major of
    the image's client, the network and the variables deploy/dagster.yaml reads."""
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "code", "webserver", "daemon"}
    code, web, daemon = services["code"], services["webserver"], services["daemon"]
    assert code["command"][:3] == ["dagster", "code-server", "start"]
    assert "axe_pipelines.definitions" in code["command"]
    assert web["image"] == daemon["image"] == code["image"]
    for service in (web, daemon):  # they load the code location over gRPC, not in-process
        workspace = ROOT / Path(service["command"][-1]).relative_to("/opt/axe-pipelines")
        entry = yaml.safe_load(workspace.read_text())["load_from"][0]["grpc_server"]
        assert {"host", "port", "location_name"} <= set(entry)
    assert web["ports"] == ["127.0.0.1:${AXE_UI_PORT:-3000}:3000"]  # never on all interfaces
    assert "/var/run/docker.sock:/var/run/docker.sock" in daemon["volumes"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pg_major = re.search(r"^ARG PG_MAJOR=(\d+)$", dockerfile, re.M).group(1)
    assert services["postgres"]["image"].startswith(f"postgres:{pg_major}")
    assert "postgresql-client-${PG_MAJOR}" in dockerfile and "usr/bin/docker" in dockerfile
    instance = production_instance_yaml(run_launcher=True)
    assert compose["networks"]["axe"]["name"] == "axe"
    # What the instance file reads, and what it hands on to every run container.
    for_runs = {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                "DAGSTER_PG_DB", "AXE_CONFIG"}
    assert for_runs <= set(instance["run_launcher"]["config"]["env_vars"])
    for service in (code, web, daemon):
        assert for_runs | {"AXE_RUN_IMAGE", "AXE_DOCKER_NETWORK"} <= set(service["environment"])
    documented = set(re.findall(r"^#? ?([A-Z_]+)=", (DEPLOY / "compose.env.example").read_text(),
                                re.M))
    used = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOY / "compose.yaml").read_text()))
    assert used <= documented, used - documented


def test_docker_compose_config_validates():
    """`docker compose config` checks the file against the compose spec without an engine."""
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True,
                                    timeout=30).returncode != 0:
        pytest.skip("no docker client with the compose plugin here")
    env = {**os.environ, "AXE_SITE": "test", "DAGSTER_PG_PASSWORD": "not-a-secret"}
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(DEPLOY, Path(scratch) / "deploy")
        (Path(scratch) / "deploy" / ".env").write_text("")
        done = subprocess.run([docker, "compose", "-f", f"{scratch}/deploy/compose.yaml",
                               "config", "--quiet"], env=env, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0, done.stderr
