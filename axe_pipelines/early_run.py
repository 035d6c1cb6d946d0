"""A tier-A run's items started as soon as the run holds its pool slot (issue 12).

Between claiming its pool slot and running the op's body, Dagster creates the run (its job
snapshot, one planned event per asset and check into a new SQLite shard) and starts its step:
about 0.6 s of Python on the night's critical path. `axe backup --local` claims the slot for
its run id first (instance/guard.py), so from then on no other run of that pool (tier A, the
weekly prune and check of the repository) starts; the run's items start right then, as
`run_tier_a` in a thread of its own (progress.Streamed), and the op, once Dagster reaches its
body, takes that same Streamed (`take`) and records each item as it finishes, as before.
Meanwhile tiers B and C treat the set as being written: its run folder's owner is alive
(checks/tier_b.py `tier_a_running`). If the run ends without its step taking them (it failed
before the op ran, or is being stopped), `abandon` lets no further item start and waits for
those running, before the run's slot is freed and its folder removed (instance/guard.py).
Only the CLI's runs start early; a daemon's run starts its items in its op. Plain: no Dagster
here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from axe_pipelines.backup import Item, run_tier_a
from axe_pipelines.config import Customer
from axe_pipelines.progress import Reporter, Streamed


@dataclass(frozen=True)
class _Early:
    streamed: Streamed
    todo: tuple[Item, ...]
    at: datetime
    cancel: threading.Event


_early: dict[str, _Early] = {}
_abandoned: set[str] = set()  # runs whose early start was abandoned: their step takes none
_lock = threading.Lock()
_LOG = logging.getLogger(__name__)


def start(run_id: str, customer_name: str, customer: Customer, todo: Sequence[Item], *,
          at: datetime, reporter: Reporter) -> None:
    """Given the run id (its pool slot claimed), the items its step will back up and its
    logical time, start backing them up now, progress to `reporter`."""
    cancel = threading.Event()
    streamed = Streamed(lambda report: run_tier_a(
        customer_name, customer, at=at, run_id=run_id, items=todo, reporter=report,
        cancel=cancel), reporter)
    with _lock:
        _early[run_id] = _Early(streamed, tuple(todo), at, cancel)


class EarlyRunError(RuntimeError):
    """The step found an early start it cannot take: made for other items or another time,
    or already abandoned (its run is being stopped). Its items are never run a second
    time."""


def take(run_id: str, todo: Sequence[Item], at: datetime) -> Streamed | None:
    """Given the run id, the items its step backs up and its logical time, return the items'
    run started early for exactly those, or None when none was started for this run (the
    step starts its own). Raise EarlyRunError when one was started for other items or
    another time (it then starts no further item; the run's end waits for it) or was
    abandoned."""
    with _lock:
        if run_id in _abandoned:
            raise EarlyRunError(f"run {run_id[:8]}: its items were started before the run "
                                "and have been stopped; nothing more is backed up")
        early = _early.get(run_id)
        if early is None:
            return None
        if early.todo != tuple(todo) or early.at != at:
            early.cancel.set()
            raise EarlyRunError(
                f"run {run_id[:8]}: its items were started for {len(early.todo)} item(s) at "
                f"{early.at.isoformat()}, the step backs up {len(todo)} at {at.isoformat()}; "
                "no item is backed up twice")
        del _early[run_id]
    return early.streamed


def abandon(run_id: str) -> None:
    """Given a run id whose run has ended (or is being stopped), let no item of an early
    start its step never took begin, and wait for those already running: called before
    the run's pool slot is freed and its folder removed, so nothing else starts on the
    repository while they write."""
    with _lock:
        early = _early.pop(run_id, None)
        if early is not None:
            _abandoned.add(run_id)
    if early is None:
        return
    early.cancel.set()
    try:
        early.streamed.value  # noqa: B018 - waits for the thread
    except Exception:  # run_tier_a never raises for an item: this is a bug, said loudly
        _LOG.exception("tier A items started early for run %s ended with an error", run_id)
