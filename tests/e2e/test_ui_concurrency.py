"""One repository, one writer, whatever started the run: "Materialize all" in the UI starts
tiers A and C in one `__ASSET_JOB` run that has no `axe/repository` tag, so the run queue's
tag limit cannot hold it back. The repository's pool (`pool=` on every asset that touches the
repository, `concurrency.pools` in both dagster.yaml files) does: a tier-C run started while
that run writes tonight's set waits for the slot, and no two steps on the repository ever run
at the same time. Real instance (the embedded SQLite home), real runs in two processes, a real
tier-A dump held by a table lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from axe_pipelines.config import load_config
from axe_pipelines.definitions import build_definitions
from axe_pipelines.instance import EMBEDDED
from axe_pipelines.names import repository_pool, tier_c_job, tier_c_op
from tests.conftest import REPO_PASSWORD_ENV, server_entry

# Run 1: the UI's "Materialize all" of tiers A and C (the code location's __ASSET_JOB).
MATERIALIZE_ALL = """
import sys, dagster as dg
from axe_pipelines.config import load_config
from axe_pipelines.definitions import build_definitions
from axe_pipelines.definitions import build_definitions
from axe_pipelines.names import tier_c_key, tier_c_op
defs = build_definitions(load_config())
job = defs.resolve_implicit_global_asset_job_def()
keys = [k for k in job.asset_layer.asset_graph.get_all_asset_keys()
        if k.path[1] in ("dumps", "roles", "folders", "tier_a") or k == tier_c_key("axe")]
result = job.execute_in_process(
    instance=dg.DagsterInstance.get(), asset_selection=keys, raise_on_error=False,
    run_config={"ops": {tier_c_op("axe"): {"config": {"volume": sys.argv[1]}}}})
print(result.run_id, result.success)
"""
# Run 2: the mount sensor's tier-C run (the named job, with its tags).
TIER_C_JOB = """
import sys, dagster as dg
from axe_pipelines.config import load_config
from axe_pipelines.definitions import build_definitions
from axe_pipelines.definitions import build_definitions
defs = build_definitions(load_config())
result = defs.resolve_job_def(sys.argv[1]).execute_in_process(
    instance=dg.DagsterInstance.get(), raise_on_error=False,
    run_config={"ops": {sys.argv[2]: {"config": {"volume": sys.argv[3]}}}})
print(result.run_id, result.success)
"""


def _site(root: Path, server_a: Any, db: str) -> Path:
    (root / "files").mkdir()
    (root / "files" / "a.txt").write_text("contract\n" * 1000)
    (root / "cold.pw").write_text("cold-not-tier-a\n")
    volume = root / "Volumes" / "axe-cold-1"
    volume.mkdir(parents=True)
    data = {"axe": {
        "servers": {"frame-postgres": server_entry(server_a)},
        "databases": {db: {"server": "frame-postgres"}},
        "folders": {"files": {"path": str(root / "files")}},
        "tiers": {"local": {"repository": str(root / "repo"),
                            "password": {"env": REPO_PASSWORD_ENV}},
                  "cold": {"password": {"file": str(root / "cold.pw")},
                           "mount_glob": str(root / "Volumes" / "axe-cold-*"),
                           "accept_plain_folders": True}}}}
    path = root / "customers.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _steps(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[float]]:
    """Given a run, return {step: [start, end]} from its event log."""
    spans: dict[str, list[float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            spans[event.step_key] = [entry.timestamp, float("inf")]
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            spans[event.step_key][1] = entry.timestamp
    return spans


def _wait(probe, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


def test_a_materialize_all_run_and_a_tier_c_run_never_write_the_repository_together(
        tmp_path: Path, server_a):
    db = "held_" + uuid.uuid4().hex[:8]
    server_a.psql(f'CREATE DATABASE "{db}";')
    server_a.psql("CREATE TABLE ledger (id int); INSERT INTO ledger SELECT "
                  "generate_series(1, 100);", dbname=db)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(EMBEDDED.read_text())
    config = _site(tmp_path, server_a, db)
    env = {**os.environ, "AXE_CONFIG": str(config), "DAGSTER_HOME": str(home)}
    volume = str(tmp_path / "Volumes" / "axe-cold-1")
    axe = [sys.executable, "-m", "axe_pipelines.cli"]
    for step in (["init"], ["backup", "--local", "--plain"]):  # an earlier, finished set
        done = subprocess.run([*axe, *step], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    # A migration holds the database's table: tonight's dump waits with the slot taken.
    locker = subprocess.Popen(
        [str(server_a.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p",
         str(server_a.port), "-U", server_a.user, "-d", db],
        env={**os.environ, "PGPASSWORD": server_a.password}, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert locker.stdin and locker.stdout
    locker.stdin.write("BEGIN; LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n")
    locker.stdin.flush()
    assert locker.stdout.readline().strip() == "locked"
    instance = dg.DagsterInstance.from_config(str(home))
    everything = subprocess.Popen([sys.executable, "-c", MATERIALIZE_ALL, volume], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sync = None
    try:
        first = _wait(lambda: instance.get_runs(dg.RunsFilter(
            job_name="__ASSET_JOB", statuses=[dg.DagsterRunStatus.STARTED])), "run 1")[0]
        assert "axe/repository" not in first.tags  # the run queue's tag limit cannot see it
        _wait(lambda: server_a.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                    f"'{db}' AND wait_event_type = 'Lock';")[0][0] != "0",
              "the dump to wait on the lock")
        sync = subprocess.Popen(
            [sys.executable, "-c", TIER_C_JOB, tier_c_job("axe"), tier_c_op("axe"), volume],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pool = repository_pool(load_config(config).customer("axe"))

        def blocked() -> str | None:
            for run in instance.get_runs(dg.RunsFilter(job_name=tier_c_job("axe"))):
                for entry in instance.all_logs(run.run_id):
                    if f"Step blocked by limit for pool {pool}" in (entry.message or ""):
                        return run.run_id
            return None
        second = _wait(blocked, "the tier-C run to wait for the repository's slot")
        time.sleep(3)  # it keeps waiting while the set is being written
        assert "STEP_START" not in {e.dagster_event.event_type_value for e in
                                    instance.all_logs(second) if e.dagster_event}
    finally:
        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        locker.wait(60)
        out1, err1 = everything.communicate(timeout=300)
        out2, err2 = sync.communicate(timeout=300) if sync else ("", "")
        server_a.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE);')
    assert out1.split()[-1] == "True", err1[-3000:]
    assert out2.split()[-1] == "True", err2[-3000:]

    # Both runs were in progress together; their steps on the repository never were.
    job = build_definitions(load_config(config)).resolve_implicit_global_asset_job_def()
    pooled = {n.name for n in job.graph.node_dict.values()
              if getattr(n.definition, "pool", None) == pool}
    spans = sorted(((run_id, step, *span) for run_id in (first.run_id, second)
                    for step, span in _steps(instance, run_id).items() if step in pooled),
                   key=lambda s: s[2])
    runs = {r: instance.get_run_record_by_id(r) for r in (first.run_id, second)}
    assert runs[second].start_time < runs[first.run_id].end_time
    for earlier, later in zip(spans, spans[1:], strict=False):
        assert earlier[3] <= later[2], f"{earlier[:2]} and {later[:2]} overlapped"
    assert {"axe_tier_a_backup", tier_c_op("axe")} <= {s[1] for s in spans}
    assert [s[0] for s in spans].count(second) >= 1
    assert instance.event_log_storage.get_concurrency_info(pool).active_slot_count == 0


@pytest.mark.parametrize("path", ["axe_pipelines/instance/dagster.embedded.yaml",
                                  "deploy/dagster.yaml"])
def test_both_instance_files_limit_every_pool_to_one_step(path: str):
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / path).read_text())
    assert data["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
