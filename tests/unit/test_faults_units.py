"""Issue 8 items 1-3 without servers: a dead run's process told apart from a live one (pid
gone, pid reused), the run folders swept, the watchdog's wall and idle bounds and its early
stop, interrupt.py stopping watched children in their process groups, ENOSPC in restic's
words becoming one line with the repository and its free space."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from axe_pipelines import interrupt
from axe_pipelines.instance import owner
from axe_pipelines.restic import Repository
from axe_pipelines.restic.errors import RepositoryFull, disk_full, free_space, raise_for
from axe_pipelines.restic.process import Watchdog, run_bounded, spawn
from axe_pipelines.secrets import EnvSource

ENOSPC_LINE = ("Save(<data/1be50482e7>) failed: write /srv/repo/data/1b/1be5-tmp-23: no space "
               "left on device\n")


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_process_is_gone_only_when_provably_so():
    me = owner.ProcessRecord.current()
    assert not me.gone
    assert owner.ProcessRecord(me.host, _dead_pid(), None).gone
    # Another host's process is never provably gone from here.
    assert not owner.ProcessRecord("elsewhere.invalid", _dead_pid(), None).gone


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="start ticks need /proc")
def test_a_reused_pid_is_gone():
    me = owner.ProcessRecord.current()
    assert me.start
    # The same pid, started at another tick (as when the kernel hands the pid on).
    boot, ticks = me.start.split("/")
    assert owner.ProcessRecord(me.host, me.pid, f"{boot}/{int(ticks) - 1}").gone
    assert owner.ProcessRecord(me.host, me.pid, f"other-boot/{ticks}").gone


def test_sweep_removes_only_dead_runs_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    live = owner.run_dir("11111111-live")
    (live / "axe-dump-x.stderr").write_text("pg_dump: error\n")
    dead = owner.run_dir("22222222-dead")
    (dead / "axe-dump-y.stderr").write_text("half a line")
    (dead / owner.OWNER_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": str(_dead_pid()), "start": ""}))
    stray = owner.runs_dir() / "stray"  # no owner.json: not provably a dead run's
    stray.mkdir()
    assert owner.sweep() == ["22222222-dead"]
    assert live.is_dir() and not dead.exists() and stray.is_dir()
    assert owner.owner_of("11111111-live") == owner.ProcessRecord.current()
    with pytest.raises(ValueError):
        owner.run_dir("../escape")


def test_watchdog_idle_bound_stops_a_silent_child_and_spares_a_moving_one():
    silent = subprocess.Popen(["sleep", "30"])
    dog = Watchdog(silent, idle=1.0)
    started = time.monotonic()
    silent.wait(10)
    assert dog.reason == "idle" and time.monotonic() - started < 5
    # A child that keeps moving outlives the idle bound several times over.
    done = run_bounded([sys.executable, "-c", "import time\nfor i in range(8):\n"
                        " print(i, flush=True); time.sleep(0.4)"], dict(os.environ),
                       timeout=None, idle_timeout=1.0, on_line=lambda line: True)
    assert done.code == 0 and done.reason == ""


def test_run_bounded_stops_at_once_on_a_stderr_reason():
    started = time.monotonic()
    done = run_bounded([sys.executable, "-c", f"import sys,time\nsys.stderr.write({ENOSPC_LINE!r})"
                        "\nsys.stderr.flush(); time.sleep(30)"], dict(os.environ),
                       timeout=60, on_line=lambda line: None,
                       stop_on=lambda ln: "full" if disk_full(ln) else None)
    assert done.reason == "full" and not done.timed_out
    assert time.monotonic() - started < 10


def test_enospc_is_one_line_with_the_repository_and_its_free_space(tmp_path):
    repo = Repository(str(tmp_path / "repo"), EnvSource(env="AXE_PW"),
                      f"tier A repository of axe ({tmp_path / 'repo'})")
    stderr = ENOSPC_LINE + json.dumps({"message_type": "exit_error", "code": 1, "message":
                                       "Fatal: unable to save snapshot: " + ENOSPC_LINE})
    with pytest.raises(RepositoryFull) as err:
        raise_for(130, stderr, repo, "backup of big.pgdump")
    (line,) = str(err.value).splitlines()
    assert line.startswith(f"tier A repository of axe ({tmp_path / 'repo'}): backup of "
                           f"big.pgdump failed: no space left on device at {tmp_path / 'repo'} (")
    assert line.endswith("iB free); free space there or move the repository, then run it again")
    assert free_space("sftp:peer:/srv/repo") == "free space unknown"


def test_stop_signals_watched_children_in_their_groups():
    interrupt.reset()
    try:
        # The child leads its own group; a grandchild in it goes down with it.
        proc = spawn(["sh", "-c", "sleep 30 & sleep 30; wait"], dict(os.environ), group=True)
        with interrupt.watched(proc, group=True):
            time.sleep(0.3)
            started = time.monotonic()
            interrupt.stop(signal.SIGTERM)
            proc.wait(10)
        assert time.monotonic() - started < 3
        assert interrupt.requested() == signal.SIGTERM
        with pytest.raises(interrupt.Interrupted) as err:
            interrupt.raise_if_requested()
        assert err.value.exit_code == 143 and str(err.value) == "interrupted"
        # A child watched after the stop is signalled at once.
        late = subprocess.Popen(["sleep", "30"])
        with interrupt.watched(late, sig=signal.SIGTERM):
            assert late.wait(5) == -signal.SIGTERM
    finally:
        interrupt.reset()
    assert interrupt.Interrupted(signal.SIGINT).exit_code == 130


def test_call_timeout_bounds_only_the_metadata_calls(tmp_path):
    from axe_pipelines.restic import Restic, ResticTimeout

    slow = tmp_path / "restic"
    slow.write_text("#!/bin/sh\nsleep 2\n")  # a restic whose every call takes 2 s
    slow.chmod(0o755)
    restic = Restic(Repository(str(tmp_path / "repo"), EnvSource(env="HOME"), "test repo"),
                    binary=str(slow), call_timeout=0.5)
    with pytest.raises(ResticTimeout):
        restic.run(["snapshots", "--json"], what="listing snapshots")
    # A restore may take as long as it takes (only the wall bound, none here, applies).
    assert restic.run(["restore", "latest", "--target", str(tmp_path)], what="restoring") == ""
