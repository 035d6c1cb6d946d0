"""What keeps `axe`'s fixed cost down (issue 12): commands that need neither Dagster nor
pandas do not import them, the result table is laid out as pandas did without pandas, and the
program skips the last garbage collection of its objects at exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from axe_pipelines.text_table import text_table

ROOT = Path(__file__).resolve().parents[2]

# Run `axe <argv>` through cli.main in a fresh interpreter and print which heavy modules it
# imported (a set of names, one line) after the command's own output.
_PROBE = """
import sys
from axe_pipelines import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
heavy = ("dagster", "pandas", "sqlalchemy", "grpc")
print("IMPORTED", sorted(m for m in heavy if m in sys.modules))
"""


def _imported(argv: list[str], tmp_path: Path) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DAGSTER_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120).stdout
    line = next(x for x in out.splitlines() if x.startswith("IMPORTED"))
    return eval(line.removeprefix("IMPORTED "))  # noqa: S307 - our own probe's list


@pytest.mark.parametrize("argv", [["--help"], ["backup", "--help"], ["restore", "--help"],
                                  ["config", "validate"]])
def test_light_commands_import_neither_dagster_nor_pandas(argv: list[str],
                                                          tmp_path: Path) -> None:
    config = tmp_path / "customers.yaml"
    config.write_text("axe:\n  servers: {}\n  databases: {}\n")
    assert _imported(["--config", str(config), *argv], tmp_path) == []


ROWS = [
    [{"item": "total", "status": "ok", "snapshot": "", "read": "0 B", "added": "0 B",
      "seconds": 1.03}],
    [{"item": "db/frame", "status": "ok", "snapshot": "abcdef12", "read": "1.3 MiB",
      "added": "1.3 MiB", "seconds": 0.61},
     {"item": "total", "status": "1 failed", "snapshot": "", "read": "5.2 MiB", "added": "5 B",
      "seconds": 12.5}],
    [{"item": "roles/frame-postgres", "status": "skipped", "snapshot": "", "read": "671 B",
      "added": "958 B", "seconds": 100.0},
     {"item": "total", "status": "ok", "snapshot": "", "read": "1 B", "added": "2 B",
      "seconds": 12.0}],
    [{"item": "x", "status": "ok", "snapshot": "", "read": "0 B", "added": "0 B",
      "seconds": 0.0}],
    [{"item": "x", "status": "ok", "snapshot": "", "read": "0 B", "added": "0 B",
      "seconds": 1234567.25}, {"item": "y", "status": "ok", "snapshot": "", "read": "0 B",
                               "added": "0 B", "seconds": 3}],
]


@pytest.mark.parametrize("rows", ROWS)
def test_text_table_is_laid_out_as_pandas_did(rows: list[dict[str, object]]) -> None:
    assert text_table(rows) == pd.DataFrame(rows).to_string(index=False)


def test_the_program_freezes_its_objects_before_exit(tmp_path: Path) -> None:
    # main() without argv is the `axe` program (about to exit); with argv, a caller such as
    # a test that goes on running, whose objects must stay collectable.
    probe = ("import gc, sys\nfrom axe_pipelines import cli\nsys.argv = ['axe', '--config', "
             f"{str(tmp_path / 'c.yaml')!r}, 'config', 'validate']\n"
             "before = gc.get_freeze_count()\ncli.main(sys.argv[1:])\n"
             "print('ARGV', gc.get_freeze_count() > before)\ncli.main()\n"
             "print('PROGRAM', gc.get_freeze_count() > before)\n")
    (tmp_path / "c.yaml").write_text("axe:\n  servers: {}\n  databases: {}\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120).stdout
    assert "ARGV False" in out and "PROGRAM True" in out


def test_the_backup_table_is_printed_without_pandas() -> None:
    probe = """
import sys
from axe_pipelines import cli
from axe_pipelines.actions.backup import LocalOutcome, RunOutcome
from axe_pipelines.backup import Item, ItemResult
item = Item("pgdump", "frame")
run = RunOutcome("r" * 32, True, "", [], {})
cli._print_local(LocalOutcome("axe", [item], [ItemResult(item, True, "f48d65d5aa", 1363149,
                                                          1363149, 0.82)], 6.15, run))
print("PANDAS", "pandas" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    lines = out.stdout.splitlines()
    assert lines[:3] == ["    item status snapshot    read   added  seconds",
                         "db/frame     ok f48d65d5 1.3 MiB 1.3 MiB     0.82",
                         "   total     ok          1.3 MiB 1.3 MiB     6.15"], out.stderr
    assert "PANDAS False" in lines


def test_the_backup_runner_opens_dagster_in_a_thread(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from axe_pipelines.errors import Unusable
    from axe_pipelines.runner_soon import RunnerSoon

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    runner = RunnerSoon(say=lambda _: None)
    assert runner._thread.name == "axe-dagster"
    assert type(runner.instance).__name__ == "DagsterInstance"  # waits for the thread
    assert (tmp_path / "home" / "dagster.yaml").is_file()
    # An unusable home still fails at once, in the caller's thread, before anything runs.
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "file" / "home"))
    with pytest.raises(Unusable, match="is not usable"):
        RunnerSoon()


def test_a_command_that_needs_no_run_leaves_no_instance_half_made(tmp_path: Path) -> None:
    # `axe backup --cold` with nothing mounted returns at once; the runner's thread must have
    # finished creating the instance's storage by then (RunnerSoon.close): the next command,
    # in the same process here, then opens it without a second creator racing the first.
    config = tmp_path / "customers.yaml"
    config.write_text("axe:\n  servers: {}\n  databases: {}\n  tiers:\n    local:\n"
                      f"      repository: {tmp_path / 'repo'}\n      password: {{env: X}}\n"
                      f"    cold:\n      mount_glob: {tmp_path / 'none-*'}\n"
                      "      accept_plain_folders: true\n      password: {env: Y}\n")
    probe = f"""
import threading
from axe_pipelines import cli
for _ in range(2):
    assert cli.main(["--config", {str(config)!r}, "backup", "--cold"]) == 1
print("ALIVE", [t.name for t in threading.enumerate() if t.name == "axe-dagster"])
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=180, env=dict(os.environ, PYTHONPATH=str(ROOT),
                                               DAGSTER_HOME=str(tmp_path / "home")))
    assert "ALIVE []" in out.stdout, out.stderr[-2000:]
    assert (tmp_path / "home" / "history" / "runs.db").is_file()
