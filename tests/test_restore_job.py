"""The Dagster `restore` job: typed Config, registered in the definitions, dry run by default,
the result recorded as output metadata, failures as one-line run failures."""

from __future__ import annotations

import dagster as dg

from axe_pipelines.assets.restore import RestoreConfig
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.definitions import build_definitions
from tests.test_restore import EXTRA_SQL, T1, db_fingerprint, table_md5


def _output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    events = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert len(events) == 1
    return {k: v.value for k, v in events[0].step_output_data.metadata.items()}


def test_restore_job_from_the_definitions(make_config, scratch_db, server_a, dagster_home):
    server_a.psql(EXTRA_SQL, dbname=scratch_db)
    _, config = make_config(databases={"ledger": {"server": "frame-postgres",
                                                  "dbname": scratch_db}}, folders={})
    local_restic("axe", config.customer("axe")).init()
    assert run_tier_a("axe", config.customer("axe"), at=T1, run_id="run-1").ok
    original = table_md5(server_a, scratch_db, "journal_line")
    server_a.psql("DELETE FROM journal_line WHERE id > 1500;", dbname=scratch_db)

    job = build_definitions(config).resolve_job_def("restore")
    # Typed Config: the UI's launchpad shows these fields.
    assert set(RestoreConfig.model_fields) >= {"customer", "tier", "as_of", "target", "table",
                                               "dry_run", "force", "check"}
    instance = dg.DagsterInstance.get()

    def run(**cfg: object) -> dg.ExecuteInProcessResult:
        return job.execute_in_process(
            run_config={"ops": {"restore_op": {"config": {"customer": "axe", **cfg}}}},
            instance=instance, raise_on_error=False)

    before = db_fingerprint(server_a, scratch_db)
    dry = run(target="ledger", table="journal_line", as_of="2026-05-19")  # dry_run defaults on
    assert dry.success
    assert db_fingerprint(server_a, scratch_db) == before
    meta = _output_metadata(dry)
    assert meta["dry_run"] is True and meta["set_time"].startswith("2026-05-19T03:00:00")

    real = run(target="ledger", table="journal_line", as_of="2026-05-19", dry_run=False)
    assert real.success
    assert table_md5(server_a, scratch_db, "journal_line") == original
    meta = _output_metadata(real)
    assert len(meta["snapshot_ids"]) == 1
    checks = {r.data["check"]: r.data["result"] for r in meta["checks"].records}
    assert checks == {"row-counts": "ok"}
    assert any("transaction" in r.data["step"] for r in meta["steps"].records)
    logs = [e.message for e in instance.all_logs(real.run_id) if e.user_message]
    assert any("replacing the rows in one transaction" in m for m in logs)

    bad = run(target="ledger", as_of="2026-05-01", dry_run=False)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert "no backup set" in description and "\n" not in description
