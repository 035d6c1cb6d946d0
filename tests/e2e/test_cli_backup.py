"""`axe backup --local` as an operator runs it: result table, exit codes, one line per failure,
and no secret anywhere (output, Dagster storage, process arguments)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg

from tests.conftest import PG_PASSWORD, server_entry


def run_axe(config_path: Path, home: Path, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, AXE_CONFIG=str(config_path), DAGSTER_HOME=str(home),
                    **(env or {}))
    return subprocess.run([sys.executable, "-m", "axe_pipelines.cli", *args], env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_backup_prints_the_table_and_exits_zero(make_config, tmp_path, restic_bin):
    path, _ = make_config()
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    proc = run_axe(path, home, "backup", "--local")
    assert proc.returncode == 0, proc.stderr
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
    assert "db/hive" in proc.stdout and "FAILED" in proc.stdout


def test_no_secret_in_output_dagster_storage_or_process_arguments(make_config, tmp_path,
                                                                  server_a, server_b,
                                                                  restic_bin):
    """The database password comes from a file, the repository's from a command; neither
    may show up in argv, the run's output, or anything Dagster stored."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "pg").write_text(PG_PASSWORD + "\n")
    repo_password = "repo-via-command-" + os.urandom(8).hex()
    (secrets_dir / "repo").write_text(repo_password + "\n")
    path, _ = make_config(
        servers={"frame-postgres": server_entry(server_a, password={"file": str(secrets_dir /
                                                                               "pg")}),
                 "index-postgres": server_entry(server_b, password={"file": str(secrets_dir /
                                                                               "pg")})},
        local={"password": {"command": ["cat", str(secrets_dir / "repo")]}})
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0

    seen: set[str] = set()
    stop = threading.Event()

    def sample_argv() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if raw:
                        seen.add(raw.replace(b"\0", b" ").decode(errors="replace"))

    sampler = threading.Thread(target=sample_argv, daemon=True)
    sampler.start()
    try:
        proc = run_axe(path, home, "backup", "--local",
                       env={"AXE_TEST_PG_PASSWORD": "", "AXE_TEST_REPO_PASSWORD": ""})
    finally:
        stop.set()
        sampler.join()
    assert proc.returncode == 0, proc.stderr
    # The sampler did watch the run (else this test could not fail).
    assert any(" --stdin-from-command -- " in c and "pg_dump" in c for c in seen)
    assert any("restic" in c for c in seen)

    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    for secret in (PG_PASSWORD, repo_password):
        assert secret not in proc.stdout and secret not in proc.stderr
        assert not [c for c in seen if secret in c]
        assert secret.encode() not in stored
    # And not in the run's config or any event Dagster recorded.
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.get()
    (run,) = instance.get_runs()
    events = " ".join(str(e) for e in instance.all_logs(run.run_id))
    assert len(events) > 1000
    for secret in (PG_PASSWORD, repo_password):
        assert secret not in str(run.run_config) and secret not in events


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
