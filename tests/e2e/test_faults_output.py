"""Issue 8, output an operator can read, and item 9: a failed item is one `axe: <customer>
<item>: <reason>` line on stderr, with Dagster's ERROR records and stack traces kept in the run
log (`--verbose` shows them); and a database whose `dbname` does not exist fails alone, not
the server's roles too (roles and pg_dumpall connect through the maintenance database)."""

from __future__ import annotations

import dagster as dg

from tests.conftest import server_entry
from tests.e2e.faults_support import run_axe


def _missing_db_config(make_config, server_a):
    """frame backs up fine; `gone` names a database the server does not have, and comes first
    on the server (the roles item used to connect through it)."""
    return make_config(servers={"frame-postgres": server_entry(server_a)},
                       databases={"gone": {"server": "frame-postgres", "dbname": "no_such_db"},
                                  "frame": {"server": "frame-postgres"}}, folders={})


def test_a_failed_item_is_one_line_and_the_run_log_keeps_the_rest(make_config, server_a,
                                                                  tmp_path, restic_bin):
    path, _ = _missing_db_config(make_config, server_a)
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    done = run_axe(path, home, "backup", "--local", "--plain")
    assert done.returncode == 1
    err = done.stderr.splitlines()
    for noise in ("dagster - ERROR", "Traceback", "Stack Trace", "STEP_FAILURE", "RUN_FAILURE"):
        assert not [ln for ln in err if noise in ln], done.stderr
    failures = [ln for ln in err if ln.startswith("axe: ")]
    assert len(failures) == 1, done.stderr
    assert failures[0].startswith("axe: axe db/gone: ") and "no_such_db" in failures[0]
    # Item 9: the roles of that server are backed up all the same.
    rows = {ln.split()[0]: ln.split()[1] for ln in done.stdout.splitlines()[1:4]}
    assert rows == {"roles/frame-postgres": "ok", "db/gone": "FAILED", "db/frame": "ok"}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        logged = [e for e in instance.all_logs(run.run_id)
                  if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"]
        assert logged, "the step's failure and its stack trace are in the run log"

    verbose = run_axe(path, home, "backup", "--local", "--plain", "--verbose")
    assert verbose.returncode == 1
    assert "STEP_FAILURE" in verbose.stderr and "dagster - ERROR" in verbose.stderr
