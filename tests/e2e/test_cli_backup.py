"""`axe backup --local` as an operator runs it: result table, exit codes, one line per failure,
and no secret anywhere (output, Dagster storage, process arguments)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import PG_PASSWORD, server_entry


def run_axe(config_path: Path, home: Path, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, AXE_CONFIG=str(config_path), DAGSTER_HOME=str(home),
                    **(env or {}))
    return subprocess.run([sys.executable, "-m", "axe_pipelines.cli", *args], env=full_env,
                          capture_output=True, text=True, timeout=300)


def counting_restic(tmp_path: Path, real: str) -> tuple[dict[str, str], Path]:
    """A restic that logs each invocation's argv (one line) and runs the real one; return the
    environment that makes axe use it, and the log."""
    log, shim = tmp_path / "restic-calls", tmp_path / "restic-shim"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    return {"AXE_RESTIC": str(shim)}, log


def test_backup_prints_the_table_and_exits_zero(make_config, tmp_path, restic_bin,
                                                monkeypatch):
    path, _ = make_config()
    home = tmp_path / "home"
    env, log = counting_restic(tmp_path, restic_bin)
    assert run_axe(path, home, "init", env=env).returncode == 0
    log.unlink()
    proc = run_axe(path, home, "backup", "--local", env=env)
    assert proc.returncode == 0, proc.stderr
    # One restic process per item and one for the set's set-meta, the first of them the
    # probe of the repository (no `cat config`): no version (remembered from `axe init`), no
    # lock listing, no read-back of snapshots or dumps (issue 12).
    assert [" ".join(ln.split()[:2]) for ln in log.read_text().splitlines()] == [
        "backup --json"] * 8
    assert proc.stdout.count(":restorable: ok") == 4
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["item", "status", "snapshot", "read", "added", "seconds"]
    items = [ln.split()[0] for ln in lines[1:9]]
    assert items == ["roles/frame-postgres", "roles/index-postgres", "db/frame", "db/hive",
                     "db/blueprint", "db/index", "files/files", "total"]
    assert all(ln.split()[1] == "ok" for ln in lines[1:9])
    assert "check axe/tier_a/nightly_set:coverage: ok" in proc.stdout
    # No terminal here: progress comes as plain lines, one when an item starts and one at end.
    assert "db/frame: running" in proc.stderr and "db/frame: done, snapshot" in proc.stderr
    assert "DEBUG" not in proc.stderr and "Traceback" not in proc.stderr
    # The terminal is the run's stdout/stderr: no compute-log capture (its `tail -F` and
    # watcher processes) for the CLI's runs, while the run and its events are recorded.
    assert not list((home / "storage").glob("*/compute_logs")), "the CLI run captured logs"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    runs = dg.DagsterInstance.get().get_runs()
    assert len(runs) == 1 and runs[0].is_success


def test_repository_missing_is_one_line_and_exit_3(make_config, tmp_path, restic_bin):
    path, _ = make_config()
    proc = run_axe(path, tmp_path / "home", "backup", "--local")
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        f"axe: tier A of axe: tier A repository of axe ({tmp_path / 'repo'}) does not exist at "
        f"{tmp_path / 'repo'}; create it with `axe init` (or check that its disk is mounted)"]


def test_wrong_repository_password_is_one_line_and_exit_3(make_config, tmp_path, restic_bin):
    path, _ = make_config()
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    proc = run_axe(path, home, "backup", "--local",
                   env={"AXE_TEST_REPO_PASSWORD": "not-the-password"})
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("axe: tier A of axe: wrong password for tier A repository of axe")
    assert "environment variable AXE_TEST_REPO_PASSWORD" in line
    assert "not-the-password" not in line


def test_a_repository_that_never_opens_is_one_line_within_the_bound(make_config, tmp_path,
                                                                   restic_bin):
    """The first warm backup is the night's probe (actions/backup.py `_open`): a restic whose
    backups never get as far as their command (a vanished disk, here a restic that stops
    there) fails the night within the tier's idle bound, with one line, nothing stored and
    no process left."""
    path, _ = make_config(local={"idle_timeout_s": 2})
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    shim = tmp_path / "hanging-restic"
    shim.write_text(f'#!/bin/sh\ncase "$*" in *backup*) exec sleep 617;; esac\n'
                    f'exec {restic_bin} "$@"\n')
    shim.chmod(0o755)
    started = time.monotonic()
    proc = run_axe(path, home, "backup", "--local", env={"AXE_RESTIC": str(shim)})
    assert time.monotonic() - started < 60
    assert proc.returncode == 3, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("axe: tier A of axe: tier A repository of axe")
    assert "opening the repository did not finish within 2 s; nothing was started" in line
    assert not any(p.is_file() for p in (tmp_path / "repo" / "snapshots").iterdir())
    left = subprocess.run(["pgrep", "-f", "sleep 617"], capture_output=True, text=True)
    assert left.stdout == "", "a warm backup outlived axe"


def test_failed_items_exit_1_with_a_line_each(make_config, tmp_path, server_a, restic_bin):
    from axe_pipelines.postgres.cluster import free_port

    path, _ = make_config(
        servers={"frame-postgres": server_entry(server_a),
                 "gone-postgres": {**server_entry(server_a), "port": free_port()}},
        databases={"hive": {"server": "frame-postgres"}, "gone": {"server": "gone-postgres"}})
    home = tmp_path / "home"
    run_axe(path, home, "init")
    proc = run_axe(path, home, "backup", "--local")
    assert proc.returncode == 1
    failures = [ln for ln in proc.stderr.splitlines() if ln.startswith("axe: axe ")]
    assert [ln.split(":")[1].strip() for ln in failures] == ["axe roles/gone-postgres",
                                                             "axe db/gone"]
    assert "check axe/tier_a/nightly_set:coverage: FAILED" in proc.stdout
    # Each item's own status in the table (not any FAILED, which the coverage line has):
    # the reachable server's items were backed up, the unreachable one's failed.
    rows = {ln.split()[0]: ln.split()[1:] for ln in proc.stdout.splitlines()[1:7]}
    assert {item: cells[0] for item, cells in rows.items()} == {
        "roles/frame-postgres": "ok", "roles/gone-postgres": "FAILED", "db/hive": "ok",
        "db/gone": "FAILED", "files/files": "ok", "total": "2"}
    assert len(rows["db/hive"][1]) == 8 and rows["total"][1] == "failed"  # hive's snapshot id


def traced_axe(config_path: Path, home: Path, trace: Path, *args: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """run_axe under `strace -f -e trace=execve`: every program started during the run, however
    short-lived (psql, the password command, the warm backups' gate), is recorded with its whole
    argv in `trace` (environment values are not: strace prints only their count)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed; run scripts/setup")
    full_env = dict(os.environ, AXE_CONFIG=str(config_path), DAGSTER_HOME=str(home),
                    **(env or {}))
    return subprocess.run([strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=execve",
                           "-s", "65536", "-o", str(trace), "--", sys.executable, "-m",
                           "axe_pipelines.cli", *args], env=full_env, capture_output=True,
                          text=True, timeout=600)


def test_no_secret_in_output_dagster_storage_or_process_arguments(make_config, tmp_path,
                                                                  server_a, server_b,
                                                                  restic_bin, monkeypatch):
    """The database password comes from a file, the repository's from a command (both files
    with a note on a second line); then a night with a wrong database password. No password,
    right or wrong, may show up in the argv of any process the runs started (every execve,
    traced), their output, or anything Dagster stored (run config, event log)."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "pg").write_text(PG_PASSWORD + "\nrotated 2026-05 (the note is no part of it)\n")
    repo_password = "repo-via-command-" + os.urandom(8).hex()
    (secrets_dir / "repo").write_text(repo_password + "\nold one in the safe\n")
    path, _ = make_config(
        servers={"frame-postgres": server_entry(server_a, password={"file": str(secrets_dir /
                                                                               "pg")}),
                 "index-postgres": server_entry(server_b, password={"file": str(secrets_dir /
                                                                               "pg")})},
        local={"password": {"command": ["cat", str(secrets_dir / "repo")]}})
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    no_env = {"AXE_TEST_PG_PASSWORD": "", "AXE_TEST_REPO_PASSWORD": ""}

    good = traced_axe(path, home, tmp_path / "good.trace", "backup", "--local", env=no_env)
    assert good.returncode == 0, good.stderr
    wrong_pg = "pg-wrong-" + os.urandom(8).hex()
    (secrets_dir / "pg").write_text(wrong_pg + "\n")
    bad = traced_axe(path, home, tmp_path / "bad.trace", "backup", "--local", env=no_env)
    assert bad.returncode == 1 and "password authentication failed" in bad.stderr, bad.stderr

    execs = [ln for t in ("good.trace", "bad.trace")
             for ln in (tmp_path / t).read_text().splitlines() if "execve(" in ln]
    # The trace saw the short-lived programs too (else this test could not fail).
    for program in ('/pg_dump", [', '/psql", [', '["cat", "' + str(secrets_dir / "repo"),
                    '"axe_pipelines.restic.gate", ', '"--stdin-from-command", "--", '):
        assert any(program in ln for ln in execs), program
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs()
    assert len(runs) == 2
    events = " ".join(str(e) for run in runs for e in instance.all_logs(run.run_id))
    assert len(events) > 1000
    for secret in (PG_PASSWORD, repo_password, wrong_pg):
        for proc in (good, bad):
            assert secret not in proc.stdout and secret not in proc.stderr
        assert not [ln for ln in execs if secret in ln]
        assert secret.encode() not in stored
        assert not [run for run in runs if secret in str(run.run_config)]
        assert secret not in events


def test_terminal_gets_a_live_table(make_config, tmp_path, restic_bin):
    """On a terminal, progress is a block redrawn in place (one line per item)."""
    import pty

    path, _ = make_config(databases={"hive": {"server": "frame-postgres"}})
    home = tmp_path / "home"
    run_axe(path, home, "init")
    leader, follower = pty.openpty()
    env = dict(os.environ, AXE_CONFIG=str(path), DAGSTER_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "axe_pipelines.cli", "backup", "--local"],
                            env=env, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(leader)
    assert proc.returncode == 0
    text = screen.decode(errors="replace")
    assert "\x1b[2K" in text and "\x1b[3F" in text  # lines cleared and redrawn in place
    assert "running" in text and "done" in text
    assert "db/hive: running" not in text  # not the plain-line format
    assert "db/hive" in out


def test_doctor_names_what_is_broken(make_config, tmp_path, server_a, restic_bin):
    from axe_pipelines.postgres.cluster import free_port

    port = free_port()
    path, _ = make_config(
        servers={"frame-postgres": server_entry(server_a),
                 "gone-postgres": {**server_entry(server_a), "port": port}},
        databases={"hive": {"server": "frame-postgres"}, "gone": {"server": "gone-postgres"}})
    home = tmp_path / "home"
    run_axe(path, home, "init")
    proc = run_axe(path, home, "doctor")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ok   restic 0.")
    assert any(ln.startswith("ok   database hive on frame-postgres") for ln in lines)
    assert any(ln.startswith(f"FAIL database gone: gone-postgres (127.0.0.1:{port})")
               for ln in lines)
    assert any(ln.startswith("ok   folder files") for ln in lines)


def test_locked_repository_is_one_line_and_exit_3(make_config, tmp_path, restic_bin):
    import signal

    from axe_pipelines.backup import local_restic

    from .test_restic import _hold_exclusive_lock

    path, config = make_config()
    home = tmp_path / "home"
    run_axe(path, home, "init")
    holder = _hold_exclusive_lock(local_restic("axe", config.customer("axe")))
    try:
        proc = run_axe(path, home, "backup", "--local")
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.wait(60)
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()
    assert f"is locked by PID {holder.pid} on " in line
    assert "wait for it to finish" in line
