"""`axe drill` end to end: real PostgreSQL servers dumped by `axe backup --local`, the real
restic binary, a throwaway staging server started by the drill, the local Slack stand-in;
what the drill proves, the evidence it keeps (files and a snapshot in tier A), its Dagster
record, and what it finds that `axe backup` alone did not."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from axe_pipelines import cli
from axe_pipelines.actions.drill import DrillOptions, run_drill
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.names import drill_key
from axe_pipelines.postgres.cluster import LocalCluster
from tests.conftest import (
    PG_PASSWORD,
    PG_PASSWORD_ENV,
    REPO_PASSWORD,
    create_sample_databases_named,
)
from tests.e2e.drill_support import (
    SLACK_ENV,
    leftovers,
    staging_processes,
    work_dir,  # noqa: F401 - fixture
    write_config,
)
from tests.slack_catcher import SlackCatcher

# Restored with search_path = '' (as every pg_dump restore is), the CHECK's SQL function no
# longer finds `allowed`: COPY of `guarded` fails and the table comes back empty. The dump
# itself holds all 20 rows, so tier A's restorable check passes.
SEARCH_PATH_TRAP = """
CREATE TABLE allowed (code text PRIMARY KEY);
INSERT INTO allowed VALUES ('a');
CREATE FUNCTION code_allowed(c text) RETURNS boolean LANGUAGE sql
    AS 'SELECT EXISTS (SELECT 1 FROM allowed WHERE code = c)';
CREATE TABLE guarded (id int PRIMARY KEY, code text CHECK (code_allowed(code)));
INSERT INTO guarded SELECT g, 'a' FROM generate_series(1, 20) g;
"""
# A generated column over a function declared IMMUTABLE that was changed afterwards: pg_dump
# leaves generated values out, the restore recomputes them with today's function. Same row
# count, other content: only a content digest sees it.
LYING_IMMUTABLE = """
CREATE FUNCTION rate() RETURNS numeric IMMUTABLE LANGUAGE sql AS 'SELECT 1.1';
CREATE TABLE evidence_blob (id int PRIMARY KEY, body bytea,
    weight numeric GENERATED ALWAYS AS (octet_length(body) * rate()) STORED);
INSERT INTO evidence_blob(id, body) SELECT g, decode(md5(g::text), 'hex')
    FROM generate_series(1, 30) g;
CREATE OR REPLACE FUNCTION rate() RETURNS numeric IMMUTABLE LANGUAGE sql AS 'SELECT 1.2';
"""


def _axe(path, *args: str) -> int:
    return cli.main(["--config", str(path), *args])


def _databases(server_a) -> dict:
    psql = str(server_a.bin_dir / "psql")
    return {
        "frame": {"server": "frame-postgres", "integrity": [
            {"name": "entities", "sql": "SELECT code FROM entity ORDER BY id",
             "expect": [["axec"], ["axev"]]},
            # {PG*} point at staging, PGPASSWORD (scram) comes in the environment.
            {"name": "lines-via-psql", "command": [
                psql, "-X", "-A", "-t", "-h", "{PGHOST}", "-p", "{PGPORT}", "-U", "{PGUSER}",
                "-d", "{PGDATABASE}", "-c", "SELECT count(*) FROM journal_line"]}]},
        "index": {"server": "index-postgres", "checksum_tables": ["evidence_blob"]},
    }


def test_drill_proves_every_item_keeps_evidence_and_reports(
        tmp_path, server_a, server_b, work_dir, dagster_home, monkeypatch, capsys):  # noqa: F811
    with SlackCatcher("ok") as slack:
        monkeypatch.setenv(SLACK_ENV, slack.webhook_url("T0/B0/drillsecret"))
        path, config = write_config(tmp_path, server_a, server_b, databases=_databases(server_a),
                                    drill={"work_dir": str(work_dir),
                                           "slack": {"webhook": {"env": SLACK_ENV}}})
        assert _axe(path, "init") == 0
        assert _axe(path, "backup", "--local", "--plain") == 0
        capsys.readouterr()
        assert _axe(path, "drill", "--customer", "axe", "--as-of", "latest") == 0
        out, err = capsys.readouterr()
        [message] = slack.wait_for(1)

    assert "drill of axe" in out and "passed" in out and "FAILED" not in out
    for item in ("db/frame", "db/index", "files/files"):
        assert item in out
    assert "check axe/drill/restore_drill:restorable_everywhere: ok" in out
    assert "drill: db/frame from local: proven" in err
    for secret in (PG_PASSWORD, REPO_PASSWORD, "drillsecret"):
        assert secret not in out + err

    # One Slack message: the verdict, the table, no fallbacks.
    body = message.json
    assert body["text"] == ":large_green_circle: axe: restore drill passed (3 items)"
    table = json.dumps(body["blocks"])
    assert "db/index" in table and "local" in table and "Fallbacks" not in table

    # Evidence: JSON and Markdown in the configured folder ...
    [folder] = list((tmp_path / "evidence" / "axe").iterdir())
    report = json.loads((folder / "drill.json").read_text())
    assert report["ok"] and report["host"] and report["axe_version"] == "0.1.0"
    assert "throwaway PostgreSQL" in report["staging"] and "random password" in report["staging"]
    index = next(i for i in report["items"] if i["name"] == "index")
    [served] = index["attempts"]
    checks = {c["check"]: c for c in served["checks"]}
    assert set(checks) >= {"roles-index-postgres", "restore", "row-counts", "checksum-tables"}
    assert checks["checksum-tables"]["result"] == "ok"
    assert "counted in the dump's snapshot" in checks["row-counts"]["detail"]
    assert served["rto_s"] > 0 and set(served["steps"]) == {"fetch", "restore", "checks"}
    frame = next(i for i in report["items"] if i["name"] == "frame")
    psql_check = next(c for c in frame["attempts"][0]["checks"]
                      if c["check"] == "lines-via-psql")
    assert psql_check["result"] == "ok" and psql_check["output"] == "5000"
    assert frame["rpo_age_h"] is not None and frame["rpo_age_h"] >= 0
    md = (folder / "drill.md").read_text()
    assert "# Restore drill of axe: PASSED" in md and "checksum-tables" in md

    # ... and backed up into tier A as a tagged snapshot.
    [evidence] = local_restic("axe", config.customer("axe")).snapshots(tags=["kind=drill"])
    assert evidence.id == report["evidence_snapshot"] and "customer=axe" in evidence.tags
    assert evidence.paths == (str(folder),)

    # Nothing of the staging server is left.
    assert leftovers(work_dir) == [] and staging_processes(work_dir) == []

    # The run is recorded: RTO/RPO as numbers, the check.
    instance = dg.DagsterInstance.get()
    event = instance.get_latest_materialization_event(drill_key("axe"))
    meta = event.asset_materialization.metadata
    assert meta["rto_s/db/index"].value > 0 and meta["rpo_h/db/frame"].value >= 0
    assert meta["result"].value == "passed"
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(drill_key("axe"), "restorable_everywhere")])
    assert check

    # axe integrity-check compares the same digest after its own staging restore.
    assert _axe(path, "integrity-check", "--customer", "axe", "--target", "index") == 0
    checked = capsys.readouterr().out
    assert "checksum-tables" in checked and "FAILED" not in checked

    # Past drills, from the evidence folder.
    assert _axe(path, "drill", "--report", "--last", "3") == 0
    past = capsys.readouterr().out
    assert past.count("drill of axe at ") == 1 and "db/index" in past


def test_drill_finds_what_the_backup_did_not(tmp_path, server_a, server_b, work_dir,  # noqa: F811
                                             dagster_home, capsys):
    """Row counts and a content digest that differ after a real restore: the check names the
    table and both values; the database is an ERROR (no other tier), exit 1."""
    name = "t_drill_trap"
    server_a.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
    create_sample_databases_named(server_a, name, "frame", rows=100)
    server_a.psql(SEARCH_PATH_TRAP + LYING_IMMUTABLE, dbname=name)
    try:
        path, _ = write_config(tmp_path, server_a, server_b, folders={}, drill={
            "work_dir": str(work_dir)}, databases={"ledger": {
                "server": "frame-postgres", "dbname": name,
                "checksum_tables": ["evidence_blob"]}})
        assert _axe(path, "init") == 0
        assert _axe(path, "backup", "--local", "--plain") == 0  # backup and readback: ok
        out = capsys.readouterr().out
        assert "restorable: ok" in out
        assert _axe(path, "drill", "--as-of", "latest") == 1
        out = capsys.readouterr().out
    finally:
        server_a.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
    assert "FAILED" in out and "restorable_everywhere: FAILED" in out
    [folder] = list((tmp_path / "evidence" / "axe").iterdir())
    report = json.loads((folder / "drill.json").read_text())
    local = report["items"][0]["attempts"][0]
    checks = {c["check"]: c for c in local["checks"]}
    assert checks["row-counts"]["result"] == "FAILED"
    assert ("public.guarded: 0 rows, 20 counted in the dump's snapshot"
            in checks["row-counts"]["detail"])
    digest = checks["checksum-tables"]
    assert digest["result"] == "FAILED" and digest["detail"].startswith("evidence_blob: digest 30:")
    assert "after the restore, 30:" in digest["detail"] and "at dump time" in digest["detail"]
    assert checks["restore"]["result"] == "FAILED"  # pg_restore said so too
    reasons = [a["reason"] for a in report["items"][0]["attempts"]]
    assert reasons[1:] == ["tier C is not configured", "tier B is not configured"]
    assert leftovers(work_dir) == []


@pytest.mark.parametrize("tier", ["nowhere"])
def test_unknown_tier_is_a_usage_error(tmp_path, server_a, server_b, work_dir, tier,  # noqa: F811
                                       capsys):
    path, _ = write_config(tmp_path, server_a, server_b, databases={}, drill={})
    assert _axe(path, "drill", "--tier", tier) == 2
    assert "unknown tier or peer 'nowhere'" in capsys.readouterr().err


def test_an_existing_staging_server_gets_back_what_the_drill_created(
        tmp_path, pg_root, server_a, server_b, work_dir, capsys):  # noqa: F811
    """drill.staging: the drill restores there (the roles the dump needs first) and drops the
    databases and roles it created afterwards."""
    name = "t_drill_owned"
    server_a.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
    server_a.psql("DROP ROLE IF EXISTS drill_owner; CREATE ROLE drill_owner;")
    create_sample_databases_named(server_a, name, "frame", rows=50)
    server_a.psql("ALTER TABLE journal_line OWNER TO drill_owner;", dbname=name)
    staging = LocalCluster(pg_root / f"staging-{tmp_path.name}", password=PG_PASSWORD).start()
    try:
        before = staging.psql("SELECT datname FROM pg_database ORDER BY 1;")
        path, config = write_config(
            tmp_path, server_a, server_b, folders={}, databases={
                "ledger": {"server": "frame-postgres", "dbname": name}},
            drill={"work_dir": str(work_dir), "staging": staging.server_config(
                password={"env": PG_PASSWORD_ENV})})
        local_restic("axe", config.customer("axe")).init()
        assert run_tier_a("axe", config.customer("axe"), at=_now(), run_id="r1").ok
        report = run_drill(config, "axe", DrillOptions(as_of="latest"))
        assert report.ok, report.fallback_lines()
        assert report.staging.startswith("existing server 127.0.0.1:")
        roles = {c["check"]: c for c in report.items[0].attempts[0].checks}
        assert "1 role(s) created in staging" in roles["roles-frame-postgres"]["detail"]
        assert staging.psql("SELECT datname FROM pg_database ORDER BY 1;") == before
        assert staging.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'drill_owner';") \
            == [["0"]]
        assert leftovers(work_dir) == []
    finally:
        staging.stop()
        server_a.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
        server_a.psql("DROP ROLE IF EXISTS drill_owner;")


def _now():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Asia/Seoul")).replace(microsecond=0)
