"""The production instance file (deploy/dagster.yaml): dagster-postgres storage really works
against a PostgreSQL server (the psycopg2 scheme trap), and a tier-A run is recorded there."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from axe_pipelines.assets.tier_a import build_tier_a
from axe_pipelines.backup import local_restic
from axe_pipelines.names import PROGRESS_RESOURCE, set_key
from tests.conftest import PG_PASSWORD

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"


def test_production_instance_on_dagster_postgres(tmp_path, monkeypatch, server_a, make_config,
                                                 restic_bin):
    server_a.psql("DROP DATABASE IF EXISTS dagster_storage; CREATE DATABASE dagster_storage;")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY, home / "dagster.yaml")
    for key, value in {"DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": "127.0.0.1",
                       "DAGSTER_PG_PORT": str(server_a.port), "DAGSTER_PG_USER": "postgres",
                       "DAGSTER_PG_PASSWORD": PG_PASSWORD, "DAGSTER_PG_DB": "dagster_storage",
                       "AXE_RUN_IMAGE": "axe-pipelines:test",
                       "AXE_DOCKER_NETWORK": "axe"}.items():
        monkeypatch.setenv(key, value)
    _, config = make_config(databases={"hive": {"server": "frame-postgres"}}, folders={})
    axe = config.customer("axe")
    local_restic("axe", axe).init()
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
        result = dg.materialize(
            [build_tier_a("axe", axe)], instance=instance,
            resources={PROGRESS_RESOURCE: dg.ResourceDefinition.hardcoded_resource(None)})
        assert result.success
        event = instance.get_latest_materialization_event(set_key("axe"))
        assert event is not None and event.run_id == result.run_id
    tables = server_a.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'event_logs';",
                           dbname="dagster_storage")
    assert tables == [["1"]]
