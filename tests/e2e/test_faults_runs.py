"""Issue 8 item 1: a crashed run must not wedge every later backup. `kill -9` of `axe backup
--local` mid-dump leaves its Dagster run in progress holding its pool slot; the next backup on the
same home marks it failed, frees the slot, removes the killed run's scratch files and stale
lock, says so in one line and backs up. A slot held by a live run makes the next one wait with
a line naming that run, without spinning, and fail with exit 3 after wait_timeout_s."""

from __future__ import annotations

import signal
import subprocess
import time

import dagster as dg

from tests.e2e.faults_support import (
    BULK_DB,
    backends,
    backup_mid_dump,
    bulk_config,
    cpu_seconds,
    restic_json,
    run_axe,
    start_axe,
    wait_until,
)


def _instance(home) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def test_kill_9_mid_dump_then_the_next_backup_recovers(make_config, server_a, tmp_path,
                                                        restic_bin):
    path, home, proc, err = backup_mid_dump(make_config, server_a, tmp_path)
    # The items start once the run holds its slot, while Dagster still records the run
    # (early_run.py): killed once that record exists, whatever state it has reached.
    with _instance(home) as instance:
        wait_until("the run recorded", lambda: instance.get_runs(), proc=proc, err=err)
    scratch = [p for p in runs_dir_of(home).glob("*/axe-dump-*.stderr")]
    assert scratch, "the dump's stderr file lives in the run's folder"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    with _instance(home) as instance:
        (run,) = instance.get_runs()
        # What wedged every later run: a run left in progress.
        assert run.status in (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                              dg.DagsterRunStatus.STARTED)
        held = [k for k in instance.event_log_storage.get_concurrency_keys()
                if instance.event_log_storage.get_concurrency_info(k).claimed_slots]
        assert held, "the killed run still holds its pool slot"
    # doctor and status say so before anything is cleared.
    doctor = run_axe(path, home, "doctor").stdout.splitlines()
    assert [ln for ln in doctor if ln.startswith(f"FAIL run {run.run_id[:8]} (pid ") and
            f"is {run.status.value} but its process is gone" in ln], doctor
    assert [ln for ln in doctor if ln.startswith("FAIL run ") and "holds a slot of pool" in ln
            and "(stale)" in ln], doctor
    status = run_axe(path, home, "status")
    assert status.returncode == 1 and f"run {run.run_id[:8]}" in status.stdout, status.stdout

    started = time.monotonic()
    done = run_axe(path, home, "backup", "--local", "--plain", timeout=240)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 200
    line = f"run {run.run_id[:8]} (pid {run.tags['axe/pid']}, started "
    (said,) = [ln for ln in done.stderr.splitlines() if ln.startswith(line)]
    assert said.endswith(f"was left {run.status.value} by a process that is gone; marked it "
                         "failed and "
                         "freed its pool slot")
    with _instance(home) as instance:
        old = instance.get_run_by_id(run.run_id)
        assert old.status == dg.DagsterRunStatus.FAILURE
        logs = [e.message for e in instance.all_logs(run.run_id) if e.message]
        assert any("is gone (killed or crashed)" in m for m in logs)
        for key in instance.event_log_storage.get_concurrency_keys():
            assert not instance.event_log_storage.get_concurrency_info(key).claimed_slots
    assert not any(p.exists() for p in scratch), "the killed run's scratch files are removed"
    assert list(runs_dir_of(home).iterdir()) == []
    assert restic_json(restic_bin, tmp_path / "repo", "list", "locks", "--no-lock") == ""
    assert not [b for b in backends(server_a, BULK_DB) if b[1] == "idle in transaction"]


def runs_dir_of(home):
    """The run folders of a Dagster home (owner.runs_dir of the `axe` it ran)."""
    return home.resolve() / "axe" / "runs"


def test_a_live_holder_makes_the_next_run_wait_then_fail(make_config, server_a, tmp_path,
                                                        restic_bin):
    path, _ = bulk_config(make_config, server_a, wait_timeout_s=8)
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    # A DDL lock on the table keeps run A busy (alive, holding its slot) as long as we like.
    locker = subprocess.Popen([str(server_a.bin_dir / "psql"), "-h", "127.0.0.1", "-p",
                               str(server_a.port), "-U", "postgres", "-d", BULK_DB, "-q"],
                              stdin=subprocess.PIPE, text=True,
                              env={"PGPASSWORD": server_a.password or "", "PATH": "/usr/bin",
                                   "PGAPPNAME": "test-locker"})
    first: subprocess.Popen | None = None
    try:
        assert locker.stdin is not None
        locker.stdin.write("BEGIN; LOCK TABLE blob IN ACCESS EXCLUSIVE MODE;\n")
        locker.stdin.flush()
        err_a = tmp_path / "a.err"
        first = start_axe(path, home, "backup", "--local", "--plain", err=err_a)
        # Run A's own session waiting (A has its slot then): not the locker, which itself waits
        # on Lock while an earlier test's dump still reads the table.
        wait_until("run A waiting on the lock", lambda: "db/bulk: running" in err_a.read_text()
                   and any(w == "Lock" for app, _, w in backends(server_a, BULK_DB)
                           if app != "test-locker"), proc=first, err=err_a)
        err_b = tmp_path / "b.err"
        second = start_axe(path, home, "backup", "--local", "--plain", err=err_b)
        wait_until("the waiting line", lambda: "waiting for run" in err_b.read_text(),
                   proc=second, err=err_b)
        cpu_at_wait, waited_from = cpu_seconds(second.pid), time.monotonic()
        time.sleep(5)
        assert cpu_seconds(second.pid) - cpu_at_wait < 1.5, "the waiting run must not spin"
        assert second.wait(60) == 3
        waited = time.monotonic() - waited_from
        lines = err_b.read_text().splitlines()
        with _instance(home) as instance:
            (run_a,) = [r for r in instance.get_runs()
                        if r.status == dg.DagsterRunStatus.STARTED]
        holder = f"run {run_a.run_id[:8]} (pid {first.pid}, started "
        assert any(ln.startswith(f"tier A of axe: waiting for {holder}") for ln in lines)
        assert lines[-1].startswith(f"axe: tier A of axe: {holder}")
        assert "still holds pool" in lines[-1] and "after 8 s (tiers.local.wait_timeout_s)" \
            in lines[-1]
        assert 2 < waited < 30
        # A waiting run stops on SIGTERM at once (the wedged one ignored it).
        err_c = tmp_path / "c.err"
        third = start_axe(path, home, "backup", "--local", "--plain", err=err_c)
        wait_until("the waiting line", lambda: "waiting for run" in err_c.read_text(),
                   proc=third, err=err_c)
        signalled = time.monotonic()
        third.send_signal(signal.SIGTERM)
        assert third.wait(30) == 143
        assert time.monotonic() - signalled < 5
        assert err_c.read_text().splitlines()[-1] == "axe: interrupted"
    finally:
        locker.stdin.close()  # releases the lock: run A goes on
        locker.wait(30)
        # Waited for here even when an assertion above failed: a run A left dumping would
        # be the next test's "pg_dump streaming" on this worker's server.
        first_code = first.wait(240) if first is not None else None
    assert first_code == 0, err_a.read_text()
