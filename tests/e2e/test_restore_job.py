"""The Dagster `restore` job: typed Config, registered in the definitions, dry run by default,
the result recorded as output metadata, failures as one-line run failures."""

from __future__ import annotations

import sys

import dagster as dg
import yaml

from axe_pipelines.assets.restore import RestoreConfig
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.definitions import build_definitions
from tests.e2e.test_restore import EXTRA_SQL, T1, db_fingerprint, table_md5


def _output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    events = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert len(events) == 1
    return {k: v.value for k, v in events[0].step_output_data.metadata.items()}


def test_restore_job_from_the_definitions(make_config, scratch_db, server_a, dagster_home):
    server_a.psql(EXTRA_SQL, dbname=scratch_db)
    _, config = make_config(databases={"ledger": {
        "server": "frame-postgres", "dbname": scratch_db,
        "integrity": [{"name": "frame-cli", "command": [
            sys.executable, "-c", "print('entity axec: 0 mismatches')"]}]}}, folders={})
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
    assert checks == {"row-counts": "ok", "frame-cli": "ok"}
    # The command's output is kept: in the check table and as its own text.
    outputs = {r.data["check"]: r.data["output"] for r in meta["checks"].records}
    assert outputs["frame-cli"] == "entity axec: 0 mismatches"
    assert "entity axec: 0 mismatches" in meta["command_output"]
    assert any("transaction" in r.data["step"] for r in meta["steps"].records)
    logs = [e.message for e in instance.all_logs(real.run_id) if e.user_message]
    assert any("replacing the rows in one transaction" in m for m in logs)

    bad = run(target="ledger", as_of="2026-05-01", dry_run=False)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert "no backup set" in description and "\n" not in description

    # Unknown customer: a one-line run failure, not a crash.
    unknown = job.execute_in_process(
        run_config={"ops": {"restore_op": {"config": {"customer": "nobody"}}}},
        instance=instance, raise_on_error=False)
    assert not unknown.success
    failure = next(e for e in unknown.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("unknown customer 'nobody'") and "\n" not in description


def test_restore_job_from_a_ring_peer_without_tier(make_config, scratch_db, server_a,
                                                   dagster_home, tmp_path):
    """source=realchoice alone means the ring tier (tier is optional, as in the CLI): the
    run gets as far as the peer (which does not answer here) instead of refusing
    'local' vs 'realchoice'."""
    from axe_pipelines.config import load_config
    from axe_pipelines.postgres.cluster import free_port

    path, _ = make_config(databases={"ledger": {"server": "frame-postgres",
                                                "dbname": scratch_db}}, folders={})
    data = yaml.safe_load(path.read_text())
    data["realchoice"]["ring_backup"].update(ssh_fqdn="127.0.0.1", ssh_ip=None,
                                             ssh_port=free_port())
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    assert RestoreConfig(customer="axe").tier is None
    job = build_definitions(config).resolve_job_def("restore")
    result = job.execute_in_process(
        run_config={"ops": {"restore_op": {"config": {"customer": "axe",
                                                      "source": "realchoice"}}}},
        instance=dg.DagsterInstance.get(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert "tier ring" in description and "cannot reach realchoice" in description
    assert "\n" not in description


def test_restore_job_whole_set_failure_keeps_the_undo_in_metadata(make_config, scratch_db,
                                                                  server_a, dagster_home):
    """A whole-set restore where one database's server is gone: the run fails with one line
    naming it, and its metadata holds the other database's undo command."""
    from axe_pipelines.config import load_config
    from axe_pipelines.postgres.cluster import free_port
    from tests.conftest import server_entry

    path, config = make_config(
        servers={"frame-postgres": server_entry(server_a),
                 "ghost-postgres": server_entry(server_a)},
        databases={"ledger": {"server": "frame-postgres", "dbname": scratch_db},
                   # The same database seen through a second server entry.
                   "ghost": {"server": "ghost-postgres", "dbname": scratch_db}},
        folders={})
    local_restic("axe", config.customer("axe")).init()
    assert run_tier_a("axe", config.customer("axe"), at=T1, run_id="run-1").ok
    data = yaml.safe_load(path.read_text())
    data["axe"]["servers"]["ghost-postgres"]["port"] = free_port()  # the server is gone
    path.write_text(yaml.safe_dump(data))
    job = build_definitions(load_config(path)).resolve_job_def("restore")
    result = job.execute_in_process(
        run_config={"ops": {"restore_op": {"config": {"customer": "axe", "dry_run": False,
                                                      "force": True}}}},
        instance=dg.DagsterInstance.get(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    data_ = failure.step_failure_data.user_failure_data
    assert "2 of 4 item(s) failed" in data_.description and "database ghost" in data_.description
    assert "\n" not in data_.description
    assert "--target ledger --undo " in data_.metadata["undo"].value
    assert any("database ghost" in f for f in data_.metadata["failed"].value)
    for name, in server_a.psql("SELECT datname FROM pg_database WHERE datname ~ "
                               "'_(before_restore|restoring|restored)_[0-9]{14}$';"):
        server_a.psql(f'DROP DATABASE "{name}" WITH (FORCE);')
