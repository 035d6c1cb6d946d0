"""actions/selection.py, actions/restore.py and actions/restore_items.py without servers:
target names, table names, undo commands, where a folder goes, the step clock."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from axe_pipelines.actions.restore_items import Steps, folder_destination, undo_command
from axe_pipelines.actions.selection import RestoreError, resolve_target, valid_targets
from axe_pipelines.actions.table_lookup import split_qualified, table_matches
from axe_pipelines.config import parse_config
from axe_pipelines.restic import Snapshot


def _customer(tmp_path: Path):
    return parse_config({"axe": {
        "tiers": {"local": {"repository": "/nonexistent/repo",
                            "password": {"env": "AXE_UNIT_PW"}}},
        "servers": {"frame-postgres": {}},
        "databases": {"frame": {"server": "frame-postgres", "aliases": ["frame-db"]},
                      "ledger": {"server": "frame-postgres", "dbname": "ledger_prod"}},
        "folders": {"files": {"path": str(tmp_path / "files")}}}}).customer("axe")


def test_resolve_target_takes_the_runbook_names(tmp_path):
    customer = _customer(tmp_path)
    # frame-postgres names the server holding frame and ledger: both (issue 10).
    for word, want in [("frame", ("database", "frame")),
                       ("frame-postgres", ("server", "frame-postgres")),
                       ("frame-db", ("database", "frame")), ("ledger_prod", ("database", "ledger")),
                       ("files", ("folder", "files"))]:
        got = resolve_target("axe", customer, word)
        assert (got.kind, got.name) == want
    assert valid_targets(customer) == ["files", "frame", "frame-db", "frame-postgres", "ledger",
                                       "ledger-postgres"]
    with pytest.raises(RestoreError, match="unknown target 'hive' for customer axe "
                       r"\(valid: files, frame,"):
        resolve_target("axe", customer, "hive")


@pytest.mark.parametrize("text, want", [
    ("journal_line", ("", "journal_line")),
    ("public.journal_line", ("public", "journal_line")),
    ('"My Schema"."T.x"', ("My Schema", "T.x")),
    ('public."We""ird"', ("public", 'We"ird')),
])
def test_split_qualified(text, want):
    assert split_qualified(text) == want


def test_table_matches():
    assert table_matches("journal_line", "public", "journal_line")
    assert table_matches("axec.employees", "axec", "employees")
    assert not table_matches("axec.journal_line", "public", "journal_line")


def test_undo_command_is_one_shell_line():
    line = undo_command("axe", "ledger", "20260520030042", Path("/etc/axe/my customers.yaml"))
    assert shlex.split(line) == ["axe", "--config", "/etc/axe/my customers.yaml", "restore",
                                 "--customer", "axe", "--target", "ledger", "--undo",
                                 "20260520030042"]
    assert undo_command("axe", "ledger", "1") == "axe restore --customer axe --target ledger " \
                                                 "--undo 1"


def _snap(paths: list[str]) -> Snapshot:
    return Snapshot.from_json({"id": "ab" * 32, "short_id": "abababab",
                               "time": "2026-05-20T03:00:00+09:00", "paths": paths,
                               "tags": [], "hostname": "h"})


def test_folder_destination(tmp_path):
    customer = _customer(tmp_path)
    files = tmp_path / "files"
    original, target = folder_destination(customer, "files", _snap(["/old/files"]),
                                          in_place=False, dest=None)
    assert original == Path("/old/files")
    assert target.parent == tmp_path and target.name.startswith("files.restored-")
    assert folder_destination(customer, "files", _snap([]), in_place=True, dest=None) == (
        files, files)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(RestoreError, match="exists and is not empty"):
        folder_destination(customer, "files", _snap([]), in_place=False, dest=str(busy))
    with pytest.raises(RestoreError, match="names no path and no folder gone is configured"):
        folder_destination(customer, "gone", _snap([]), in_place=False, dest=None)


def test_steps_say_and_record():
    said: list[str] = []
    record: list = []
    steps = Steps(said.append, record)
    with pytest.raises(ValueError), steps.step("fetching"):
        raise ValueError
    with steps.step("checking"):
        pass
    assert said == ["fetching …", "checking …"]
    assert [s.name for s in record] == ["fetching", "checking"]
    with Steps(said.append).step("unrecorded"):
        pass


@pytest.mark.parametrize(("args", "warm"), [
    (["--target", "ledger"], True),
    (["--target", "ledger", "--table", "public.note"], False),  # no dump-time counts read
    (["--table", "public.note"], True),  # which database holds it: the history may be read
    (["--target", "ledger", "--dry-run"], False),
])
def test_restore_opens_the_history_early_only_when_it_will_be_read(monkeypatch, tmp_path, args,
                                                                   warm):
    import axe_pipelines.actions.restore as restore_action
    import axe_pipelines.resources as resources
    from axe_pipelines import cli

    seen: list[bool] = []

    class History:
        def __init__(self, *, warm: bool = False):
            seen.append(warm)

    monkeypatch.setattr(resources, "DagsterDumpHistory", History)
    monkeypatch.setattr(restore_action, "run_restore", lambda *a, **k: (_ for _ in ()).throw(
        restore_action.RestoreError("stop here")))
    config = tmp_path / "customers.yaml"
    config.write_text("axe:\n  servers: {}\n  databases: {}\n")
    assert cli.main(["--config", str(config), "restore", "--customer", "axe", *args]) == 1
    assert seen == [warm]
