"""`axe status` against real repositories: tier A's states and exit codes, the JSON and its
keys, what the Dagster instance says about `restic check` and the drill, a stale lock left by
a killed restic, a ring peer behind a real sshd that goes away, and cold volumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml

from axe_pipelines.backup import local_restic, plan_tier_a, run_tier_a
from axe_pipelines.config import load_config
from axe_pipelines.instance import ensure_dagster_home
from axe_pipelines.names import RESTIC_CHECK, RESTORABLE_EVERYWHERE, drill_key, set_key
from tests.conftest import REPO_PASSWORD_ENV
from tests.e2e.test_cli_backup import run_axe
from tests.sshd import have_sshd, make_server

FOLDER_ONLY = {"servers": {}, "databases": {}}
KST = ZoneInfo("Asia/Seoul")


def ago(**delta: float) -> datetime:
    """A logical time that long ago, in the customer's zone (restic's --time is read in the
    tier's zone: a UTC wall clock there would be 9 hours off)."""
    return (datetime.now(KST) - timedelta(**delta)).replace(microsecond=0)


def status_json(path: Path, home: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = run_axe(path, home, "status", "--json", *args)
    assert proc.stderr == "", proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{t['tier']} {t['where']}": t for c in data["customers"] for t in c["tiers"]}


def test_tier_a_states_and_exit_codes(make_config, tmp_path, restic_bin):
    # What `axe status` said about tier A before it covered every tier, line by line.
    path, config = make_config(databases={"hive": {"server": "frame-postgres"}})
    axe = config.customer("axe")
    home = tmp_path / "home"
    run_axe(path, home, "init")
    proc = run_axe(path, home, "status")
    assert proc.returncode == 1
    assert f"  axe local: NO BACKUP: no set yet in {tmp_path / 'repo'}" in proc.stdout

    now = ago(hours=0)
    run_tier_a("axe", axe, at=now - timedelta(hours=30), run_id="old")
    proc = run_axe(path, home, "status")
    assert proc.returncode == 1 and "  axe local: STALE: newest set 30.0 h old (limit 26 h)" \
        in proc.stdout

    hive_only = [i for i in plan_tier_a(axe) if i.kind == "pgdump"]
    run_tier_a("axe", axe, at=now - timedelta(hours=1), run_id="partial", items=hive_only)
    proc = run_axe(path, home, "status")
    assert proc.returncode == 1
    table = proc.stdout.splitlines()
    assert table[1].split()[1] == "local" and "2 missing" in table[1] and "INCOMPLETE" in table[1]
    assert "  axe local: INCOMPLETE: missing roles of server frame-postgres is not in the set" \
        in proc.stdout
    assert f"  axe local: INCOMPLETE: missing required folder {tmp_path / 'files'} is not in " \
           f"the set" in proc.stdout

    run_tier_a("axe", axe, at=now, run_id="full")
    proc = run_axe(path, home, "status")
    assert proc.returncode == 0, proc.stdout
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("axe ")]
    cells = line.split()
    # The newest set's logical time in the customer's zone (the process runs in UTC).
    assert cells[:5] == ["axe", "local", f"{now:%Y-%m-%d}", f"{now:%H:%M}", "0.0"]
    assert cells[6:8] == ["3", "complete"] and cells[-1] == "ok"
    assert "problems:" not in proc.stdout

    # The repository unusable is the row's state, the exit code 1 (monitoring: unknown).
    proc = run_axe(path, home, "status", env={REPO_PASSWORD_ENV: "not-the-password"})
    assert proc.returncode == 1 and "axe local: UNAVAILABLE: " in proc.stdout
    assert "wrong password" in proc.stdout


def _record(home: Path, key: dg.AssetKey, check: str, passed: bool, description: str) -> None:
    """Writes one evaluation of `check` on `key` into the instance at `home`, as the care and
    drill jobs do."""

    @dg.asset(key=key, check_specs=[dg.AssetCheckSpec(check, asset=key)])
    def stand_in():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name=check, passed=passed, description=description,
                                  severity=dg.AssetCheckSeverity.ERROR)

    with dg.DagsterInstance.from_config(str(ensure_dagster_home(home))) as instance:
        assert dg.materialize([stand_in], instance=instance).success


def test_json_schema_and_what_dagster_says_about_checks_and_drills(make_config, tmp_path,
                                                                   restic_bin):
    path, config = make_config(**FOLDER_ONLY)
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    run_tier_a("axe", config.customer("axe"), at=ago(hours=1),
               run_id="r1")
    code, data = status_json(path, home)
    assert code == 0 and data["ok"] is True and data["exit_code"] == 0
    assert data["schema"] == 1 and isinstance(data["generated_at"], str)
    assert data["stuck_runs"] == []
    (customer,) = data["customers"]
    assert customer["customer"] == "axe" and customer["timezone"] == "Asia/Seoul"
    assert customer["drill"]["result"] == "never"
    local = rows(data)["local local"]
    types = {"tier": str, "where": str, "repository": str, "state": str, "problems": list,
             "error": str, "newest_set": dict, "sets": int, "size": dict, "locks": dict,
             "check": dict, "last_sync": type(None), "note": str}
    assert {k: type(local[k]) for k in types} == types
    assert local["state"] == "ok" and local["sets"] == 1 and local["check"]["result"] == "never"
    newest = local["newest_set"]
    assert newest["run_id"] == "r1" and newest["complete"] is True
    assert newest["items"] == ["files/files"] and newest["missing"] == []
    assert datetime.fromisoformat(newest["time"]).utcoffset() == timedelta(hours=9)
    assert 0.9 < newest["age_hours"] < 1.2
    assert newest["raw_bytes"] > 0 and local["size"]["stored_bytes"] > 0
    assert local["size"]["raw_bytes"] is None  # restic stats only with --sizes
    assert local["locks"] == {"total": 0, "stale": 0}

    _record(home, set_key("axe"), RESTIC_CHECK, False, "pack 4f2a: 2 errors; run restic "
                                                       "repair packs 4f2a")
    _record(home, drill_key("axe"), RESTORABLE_EVERYWHERE, True, "every database proven")
    code, data = status_json(path, home, "--sizes")
    assert code == 1 and data["ok"] is False
    local = rows(data)["local local"]
    assert local["state"] == "CHECK FAILED"
    assert local["check"]["result"] == "FAILED" and "repair packs" in local["check"]["summary"]
    assert local["check"]["age_hours"] < 0.1
    assert data["customers"][0]["drill"]["result"] == "ok"
    assert local["size"]["raw_bytes"] > 0 and local["size"]["stored_bytes"] > 0

    text = run_axe(path, home, "status")
    assert text.returncode == 1
    assert "  axe local: CHECK FAILED: restic check of " in text.stdout
    assert "FAILED 0.0 h" in text.stdout and "ok 0.0 h" in text.stdout


def test_axe_check_is_recorded_for_status(make_config, tmp_path, restic_bin):
    # A cron site runs `axe check`, no weekly job: status must see its result and age, not
    # "never" (CHECK OVERDUE for ever).
    path, config = make_config(**FOLDER_ONLY)
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    run_tier_a("axe", config.customer("axe"), at=ago(hours=1), run_id="r1")
    proc = run_axe(path, home, "check", "--tier", "local")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    code, data = status_json(path, home)
    local = rows(data)["local local"]
    assert code == 0 and local["state"] == "ok"
    assert local["check"]["result"] == "ok" and local["check"]["age_hours"] < 0.1
    assert "restic check" in local["check"]["summary"]

    # Damage found by `axe check --read-data` is recorded the same way: CHECK FAILED.
    packs = sorted((tmp_path / "repo" / "data").rglob("*"), key=lambda p: p.stat().st_size)
    pack = [p for p in packs if p.is_file()][-1]
    data_bytes = bytearray(pack.read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0xFF
    pack.chmod(0o600)
    pack.write_bytes(bytes(data_bytes))
    assert run_axe(path, home, "check", "--tier", "local", "--read-data").returncode == 1
    code, data = status_json(path, home)
    local = rows(data)["local local"]
    assert code == 1 and local["state"] == "CHECK FAILED"
    assert local["check"]["result"] == "FAILED"


@pytest.mark.parametrize("fault", ["flipped database", "broken dagster.yaml"])
def test_an_unreadable_dagster_instance_is_unknown_not_never(make_config, tmp_path, restic_bin,
                                                             fault):
    path, config = make_config(**FOLDER_ONLY)
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    run_tier_a("axe", config.customer("axe"), at=ago(hours=1), run_id="r1")
    assert run_axe(path, home, "check", "--tier", "local").returncode == 0
    assert status_json(path, home)[0] == 0
    if fault == "flipped database":  # the SQLite files hold garbage: opens, reads fail
        for db in home.rglob("*.db"):
            db.write_bytes(b"not a database " * 512)
    else:
        (home / "dagster.yaml").write_text("run_storage:\n  module: no_such_module\n"
                                           "  class: Nothing\n")
    for args in (["status"], ["status", "--json"]):
        proc = run_axe(path, home, *args)
        assert proc.returncode == 1, proc.stdout
    data = json.loads(proc.stdout)
    assert f"Dagster instance at {home}" in data["history_error"]
    assert data["ok"] is False
    text = run_axe(path, home, "status").stdout
    assert "UNKNOWN: " in text and f"Dagster instance at {home}" in text


def test_a_lock_left_by_a_killed_restic_is_stale_lock(make_config, tmp_path, restic_bin):
    path, config = make_config(**FOLDER_ONLY)
    home = tmp_path / "home"
    run_axe(path, home, "init")
    restic = local_restic("axe", config.customer("axe"))
    run_tier_a("axe", config.customer("axe"), at=ago(hours=0), run_id="r1")
    locks = tmp_path / "repo" / "locks"
    holder = subprocess.Popen([restic.binary, "backup", "--stdin-from-command", "--tag", "t",
                               "--", "sleep", "60"], env=restic.env(), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not [p for p in locks.iterdir() if "-tmp-" not in p.name]:
        assert time.monotonic() < deadline, "restic took no lock"
        time.sleep(0.05)
    os.killpg(holder.pid, signal.SIGKILL)  # restic and its sleep: nobody removes the lock
    holder.wait(10)
    (lock,) = list(locks.iterdir())
    code, data = status_json(path, home)
    assert code == 0 and rows(data)["local local"]["locks"] == {"total": 1, "stale": 0}
    aged = time.time() - 31 * 60  # restic refreshes a live lock every 5 minutes
    os.utime(lock, (aged, aged))
    code, data = status_json(path, home)
    local = rows(data)["local local"]
    assert code == 1 and local["state"] == "STALE LOCK"
    assert local["locks"] == {"total": 1, "stale": 1}
    assert "1 lock(s) not refreshed for 30 min" in local["problems"][0]


def _with_tiers(path: Path, **tiers: Any) -> None:
    data = yaml.safe_load(path.read_text())
    data["axe"]["tiers"].update(tiers)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_cold_volumes_mounted_and_not(make_config, tmp_path, restic_bin, monkeypatch):
    from axe_pipelines.cold import find_volumes, sync_volume

    monkeypatch.setenv("AXE_TEST_COLD_PASSWORD", "cold-" + os.urandom(6).hex())
    path, _ = make_config(**FOLDER_ONLY)
    today = datetime.now(KST)
    quarter = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
    _with_tiers(path, cold={"password": {"env": "AXE_TEST_COLD_PASSWORD"},
                            "mount_glob": str(tmp_path / "vol" / "axe-cold-*"),
                            "accept_plain_folders": True, "rotation_start": quarter})
    (tmp_path / "vol" / "axe-cold-1").mkdir(parents=True)
    config = load_config(path)
    home = tmp_path / "home"
    run_axe(path, home, "init")
    run_tier_a("axe", config.customer("axe"), at=ago(hours=0), run_id="r1")
    (volume,) = find_volumes(config.customer("axe").tiers.cold)
    sync_volume(config, "axe", volume)
    code, data = status_json(path, home)
    found = rows(data)
    assert sorted(found) == ["cold #2", "cold #3", "cold axe-cold-1", "local local"]
    one = found["cold axe-cold-1"]
    assert one["state"] == "ok" and one["sets"] == 1 and one["newest_set"]["complete"]
    assert one["last_sync"] is not None and one["locks"]["total"] == 0
    assert found["cold #2"]["state"] == "offline" and found["cold #2"]["note"] == "not mounted"
    assert code == 0, data


needs_sshd = pytest.mark.skipif(not have_sshd(), reason="openssh-server is not installed")


@needs_sshd
def test_ring_peer_retried_from_the_cli_then_shown_and_then_unreachable(make_config, tmp_path,
                                                                        restic_bin,
                                                                        monkeypatch):
    monkeypatch.setenv("AXE_TEST_RING_PASSWORD", "ring-" + os.urandom(6).hex())
    sshd = make_server(tmp_path / "sshd", alias="peer.invalid")  # not started: refused
    path, _ = make_config(**FOLDER_ONLY)
    peer_dir = tmp_path / "peer-disk" / "axe"
    peer_dir.parent.mkdir(parents=True)
    data = yaml.safe_load(path.read_text())
    data["realchoice"]["ring_backup"].update(
        ssh_user=sshd.user, ssh_fqdn="peer.invalid", ssh_ip="127.0.0.1", ssh_port=sshd.port,
        ssh_key=str(sshd.user_key), known_hosts=str(sshd.known_hosts),
        receive_dir_at_peer=str(peer_dir) + "/")
    data["axe"]["tiers"]["ring"] = {"connect_timeout_s": 3, "alive_interval_s": 1,
                                    "alive_count_max": 2, "timeout_s": 60, "retries": 2,
                                    "retry_delay_s": 2,
                                    "password": {"env": "AXE_TEST_RING_PASSWORD"}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(path)
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    run_tier_a("axe", config.customer("axe"), at=ago(hours=1),
               run_id="r1")
    try:
        _push_while_the_peer_comes_back(path, home, sshd)
        code, data = status_json(path, home)
        ring = rows(data)["ring realchoice"]
        assert code == 0, data
        assert ring["state"] == "ok" and ring["newest_set"]["run_id"] == "r1"
        assert ring["repository"].startswith("sftp:") and ring["sets"] == 1
    finally:
        sshd.stop()
    started = time.monotonic()
    code, data = status_json(path, home)
    took = time.monotonic() - started
    ring = rows(data)["ring realchoice"]
    assert code == 1 and ring["state"] == "UNREACHABLE"
    assert "cannot reach realchoice" in ring["error"]
    assert ring["note"].startswith("last push recorded: set of ")
    assert rows(data)["local local"]["state"] == "ok"
    assert took < 30, took  # refused at once; never the 3600 s restic bound


def _push_while_the_peer_comes_back(path: Path, home: Path, sshd) -> None:
    """`axe backup --ring` while the peer refuses: after its first failure says it will
    retry, the peer's sshd starts; the retry pushes the set."""
    env = dict(os.environ, AXE_CONFIG=str(path), DAGSTER_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "axe_pipelines.cli", "backup", "--ring"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line)
            if "retry 1 of 2 in 2 s" in line:
                sshd.start()
                break
        out, rest = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(err_lines) + rest
    assert proc.returncode == 0, stderr
    assert "tier B of axe: realchoice failed (tier B: cannot reach realchoice" in stderr
    assert "retry 2 of 2" not in stderr
    assert "tier B axe -> realchoice" in out and "1 copied" in out
