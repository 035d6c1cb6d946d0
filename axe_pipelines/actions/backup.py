"""What `axe init` and `axe backup --local/--ring/--cold` do.

Every backup the CLI starts is a Dagster run, so the asset pages show it like a scheduled
one. This module never imports Dagster: the caller hands in a `Runner` (runs.InProcessRunner
for the CLI) that executes a tier's assets and answers with a plain `RunOutcome`. Each
action yields one outcome per customer (and peer or volume) as soon as it is known, so the
caller can print while the next one runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from axe_pipelines import interrupt, read_ahead
from axe_pipelines.backup import Item, ItemResult, local_restic, plan_tier_a
from axe_pipelines.cold import Volume, find_volumes
from axe_pipelines.config import Customer, Site, tier_timezone
from axe_pipelines.copying import tier_a_tags
from axe_pipelines.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE, Unusable
from axe_pipelines.instance import ensure_dagster_home
from axe_pipelines.peer import RingError, link, ring_settings
from axe_pipelines.physical_item import nightly_items
from axe_pipelines.progress import Reporter, human_bytes
from axe_pipelines.restic import Restic, ResticError, ResticTimeout
from axe_pipelines.restic.warm import WarmPool, unregister
from axe_pipelines.ring import ring_peers
from axe_pipelines.warm_start import start_warm

Say = Callable[[str], None]
OPEN_BOUND_S = 600.0  # how long opening tier A may take when its Restic has no call bound


@dataclass(frozen=True)
class CheckOutcome:
    """One asset check evaluated in a run. `warn_only`: its severity is WARN, so failing it
    does not fail the command."""

    asset: str
    name: str
    passed: bool
    warn_only: bool
    description: str = ""

    @property
    def blocking(self) -> bool:
        """True when the check failed with ERROR severity."""
        return not self.passed and not self.warn_only

    @property
    def line(self) -> str:
        """Return the operator's line: `check <asset>:<name>: ok|WARN|FAILED (why)`."""
        mark = "ok" if self.passed else ("WARN" if self.warn_only else "FAILED")
        why = f" ({self.description})" if not self.passed and self.description else ""
        return f"check {self.asset}:{self.name}: {mark}{why}"


@dataclass(frozen=True)
class RunOutcome:
    """How one Dagster run ended: success, the last failed step's message, its checks, and
    the metadata of its first materialization (empty when there was none)."""

    run_id: str
    success: bool
    failure: str = ""
    checks: list[CheckOutcome] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    retryable: bool = False  # failed, and its failure says trying again can help (tier B)

    @property
    def checks_ok(self) -> bool:
        """True when no check failed with ERROR severity."""
        return not any(c.blocking for c in self.checks)


class CollectingReporter(Reporter, Protocol):
    """A progress reporter that keeps every finished item's result (progress.py)."""

    results: list[ItemResult]


class Runner(Protocol):
    """Runs one tier's assets as a recorded Dagster run (runs.InProcessRunner)."""

    def tier_a(self, site: Site, customer_name: str, *, reporter: CollectingReporter,
               skip_restore_check: bool, run_id: str | None = None,
               at: datetime | None = None,
               on_wait: Callable[[], None] | None = None) -> RunOutcome:
        """Given a customer, back its tier A up now, progress to `reporter` (as run `run_id`
        at logical time `at` when given; `on_wait` called if it must wait for its pool
        slot); return how the run ended."""

    def tier_b(self, site: Site, customer_name: str, peer: str, *,
               retry_left: bool = False) -> RunOutcome:
        """Given a customer and a peer, push the latest set there now; return how it ended.
        With `retry_left`, a retryable failure is not alerted (another attempt follows)."""

    def tier_c(self, site: Site, customer_name: str, volume: Volume) -> RunOutcome:
        """Given a customer and a mounted volume, sync the latest set onto it now; return
        how it ended."""


def init(site: Site, names: list[str],
         chunker_from: str | None = None) -> Iterator[tuple[str, str]]:
    """Given the customers to back up (and `--chunker-from`), make sure the Dagster home where
    runs are recorded is usable, then create each tier-A repository unless it exists, with
    the chunker parameters of an existing ring or cold copy (chunker.py); yield (what, state)
    as each is done. Raise Unusable (home not writable, --chunker-from unusable) or the mapped
    ResticError."""
    from axe_pipelines.chunker import init_tier_a

    yield f"Dagster home {ensure_dagster_home()}", "ready"
    for name in names:
        yield init_tier_a(site, name, chunker_from)


@dataclass
class LocalOutcome:
    """Tier A of one customer: the plan, the items' results in plan order, the run."""

    customer: str
    items: list[Item] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    wall_s: float = 0.0
    run: RunOutcome | None = None
    unusable: str | None = None  # the repository could not be opened: nothing ran

    @property
    def unfinished(self) -> bool:
        """True when the run ended without a result for every planned item."""
        return len(self.results) < len(self.items)

    @property
    def errors(self) -> list[str]:
        """Return one `axe:` line per failed item, and one when the run died part way."""
        if self.unusable:
            return [f"tier A of {self.customer}: {self.unusable}"]
        lines = [f"{self.customer} {r.item.label}: {r.error}" for r in self.results
                 if not r.ok and not r.skipped]
        if self.run is not None and self.unfinished and all(r.ok for r in self.results):
            lines.append(f"tier A of {self.customer}: run {self.run.run_id[:8]} failed before "
                         "finishing; see `dagster` run logs")
        return lines

    @property
    def exit_code(self) -> int:
        """Return 3 (repository unusable), 1 (an item or ERROR check failed) or 0."""
        if self.unusable:
            return EXIT_UNUSABLE
        assert self.run is not None
        if not self.run.success or self.unfinished or not self.run.checks_ok:
            return EXIT_FAILED
        return EXIT_OK


def _probe(restic: Restic, name: str, say: Say) -> None:
    """One `restic cat config`, then the stale locks of a killed run (its restic on this host
    is gone) cleared, only when the repository's `locks/` folder holds any."""
    restic.probe()
    for lock in restic.clear_stale_locks() if restic.may_hold_locks() else ():
        say(f"tier A of {name}: removed a stale lock of pid {lock.pid} (gone) from "
            f"{restic.repo.location}")


def _open(restic: Restic, name: str, customer: Customer, items: list[Item], *, run_id: str,
          at: datetime, say: Say) -> WarmPool | None:
    """Open tier A's repository for the run: return its warm backups (warm_start.py), or None
    when its backups start cold. Raise the mapped ResticError (missing, wrong password,
    locked, too slow) before anything is stored.

    Every restic process that opens the repository spends about half a second deriving its
    key, so the first warm backup is the probe: its gate starting proves the repository
    opened with its password and a backup's lock was taken. Only when that backup ends
    first (or none could start, or some lock file is there: a prune or check may be running,
    or a killed run's lock is to be cleared) is `restic cat config` run, whose mapped error
    says why."""
    def warm() -> WarmPool | None:
        return None if restic.may_hold_locks() else start_warm(
            restic, name, customer, items, run_id=run_id, at=at)

    pool = warm()
    if pool is not None:
        bound = restic.call_timeout or OPEN_BOUND_S
        opened = pool.wait_open(bound)
        if opened:
            return pool
        unregister(run_id)
        pool.close(now=True)
        interrupt.raise_if_requested()
        if opened is None:
            raise ResticTimeout(f"{restic.repo.label}: opening the repository did not finish "
                                f"within {bound:.0f} s; nothing was started (a password "
                                "command waiting for input, or a slow or vanished disk)")
    _probe(restic, name, say)
    # The warm probe ended, yet the repository opens: its backups start cold.
    return None if pool is not None else warm()


def backup_local(site: Site, names: list[str], runner: Runner, *,
                 reporter_for: Callable[[list[Item]], CollectingReporter],
                 skip_restore_check: bool = False, say: Say) -> Iterator[LocalOutcome]:
    """Given the customers, back each one's tier A up now (its repository opened first, so a
    missing, locked or wrongly keyed one fails with one line before anything starts: _open)
    and yield its LocalOutcome. `reporter_for(items)` makes the progress reporter; `say` gets
    the line announcing each run."""
    for name in names:
        customer = site.customers[name]
        # What the nightly job backs up: a base backup on its own schedule is not its item.
        items = nightly_items(customer, plan_tier_a(customer))
        # The run's id and logical time are chosen here, so its first backups can open the
        # repository (key derivation) while Dagster gets ready (warm_start.py).
        run_id = str(uuid.uuid4())
        at = datetime.now(ZoneInfo(tier_timezone(customer))).replace(microsecond=0)
        try:
            restic = local_restic(name, customer)
            pool = _open(restic, name, customer, items, run_id=run_id, at=at, say=say)
        except ResticError as exc:
            yield LocalOutcome(name, unusable=str(exc))
            continue
        reporter = reporter_for(items)
        assert customer.tiers is not None
        say(f"tier A of {name}: {len(items)} item(s) into {customer.tiers.local.repository}")
        started = time.monotonic()
        try:
            # Waiting for the pool (another run on this repository): no lock held meanwhile.
            run = runner.tier_a(site, name, reporter=reporter,
                                skip_restore_check=skip_restore_check, run_id=run_id, at=at,
                                on_wait=pool.close if pool is not None else None)
        except Unusable as exc:  # the repository's pool stayed held by a live run
            yield LocalOutcome(name, unusable=str(exc).removeprefix(f"tier A of {name}: "))
            continue
        finally:
            if (left := unregister(run_id)) is not None:
                left.close()  # idempotent: the run closes its pool when it ends
        wall = time.monotonic() - started
        done = {r.item: r for r in reporter.results}
        yield LocalOutcome(name, items, [done[i] for i in items if i in done], wall, run)


@dataclass
class CopyOutcome:
    """One copy of tier B (to a peer) or C (to a volume): its run, or why none was made."""

    tier: str  # "B" or "C"
    customer: str
    target: str = ""  # the peer or the volume
    run: RunOutcome | None = None
    error: str | None = None
    error_exit: int = EXIT_FAILED
    summary: str = ""  # what was copied, from the run's metadata

    @property
    def shown_checks(self) -> list[CheckOutcome]:
        """Return the checks to print after a successful run: all of tier B's, tier C's that
        did not pass."""
        checks = self.run.checks if self.run and self.run.success else []
        return checks if self.tier == "B" else [c for c in checks if not c.passed]

    @property
    def errors(self) -> list[str]:
        """Return the `axe:` line of a copy that was not made or whose run failed."""
        if self.error:
            return [self.error]
        return [self.run.failure] if self.run and not self.run.success else []

    @property
    def exit_code(self) -> int:
        """Return `error_exit` (not configured: 2), 1 (run or ERROR check failed) or 0."""
        if self.error:
            return self.error_exit
        assert self.run is not None
        return EXIT_OK if self.run.success and self.run.checks_ok else EXIT_FAILED


def _copied(meta: dict[str, Any]) -> str:
    return (f"{meta['snapshots_copied']} copied, {meta['snapshots_already_present']} already "
            f"there, {human_bytes(int(meta['bytes_copied']))}, {meta['duration_s']} s")


def push_with_retries(site: Site, name: str, peer: str, runner: Runner, *, retry: bool,
                      say: Say, sleep: Callable[[float], None] = time.sleep) -> RunOutcome:
    """Given a customer and a peer, push the latest set there in one run; when it fails in a
    way that trying again can help (peer down, link dropped) and `retry`, try again as the
    schedule does: `tiers.ring.retries` more runs, Dagster's exponential backoff apart
    (retry_delay_s, then 3x, 7x, ...), each announced through `say`. Return the last run."""
    settings = ring_settings(site.customer(name))
    retries = settings.retries if retry else 0
    attempt = 0
    while True:
        run = runner.tier_b(site, name, peer, retry_left=attempt < retries)
        attempt += 1
        if run.success or not run.retryable or attempt > retries:
            return run
        wait = settings.retry_delay_s * (2 ** attempt - 1)  # dg.Backoff.EXPONENTIAL
        reason = (run.failure.strip().splitlines() or ["failed"])[0]
        say(f"tier B of {name}: {peer} failed ({reason}); retry {attempt} of {retries} in "
            f"{wait:g} s (tiers.ring.retries; --no-retry fails at once)")
        sleep(wait)


def _read_ahead(site: Site, names: list[str]) -> None:
    """Start listing each customer's tier-A snapshots while Dagster loads (read_ahead.py)."""
    for name in names:
        read_ahead.start(name, site.customers[name], tier_a_tags(name))


def backup_ring(site: Site, names: list[str], runner: Runner, *, peer: str | None = None,
                retry: bool = True, say: Say,
                sleep: Callable[[float], None] = time.sleep) -> Iterator[CopyOutcome]:
    """Given the customers, push each one's latest tier-A set to `peer` (default: its ring
    peers), one run per peer and attempt, retried as the schedule retries unless `retry` is
    False (push_with_retries); yield a CopyOutcome each. A customer whose peers cannot be
    named gets one outcome with exit 2."""
    _read_ahead(site, names)
    for name in names:
        try:
            peers = [peer] if peer else ring_peers(site, name)
            if not peers:
                raise RingError(f"tier B of {name}: no customer has a ring_backup block",
                                retryable=False)
            for p in peers:
                link(site, name, p)  # every peer is usable before the first push starts
        except RingError as exc:
            yield CopyOutcome("B", name, error=str(exc), error_exit=EXIT_CONFIG)
            continue
        for p in peers:
            say(f"tier B of {name}: latest set to {p}")
            run = push_with_retries(site, name, p, runner, retry=retry, say=say, sleep=sleep)
            outcome = CopyOutcome("B", name, p, run)
            if run.success:
                m = run.metadata
                outcome.summary = (f"tier B {name} -> {p} ({m['host']}): {_copied(m)}; peer "
                                   f"free {m['peer_free_gib']} GiB")
            yield outcome


def backup_cold(site: Site, names: list[str], runner: Runner) -> Iterator[CopyOutcome]:
    """Given the customers, sync each one's latest tier-A set to every cold volume mounted
    now, one run per volume; yield a CopyOutcome each (nothing mounted: exit 1; no
    `tiers.cold`: exit 2). A WARN check (another quarter's volume) keeps exit 0."""
    for name in names:
        customer = site.customers[name]
        cold = customer.tiers.cold if customer.tiers else None
        if cold is None:
            yield CopyOutcome("C", name, error=f"tier C of {name}: no tiers.cold in "
                              "customers.yaml", error_exit=EXIT_CONFIG)
            continue
        volumes = find_volumes(cold)
        if not volumes:
            yield CopyOutcome("C", name, error=f"tier C of {name}: no cold volume is mounted "
                              f"({cold.mount_glob}); mount one of the SSDs and run again")
            continue
        read_ahead.start(name, customer, tier_a_tags(name))
        for volume in volumes:
            run = runner.tier_c(site, name, volume)
            outcome = CopyOutcome("C", name, volume.name, run)
            if run.success:
                outcome.summary = f"tier C {name} -> {volume.name}: {_copied(run.metadata)}"
            yield outcome
