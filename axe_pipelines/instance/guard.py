"""How `axe` runs a job itself (Dagster layer): recover what a dead run left, wait a bounded
time for the job's pool slots, then run it in a worker thread that Ctrl-C can stop.

Why not let the executor wait for the slot: Dagster 1.13's in-process executor polls a held
slot without sleeping (`interval_to_next_pending_claim_check` is never above 0), so a second
`axe backup` spun at ~93% CPU for as long as the slot was held, and it took SIGINT/SIGTERM
over (acting on them only between steps), so it could not be stopped either. Here the slot is
claimed for the run's own id and step before the run starts (a free slot at once; one freed
while waiting within CLAIM_POLL_S), the holder looked up and named once a second, and given
up after `wait_timeout_s`; the executor then finds it claimed. The
run goes on in a thread of its own, so the main thread keeps interrupt.py's handlers.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dagster as dg

from axe_pipelines import interrupt
from axe_pipelines.errors import Unusable
from axe_pipelines.instance import owner
from axe_pipelines.instance.recovery import HeldSlot, held_slots, process_tags, recover

R = TypeVar("R")
Say = Callable[[str], None]
POLL_S = 1.0  # how often the holder is looked up (and recovered when its process is gone)
CLAIM_POLL_S = 0.2  # how often a held slot is tried again: one freed is taken this soon
DEFAULT_WAIT_S = 3600.0  # tiers.local.wait_timeout_s when a tier has none
STOP_S = 20.0  # after a stop signal, how long the run may take to record its end


class SlotTimeout(Unusable):
    """The job's pool slot stayed held by a live run for all of `wait_timeout_s`."""


# What `axe` prints while a run goes is the run's stdout/stderr, on the operator's terminal.
# Dagster's capture of it (the compute logs) starts two `tail -F` and two Python watcher
# processes per run and relays the terminal through them; the CLI's runs leave it out.
# Runs the daemon launches keep the instance's compute logs.
_NO_CAPTURE = {"compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager",
                                "class": "NoOpComputeLogManager"}}


def cli_instance(home: Path) -> dg.DagsterInstance:
    """Given the Dagster home, return its instance as configured there (storage, run
    monitoring, concurrency), for the runs this process executes: without compute-log
    capture (structured events, the UI's run log, are stored as always)."""
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), overrides=_NO_CAPTURE))


def job_slots(job: dg.JobDefinition) -> list[tuple[str, str]]:
    """Given a job, return (pool, step key) of each of its ops that runs in a pool."""
    return [(node.definition.pool, node.name) for node in job.graph.nodes
            if getattr(node.definition, "pool", None)]


def _limited(instance: dg.DagsterInstance, pool: str) -> bool:
    """Whether the executor would wait for `pool` (a limit set, or the instance's default),
    initialising it to the default as the executor does."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    config = storage.get_pool_config()
    if getattr(config.pool_granularity, "value", None) == "run":
        return False  # the run queue enforces pools; the executor does not wait
    limits = {p.name: p for p in storage.get_pool_limits()}
    info, default = limits.get(pool), config.default_pool_limit
    if (info is None and default is not None) or (
            info is not None and info.from_default and info.limit != default):
        storage.initialize_concurrency_limit_to_default(pool)
        limits = {p.name: p for p in storage.get_pool_limits()}
    return pool in limits


def _holder(instance: dg.DagsterInstance, pool: str, run_id: str) -> HeldSlot | None:
    held = [s for s in held_slots(instance) if s.pool == pool and s.run_id != run_id]
    return next((s for s in held if s.claimed), held[0] if held else None)


def wait_for_slots(instance: dg.DagsterInstance, run_id: str, slots: list[tuple[str, str]],
                   *, timeout_s: float, what: str, say: Say,
                   on_wait: Callable[[], None] | None = None) -> None:
    """Given a run id (not started yet) and its (pool, step) slots, claim each for it, waiting
    while a live run holds one: one `waiting for run … (pid …, started …)` line per holder,
    a stale holder recovered at once; `on_wait` is called once, before the first wait. Raise
    SlotTimeout after `timeout_s`, Interrupted on a stop signal (its queued claims withdrawn
    either way)."""
    storage = instance.event_log_storage
    todo = [s for s in slots if _limited(instance, s[0])]
    told: set[str] = set()
    deadline = time.monotonic() + timeout_s
    look_at, who = 0.0, "another run"
    while todo:
        todo = [(p, s) for p, s in todo if not storage.claim_concurrency_slot(p, run_id, s)
                .is_claimed]
        if not todo:
            return
        if on_wait is not None:
            on_wait()
            on_wait = None
        if time.monotonic() >= look_at:  # the holder: once a second, not every claim
            look_at = time.monotonic() + POLL_S
            held = _holder(instance, todo[0][0], run_id)
            if held is not None and held.stale:
                for line in recover(instance):
                    say(line)
                look_at = 0.0
                continue
            who = held.holder.describe() if held and held.holder else "another run"
            if who not in told:
                told.add(who)
                say(f"{what}: waiting for {who}, which holds pool {todo[0][0]} (for up to "
                    f"{timeout_s:g} s: tiers.local.wait_timeout_s)")
        if time.monotonic() > deadline or interrupt.wait(CLAIM_POLL_S):
            storage.free_concurrency_slots_for_run(run_id)
            interrupt.raise_if_requested()
            raise SlotTimeout(f"{what}: {who} still holds pool {todo[0][0]} after "
                              f"{timeout_s:g} s (tiers.local.wait_timeout_s); nothing was "
                              f"started; if that run is hung, stop its process (the next run "
                              f"then frees its slot) or raise the bound")


def _in_thread(instance: dg.DagsterInstance, run_id: str, call: Callable[[], R]) -> R:
    """Run `call` in a worker thread; on a stop signal give it STOP_S to end, then mark the
    run failed if it has not ended and raise Interrupted."""
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # handed to the main thread as it is
            box["error"] = exc

    worker = threading.Thread(target=work, daemon=True, name=f"axe-run-{run_id[:8]}")
    worker.start()
    stop_by: float | None = None
    while worker.is_alive():
        worker.join(0.2)
        if interrupt.requested() and stop_by is None:
            stop_by = time.monotonic() + STOP_S
        if stop_by is not None and time.monotonic() > stop_by:
            run = instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                instance.report_run_failed(run, message="axe: interrupted; the run did not "
                                           f"stop within {STOP_S:g} s and was abandoned")
            break
    interrupt.raise_if_requested()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def run_guarded(instance: dg.DagsterInstance, slots: list[tuple[str, str]],
                execute: Callable[[str, dict[str, str]], R], *, what: str,
                wait_timeout_s: float, say: Say, run_id: str | None = None,
                on_wait: Callable[[], None] | None = None,
                on_claimed: Callable[[str], Callable[[], None]] | None = None) -> R:
    """Given a job's (pool, step) slots (job_slots) and `execute(run_id, tags)` that runs it
    with that id (`run_id`, else a new one) and those tags (the process's host and pid among
    them), recover dead runs' leftovers (one line each), wait for the slots, run it and
    return its result. Raise
    SlotTimeout (exit 3) when a live run kept a slot too long, Interrupted on SIGINT/SIGTERM.
    `on_wait` is called if the run has to wait for a slot, `on_claimed(run_id)` once the
    slots are the run's, before Dagster creates the run (early_run.py); what it returns is
    called when the run has ended, before its slots are freed and its folder removed."""
    interrupt.raise_if_requested()
    for line in recover(instance):
        say(line)
    owner.sweep()
    run_id = run_id or str(uuid.uuid4())
    owner.run_dir(run_id)
    try:
        wait_for_slots(instance, run_id, slots, timeout_s=wait_timeout_s, what=what,
                       say=say, on_wait=on_wait)
        ended = on_claimed(run_id) if on_claimed is not None else None
        try:
            return _in_thread(instance, run_id, lambda: execute(run_id, process_tags()))
        finally:
            if ended is not None:
                ended()  # what started at the claim has ended before the slot is freed
    finally:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        owner.release(run_id)
