"""Runs left behind by a process that died, and the pool slots they hold (Dagster layer).

A `kill -9` (OOM, power loss) of `axe backup` leaves its run STARTED and its op's pool slot
claimed; Dagster frees neither (run monitoring cannot tell that a run worker of the default
launcher died), so every later run of that repository's pool would wait for ever. Before a
run starts, `recover` marks every run whose process is provably gone (owner.py: same host,
pid gone or reused) failed with the reason, frees its slots, and frees slots held by runs that
have ended or never got a record; `holders` and `held_slots` tell `doctor` and `status` what
is in progress and what holds a slot now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from axe_pipelines.instance.owner import ProcessRecord, owner_of
from axe_pipelines.names import HOST_TAG, PID_START_TAG, PID_TAG

_ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
           dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
           dg.DagsterRunStatus.CANCELING]
_ENDED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
          dg.DagsterRunStatus.CANCELED}


def process_tags() -> dict[str, str]:
    """Return the run tags naming this process (host, pid, start token) for a run it runs."""
    record = ProcessRecord.current()
    tags = {HOST_TAG: record.host, PID_TAG: str(record.pid)}
    if record.start:
        tags[PID_START_TAG] = record.start
    return tags


@dataclass(frozen=True)
class RunHolder:
    """A run that is in progress (or claims to be): who runs it and since when. `owner` is
    None for a run no `axe` process recorded (a daemon's run)."""

    run_id: str
    status: str
    job: str
    started: datetime | None
    owner: ProcessRecord | None

    @property
    def gone(self) -> bool:
        """True when the process that ran it is provably gone."""
        return self.owner is not None and self.owner.gone

    def process_words(self) -> str:
        """Return `pid 4242, started 03:00` (the host too when it is another one)."""
        parts = []
        if self.owner is not None:
            here = ProcessRecord.current().host == self.owner.host
            parts.append(f"pid {self.owner.pid}" + ("" if here else f" on {self.owner.host}"))
        if self.started is not None:
            parts.append(f"started {self.started.astimezone():%H:%M}")
        return ", ".join(parts)

    def describe(self) -> str:
        """Return `run 50d09f67 (pid 4242, started 03:00)`."""
        words = self.process_words()
        return f"run {self.run_id[:8]}" + (f" ({words})" if words else "")


def _holder(record: dg.RunRecord) -> RunHolder:
    run = record.dagster_run
    tags = run.tags
    owner = ProcessRecord.from_dict({"host": tags.get(HOST_TAG), "pid": tags.get(PID_TAG),
                                     "start": tags.get(PID_START_TAG, "")})
    when = record.start_time or record.create_timestamp.timestamp()
    return RunHolder(run.run_id, run.status.value, run.job_name,
                     datetime.fromtimestamp(when, UTC), owner)


def holders(instance: dg.DagsterInstance) -> list[RunHolder]:
    """Given the instance, return every run queued or in progress, oldest first."""
    records = instance.get_run_records(dg.RunsFilter(statuses=_ACTIVE), limit=500)
    return sorted((_holder(r) for r in records), key=lambda h: h.started or datetime.min)


@dataclass(frozen=True)
class HeldSlot:
    """A pool slot claimed (or queued for) by a step of a run. `holder` is None when the run
    has no record (axe claims before the run starts); `ended` when the run has finished."""

    pool: str
    run_id: str
    step_key: str
    claimed: bool
    holder: RunHolder | None
    ended: bool = False

    @property
    def stale(self) -> bool:
        """True when nothing can be using the slot: its run ended, or its process is gone."""
        if self.ended:
            return True
        if self.holder is not None:
            return self.holder.gone
        owner = owner_of(self.run_id)
        return owner is None or owner.gone

    def describe(self) -> str:
        """Return `pool restic-3c19…: run 50d09f67 (pid 4242, started 03:00)`."""
        who = self.holder.describe() if self.holder else f"run {self.run_id[:8]} (not started)"
        state = "holds" if self.claimed else "waits for"
        return f"{who} {state} a slot of pool {self.pool}" + (" (stale)" if self.stale else "")


def held_slots(instance: dg.DagsterInstance) -> list[HeldSlot]:
    """Given the instance, return every claimed slot and every queued claim, by pool."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    infos = storage.get_concurrency_infos(sorted(storage.get_concurrency_keys()))
    claims: dict[tuple[str, str, str], bool] = {}
    for pool, info in infos.items():
        for s in info.claimed_slots:
            claims[(pool, s.run_id, s.step_key)] = True
        for p in info.pending_steps:
            claims.setdefault((pool, p.run_id, p.step_key), False)
    runs = {r.dagster_run.run_id: r for r in instance.get_run_records(
        dg.RunsFilter(run_ids=sorted({k[1] for k in claims})))} if claims else {}
    out = []
    for (pool, run_id, step), claimed in sorted(claims.items()):
        record = runs.get(run_id)
        out.append(HeldSlot(pool, run_id, step, claimed, _holder(record) if record else None,
                            ended=record is not None and record.dagster_run.status in _ENDED))
    return out


def recover(instance: dg.DagsterInstance) -> list[str]:
    """Given the instance, mark every run whose process is provably gone failed (saying so in
    its run log) and free its slots; free the slots of runs that ended or whose claiming
    process is gone. Return one line per run or slot set free, for the operator."""
    lines = []
    for holder in holders(instance):
        if not holder.gone:
            continue
        run = instance.get_run_by_id(holder.run_id)
        if run is None or run.status not in _ACTIVE:
            continue
        instance.report_run_failed(run, message=(
            f"axe: the process that ran this run ({holder.process_words()}) is gone (killed "
            "or crashed); marked failed before the next run, its pool slots freed"))
        instance.event_log_storage.free_concurrency_slots_for_run(holder.run_id)
        lines.append(f"{holder.describe()} was left {holder.status} by a process that is gone; "
                     "marked it failed and freed its pool slot")
    for slot in held_slots(instance):
        if slot.stale:
            instance.event_log_storage.free_concurrency_slots_for_run(slot.run_id)
            if slot.holder is None or slot.ended:
                lines.append(f"freed a slot of pool {slot.pool} left by "
                             f"{'ended ' if slot.ended else ''}run {slot.run_id[:8]}")
    return lines


def findings(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """Given the instance, return what `axe doctor` says about runs and pool slots as
    (status, text): FAIL for a run left in progress by a dead process or a slot nothing can
    be using (the next `axe backup` clears both), ok for live holders, and an ok line when
    no slot is held at all."""
    found: list[tuple[str, str]] = []
    for holder in holders(instance):
        if holder.gone:
            found.append(("FAIL", f"{holder.describe()} is {holder.status} but its process "
                                  "is gone (killed?); the next `axe backup` marks it failed "
                                  "and frees its pool slots"))
    for slot in held_slots(instance):
        if slot.stale:
            found.append(("FAIL", f"{slot.describe()}: the next `axe backup` frees it"))
        else:
            found.append(("ok", slot.describe()))
    if not found:
        found.append(("ok", "no pool slot is held and no run was left behind by a dead "
                            "process"))
    return found


def stuck(instance: dg.DagsterInstance) -> set[str]:
    """Given the instance, return the ids of runs in progress whose process is gone."""
    return {h.run_id for h in holders(instance) if h.gone}
