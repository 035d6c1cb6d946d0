"""A tier-A run's items started once the run holds its pool slot (early_run.py, issue 12):
the op takes exactly the early start made for its items and time, anything else is left to
end without starting more; tiers B and C see a run `axe` is still creating as in progress
while its run folder's owner lives. A real SQLite instance, no servers."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from axe_pipelines import early_run
from axe_pipelines.backup import Item
from axe_pipelines.checks.tier_b import tier_a_running
from axe_pipelines.instance import ensure_dagster_home, owner
from axe_pipelines.progress import NullReporter

AT = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
ITEMS = [Item("pgdump", "frame", "pg"), Item("pgdump", "hive", "pg")]


@pytest.fixture
def fake_tier_a(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """run_tier_a replaced: it records its call and waits until released or cancelled."""
    seen: dict[str, object] = {"release": threading.Event()}

    def fake(customer_name, customer, *, at, run_id, items, reporter, cancel):
        seen.update(run_id=run_id, items=list(items), at=at, cancel=cancel)
        for _ in range(1000):  # at most 10 s: a failing test must not hang the session
            if cancel.is_set() or seen["release"].is_set():  # type: ignore[union-attr]
                break
            cancel.wait(0.01)
        return "the run's result"

    monkeypatch.setattr(early_run, "run_tier_a", fake)
    return seen


def test_the_step_takes_the_early_start_made_for_its_items(fake_tier_a):
    early_run.start("run-1", "axe", object(), ITEMS, at=AT, reporter=NullReporter())
    streamed = early_run.take("run-1", ITEMS, AT)
    assert streamed is not None and fake_tier_a["run_id"] == "run-1"
    fake_tier_a["release"].set()  # type: ignore[union-attr]
    assert streamed.value == "the run's result"
    assert early_run.take("run-1", ITEMS, AT) is None  # taken once
    assert not fake_tier_a["cancel"].is_set()  # type: ignore[union-attr]


@pytest.mark.parametrize("todo, at", [(ITEMS[:1], AT), (ITEMS, AT.replace(hour=4))])
def test_another_selection_or_time_is_an_error_and_starts_nothing_more(fake_tier_a, todo, at):
    run_id = f"run-2-{len(todo)}-{at.hour}"
    early_run.start(run_id, "axe", object(), ITEMS, at=AT, reporter=NullReporter())
    with pytest.raises(early_run.EarlyRunError, match="no item is backed up twice"):
        early_run.take(run_id, todo, at)
    assert fake_tier_a["cancel"].is_set()  # type: ignore[union-attr]
    early_run.abandon(run_id)  # the run's end waits for what was started


def test_a_run_that_ended_without_its_step_abandons_its_early_start(fake_tier_a):
    early_run.start("run-3", "axe", object(), ITEMS, at=AT, reporter=NullReporter())
    early_run.abandon("run-3")  # waits for the work: it ends once cancelled
    assert fake_tier_a["cancel"].is_set()  # type: ignore[union-attr]
    early_run.abandon("run-3")  # nothing left: a no-op
    # A step reaching its body after that (a stop signal's grace ran out) starts nothing.
    with pytest.raises(early_run.EarlyRunError, match="have been stopped"):
        early_run.take("run-3", ITEMS, AT)
    assert early_run.take("run-never-started", ITEMS, AT) is None  # a daemon's run


def test_a_run_not_recorded_yet_is_in_progress_while_its_folder_owner_lives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = ensure_dagster_home()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        running = tier_a_running(instance)
        owner.run_dir("starting-run")  # this process: alive
        assert running("starting-run")
        dead = owner.run_dir("killed-run")
        (dead / owner.OWNER_FILE).write_text(json.dumps(
            {"host": owner.ProcessRecord.current().host, "pid": "999999999", "start": ""}))
        assert not running("killed-run")  # its process is provably gone
        assert not running("made-elsewhere")  # no folder: a set made by another instance
        assert not running("not/a run id")
        assert not tier_a_running(instance, own_run="starting-run")("starting-run")
