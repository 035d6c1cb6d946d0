"""The pool-slot claim `axe` makes before a run (instance/guard.py, issue 12): a slot freed
while waiting is taken at the next claim, CLAIM_POLL_S later, not at the next once-a-second
look at its holder; the holder is still named once. A real SQLite instance, no servers."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from axe_pipelines.instance import ensure_dagster_home, guard, owner


def test_a_slot_freed_while_waiting_is_taken_at_the_next_claim(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))  # restored afterwards
    home = ensure_dagster_home()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert guard._limited(instance, "restic-test")  # the embedded default: limit 1
        owner.run_dir("holder-run")  # its process (this one) is alive: a live holder
        assert storage.claim_concurrency_slot("restic-test", "holder-run", "step").is_claimed
        waits: list[float] = []

        def fake_wait(seconds: float) -> bool:  # the waiting run's sleeps, without sleeping
            waits.append(seconds)
            if len(waits) == 3:
                storage.free_concurrency_slots_for_run("holder-run")
            return False

        monkeypatch.setattr(guard.interrupt, "wait", fake_wait)
        said: list[str] = []
        waited: list[int] = []  # on_wait: called once, before the first wait (warm backups
        # close then, so no lock of theirs is held while another run has the repository)
        guard.wait_for_slots(instance, "waiting-run", [("restic-test", "step")],
                             timeout_s=60, what="tier A of axe", say=said.append,
                             on_wait=lambda: waited.append(len(waits)))
        assert waited == [0]
        assert waits == [guard.CLAIM_POLL_S] * 3 and guard.CLAIM_POLL_S < guard.POLL_S
        assert len(said) == 1 and said[0].startswith("tier A of axe: waiting for ")
        claimed = storage.get_concurrency_info("restic-test").claimed_slots
        assert [s.run_id for s in claimed] == ["waiting-run"]
        owner.release("holder-run")
