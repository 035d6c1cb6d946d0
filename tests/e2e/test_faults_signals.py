"""Issue 8 item 3: Ctrl-C (SIGINT) or a service manager's SIGTERM to `axe backup --local`
mid-dump stops it within ~10 s (not after every item), takes its children (restic, pg_dump,
the snapshot session) down with it, leaves no restic lock and no open transaction, records
the run as ended, prints `axe: interrupted` and exits 130 / 143."""

from __future__ import annotations

import signal
import time

import dagster as dg
import pytest

from tests.e2e.faults_support import (
    BULK_DB,
    alive,
    backends,
    backup_mid_dump,
    descendants,
    restic_json,
    wait_until,
)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_dump_stops_the_run_and_its_children(make_config, server_a, tmp_path,
                                                          restic_bin, sig, code):
    _, home, proc, err = backup_mid_dump(make_config, server_a, tmp_path)
    children = descendants(proc.pid)
    assert children
    started = time.monotonic()
    proc.send_signal(sig)  # the axe process only, as `kill` or a service manager sends it
    assert proc.wait(60) == code, err.read_text()
    stopped_in = time.monotonic() - started
    assert stopped_in < 12, f"took {stopped_in:.1f} s to stop"
    lines = err.read_text().splitlines()
    assert lines[-1] == "axe: interrupted"
    assert not [ln for ln in lines if "Traceback" in ln]
    wait_until("children gone", lambda: not any(alive(p) for p in children), timeout=10)
    assert not [b for b in backends(server_a, BULK_DB) if b[0] == "pg_dump" or
                b[1] == "idle in transaction"]
    assert restic_json(restic_bin, tmp_path / "repo", "list", "locks", "--no-lock") == ""
    assert '"database=bulk"' not in restic_json(restic_bin, tmp_path / "repo", "snapshots",
                                                "--json")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.FAILURE
        for key in instance.event_log_storage.get_concurrency_keys():
            assert not instance.event_log_storage.get_concurrency_info(key).claimed_slots
