"""The Dagster layer of tier A: definitions from customers.yaml, runs in-process against real
servers and restic, metadata and checks as an operator sees them in the UI."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from axe_pipelines.assets.metadata import row_counts_from
from axe_pipelines.assets.tier_a import build_tier_a
from axe_pipelines.backup import local_restic
from axe_pipelines.instance import ensure_dagster_home
from axe_pipelines.names import PROGRESS_RESOURCE, repository_pool
from tests.conftest import server_entry

from .test_tier_a import table_counts

KST = ZoneInfo("Asia/Seoul")
K = dg.AssetKey
NODE = "axe_tier_a_backup"  # the tier A op of customer axe


def materialize(config, **kwargs) -> dg.ExecuteInProcessResult:
    axe = config.customer("axe")
    return dg.materialize(
        [build_tier_a("axe", axe)], instance=dg.DagsterInstance.get(),
        resources={PROGRESS_RESOURCE: dg.ResourceDefinition.hardcoded_resource(None)},
        raise_on_error=False, **kwargs)


def checks_by_key(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], object]:
    return {(e.asset_check_evaluation_data.asset_key.to_user_string(),
             e.asset_check_evaluation_data.check_name): e.asset_check_evaluation_data
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def test_definitions_from_customers_yaml(make_config, monkeypatch, dagster_home):
    path, config = make_config()
    monkeypatch.setenv("AXE_CONFIG", str(path))
    module = importlib.import_module("axe_pipelines.definitions")
    defs = module.defs  # what workspace.yaml loads
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"axe/dumps/frame", "axe/dumps/hive", "axe/dumps/blueprint",
            "axe/dumps/index", "axe/folders/files", "axe/roles/frame-postgres",
            "axe/roles/index-postgres", "axe/tier_a/nightly_set"} <= keys
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    # Lineage: every dump and folder feeds the night's set.
    deps = {d.asset_key.to_user_string() for d in specs["axe/tier_a/nightly_set"].deps}
    assert {"axe/dumps/frame", "axe/folders/files", "axe/roles/index-postgres"} <= deps
    policy = specs["axe/dumps/frame"].freshness_policy
    assert policy is not None and policy.fail_window.to_timedelta().total_seconds() == 26 * 3600
    schedule = defs.resolve_schedule_def("axe_tier_a_nightly")
    assert schedule.cron_schedule == "0 3 * * *"
    assert schedule.execution_timezone == "Asia/Seoul"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def("axe_tier_a")
    assert job.tags["axe/repository"]
    assets_def = defs.resolve_assets_def(K(["axe", "tier_a", "nightly_set"]))
    assert assets_def.op.pool == repository_pool(config.customer("axe"))
    checks = {(c.asset_key.to_user_string(), c.name) for c in assets_def.check_specs}
    assert ("axe/tier_a/nightly_set", "coverage") in checks
    assert ("axe/dumps/index", "restorable") in checks


def test_the_ui_loads_the_workspace(make_config, tmp_path):
    """What `dagster dev` does with workspace.yaml, in a separate process: every name in the
    code location must be unique and every definition must resolve."""
    path, _ = make_config()
    home = tmp_path / "dagster_home"
    home.mkdir()
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w",
         str(root / "workspace.yaml")], cwd=root, capture_output=True, text=True, timeout=240,
        env={**os.environ, "AXE_CONFIG": str(path), "DAGSTER_HOME": str(home)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Validation successful" in proc.stdout + proc.stderr


def test_scheduled_run_materializes_everything_at_its_logical_time(make_config, server_a,
                                                                    dagster_home):
    _, config = make_config()
    local_restic("axe", config.customer("axe")).init()
    # The 03:00 KST tick of 2026-05-20, however late the run actually starts.
    result = materialize(config, tags={"dagster/scheduled_execution_time":
                                       "2026-05-19T18:00:00+00:00"})
    assert result.success
    materialized = {m.asset_key.to_user_string(): m
                    for m in result.asset_materializations_for_node(NODE)}
    assert len(materialized) == 8
    frame = materialized["axe/dumps/frame"].metadata
    assert row_counts_from(frame["row_counts"].value) == table_counts(server_a, "frame")
    assert frame["snapshot_time"].value == "2026-05-20T03:00:00+09:00"
    snap = local_restic("axe", config.customer("axe")).snapshots(
        tags=[f"run={result.run_id}", "database=frame"])[0]
    assert snap.id == frame["snapshot_id"].value
    assert snap.time == datetime(2026, 5, 20, 3, 0, tzinfo=KST)
    the_set = materialized["axe/tier_a/nightly_set"].metadata
    assert the_set["members"].value == 7 and the_set["failed"].value == []
    checks = checks_by_key(result)
    assert checks[("axe/tier_a/nightly_set", "coverage")].passed
    for db in ("frame", "hive", "blueprint", "index"):
        evaluation = checks[(f"axe/dumps/{db}", "restorable")]
        assert evaluation.passed, evaluation.description
        assert evaluation.metadata["rows_in_dump"].value == sum(
            row_counts_from(materialized[f"axe/dumps/{db}"].metadata["row_counts"].value).values())


def test_one_database_alone_then_its_check_alone(make_config, dagster_home):
    _, config = make_config()
    local_restic("axe", config.customer("axe")).init()
    hive = K(["axe", "dumps", "hive"])
    first = materialize(config, selection=[hive])
    assert first.success
    assert [m.asset_key for m in first.asset_materializations_for_node(NODE)] == [hive]
    assert set(checks_by_key(first)) == {("axe/dumps/hive", "restorable")}
    # From the UI an operator can re-run just the check: it reads the latest dump back.
    again = materialize(config, selection=dg.AssetSelection.checks(
        dg.AssetCheckKey(hive, "restorable")))
    assert again.success
    assert again.asset_materializations_for_node(NODE) == []
    evaluation = checks_by_key(again)[("axe/dumps/hive", "restorable")]
    first_meta = first.asset_materializations_for_node(NODE)[0].metadata
    assert evaluation.passed
    assert evaluation.metadata["snapshot_id"].value == first_meta["snapshot_id"].value


def test_failed_database_fails_the_run_and_the_coverage_check(make_config, server_a,
                                                               dagster_home):
    from axe_pipelines.postgres.cluster import free_port

    _, config = make_config(
        servers={"frame-postgres": server_entry(server_a),
                 "gone-postgres": {**server_entry(server_a), "port": free_port()}},
        databases={"hive": {"server": "frame-postgres"},
                   "index": {"server": "gone-postgres"}})
    local_restic("axe", config.customer("axe")).init()
    result = materialize(config)
    assert not result.success
    got = {m.asset_key.to_user_string() for m in
           result.asset_materializations_for_node(NODE)}
    assert "axe/dumps/hive" in got and "axe/dumps/index" not in got
    assert "axe/tier_a/nightly_set" in got  # the partial set is recorded, and flagged:
    coverage = checks_by_key(result)[("axe/tier_a/nightly_set", "coverage")]
    assert not coverage.passed and coverage.severity == dg.AssetCheckSeverity.ERROR
    assert "database index on gone-postgres is not in the set" in coverage.description
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("tier A of axe: 2 of 5 item(s) failed; the others were "
                                  "backed up")
    assert "db/index: " in description and "roles/gone-postgres: " in description
    assert description.count("Connection refused") == 2


def test_embedded_instance_keeps_runs_on_one_repository_apart(tmp_path):
    home = ensure_dagster_home(tmp_path / "home")
    assert (home / "dagster.yaml").read_text().startswith("# Embedded default")
    config = dg.DagsterInstance.get().get_concurrency_config()
    assert config.pool_config.default_pool_limit == 1
    assert config.run_queue_config.tag_concurrency_limits == [
        {"key": "axe/repository", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]


def test_each_item_is_recorded_as_it_finishes(make_config, dagster_home, monkeypatch):
    """A dump's materialization and restorable check are in the instance while a later item
    of the same run is still being backed up (issue 12: the events are written while the
    other items run, not all after the last one)."""
    import threading

    import axe_pipelines.assets.tier_a as tier_a_assets
    from axe_pipelines.backup import run_tier_a

    _, config = make_config(local={"parallel_items": 1})  # blueprint, then index
    local_restic("axe", config.customer("axe")).init()
    blueprint, index = K(["axe", "dumps", "blueprint"]), K(["axe", "dumps", "index"])
    instance = dg.DagsterInstance.get()
    seen = threading.Event()

    class HoldsTheLast:
        """Holds index's start (after blueprint, on the same server) until blueprint is
        recorded."""

        def __init__(self, inner):
            self.inner, self.finished = inner, 0

        def start(self, item):
            if item.name == "index":
                for _ in range(600):  # up to 60 s: the event would never come without streaming
                    if instance.get_latest_materialization_event(blueprint) is not None:
                        seen.set()
                        break
                    threading.Event().wait(0.1)
            self.inner.start(item)

        def progress(self, item, n):
            self.inner.progress(item, n)

        def finish(self, result):
            self.inner.finish(result)

    def holding(*args, reporter, **kwargs):
        return run_tier_a(*args, reporter=HoldsTheLast(reporter), **kwargs)

    monkeypatch.setattr(tier_a_assets, "run_tier_a", holding)
    axe = config.customer("axe")
    result = dg.materialize(
        [build_tier_a("axe", axe)], instance=instance, selection=[blueprint, index],
        resources={PROGRESS_RESOURCE: dg.ResourceDefinition.hardcoded_resource(None)},
        raise_on_error=False)
    assert result.success
    assert seen.is_set(), "blueprint's materialization was recorded only after index ran"
    checks = checks_by_key(result)
    assert checks[("axe/dumps/blueprint", "restorable")].passed
    assert checks[("axe/dumps/index", "restorable")].passed


def test_the_cli_starts_the_items_once_the_run_holds_its_slot(make_config, dagster_home):
    """`axe backup`'s runs start their items as soon as the run holds its pool slot, while
    Dagster still creates the run (early_run.py, issue 12): the first item starts before the
    run's RUN_START event, every item is still recorded by the run, and while the run is not
    recorded yet tiers B and C see its set as being written (its run folder's owner lives)."""
    import time
    import uuid

    from axe_pipelines.checks.tier_b import tier_a_running
    from axe_pipelines.instance.owner import run_dir
    from axe_pipelines.runs import InProcessRunner

    path, config = make_config(databases={"hive": {"server": "frame-postgres"},
                                          "blueprint": {"server": "index-postgres"}},
                               folders={})
    local_restic("axe", config.customer("axe")).init()
    instance = dg.DagsterInstance.get()
    run_id = str(uuid.uuid4())
    seen: dict[str, object] = {}

    class Recording:
        def __init__(self):
            self.results = []

        def start(self, item):
            seen.setdefault("first_start", time.time())
            # The run may not be recorded yet: tiers B and C must wait for this set anyway.
            seen.setdefault("in_progress", tier_a_running(instance)(run_id))

        def progress(self, item, n):
            pass

        def finish(self, result):
            self.results.append(result)

    run_dir(run_id)  # as `axe backup --local` makes it before its warm backups start
    reporter = Recording()
    at = datetime.now(KST).replace(microsecond=0)
    outcome = InProcessRunner(say=lambda _line: None).tier_a(
        config, "axe", reporter=reporter, skip_restore_check=False, run_id=run_id, at=at)
    assert outcome.success, outcome.failure
    assert reporter.results and all(r.ok for r in reporter.results)
    assert {"db/hive", "db/blueprint"} <= {r.item.label for r in reporter.results}
    started = [e.timestamp for e in instance.all_logs(run_id)
               if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_START]
    assert started and seen["first_start"] < started[0], "the items waited for the run"
    assert seen["in_progress"] is True
    for db in ("hive", "blueprint"):
        assert instance.get_latest_materialization_event(K(["axe", "dumps", db])).run_id == run_id
    checks = {c.name for c in outcome.checks if c.passed}
    assert {"restorable", "coverage"} <= checks
    assert not tier_a_running(instance)(run_id)  # recorded and finished


def test_a_run_failing_before_its_step_takes_the_items_waits_for_them(make_config, dagster_home,
                                                                     monkeypatch):
    """The op fails before it takes the items started at the slot claim: those items end
    (each one reported) while the run still holds its pool slot and its folder, so nothing
    else starts on the repository and tiers B and C keep waiting; then both are freed."""
    import uuid

    import axe_pipelines.assets.tier_a as tier_a_assets
    from axe_pipelines.checks.tier_b import tier_a_running
    from axe_pipelines.instance.owner import owner_of, run_dir
    from axe_pipelines.runs import InProcessRunner

    _, config = make_config(databases={"hive": {"server": "frame-postgres"}}, folders={})
    axe = config.customer("axe")
    local_restic("axe", axe).init()
    instance = dg.DagsterInstance.get()
    storage = instance.event_log_storage
    pool = repository_pool(axe)
    run_id = str(uuid.uuid4())

    def op_cannot_start(*_args, **_kwargs):
        raise RuntimeError("the op failed before it took its items")

    monkeypatch.setattr(tier_a_assets, "local_restic", op_cannot_start)
    seen: list[tuple[str, bool, bool, bool]] = []

    class Recording:
        results: list = []

        def start(self, item):
            pass

        def progress(self, item, n):
            pass

        def finish(self, result):
            held = run_id in {s.run_id for s in storage.get_concurrency_info(pool).claimed_slots}
            seen.append((result.item.label, held, owner_of(run_id) is not None,
                         tier_a_running(instance)(run_id)))

    run_dir(run_id)
    at = datetime.now(KST).replace(microsecond=0)
    outcome = InProcessRunner(say=lambda _line: None).tier_a(
        config, "axe", reporter=Recording(), skip_restore_check=False, run_id=run_id, at=at)
    assert not outcome.success and "axe_tier_a_backup" in outcome.failure
    assert sorted(label for label, *_ in seen) == ["db/hive", "roles/frame-postgres"]
    for label, held, folder, waiting in seen:
        assert held, f"{label} ended after the run's pool slot was freed"
        assert folder and waiting, f"{label} ended after tiers B and C stopped waiting"
    assert not storage.get_concurrency_info(pool).claimed_slots
    assert owner_of(run_id) is None and not tier_a_running(instance)(run_id)
