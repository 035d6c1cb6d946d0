"""Tier B, the ring: `restic copy` of the night's tier-A set to a peer's machine over restic's
`sftp:` backend, as plain functions (the Dagster layer is assets/tier_b.py).

The peer is a customer with the runbook's `ring_backup:` block; how it is reached (ssh, the
fqdn-then-ip probe, the sftp repository) is peer.py. Every ssh and restic call is bounded by
a timeout. What the peer pushes to us is inbound.py; the copy-and-confirm core shared with
tier C is copying.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from axe_pipelines.backup import local_repository
from axe_pipelines.config import Customer, Site
from axe_pipelines.copying import NoSetToCopy, copy_set, newest_finished_set
from axe_pipelines.peer import NEXT_STEP, PeerStatus, RingError, link, ring_settings
from axe_pipelines.restic import (
    RepositoryMissing,
    Restic,
    ResticError,
    ResticFatal,
    ResticTimeout,
    Snapshot,
    WrongPassword,
)
from axe_pipelines.secrets import SecretError
from axe_pipelines.sets import BackupSet


@dataclass
class PushResult:
    """What one push did: the set copied, what was copied or already there, the peer's
    snapshots read back afterwards, and what ssh found (PeerStatus)."""

    customer: str
    peer: str
    host: str
    run_id: str
    set_time: datetime
    copied: list[str] = field(default_factory=list)  # tier-A ids copied in this run
    already_present: list[str] = field(default_factory=list)
    bytes: int = 0  # bytes of the copied snapshots' source data
    duration_s: float = 0.0
    created_repository: bool = False
    cleared_locks: int = 0
    status: PeerStatus | None = None
    the_set: BackupSet | None = None
    at_peer: list[Snapshot] = field(default_factory=list)  # read back after the copy


def ring_peers(config: Site, customer_name: str) -> list[str]:
    """The peers `customer_name` pushes to: `tiers.ring.peers`, else every ring peer."""
    customer = config.customer(customer_name)
    peers = config.peers()
    wanted = ring_settings(customer).peers
    if wanted is None:
        return sorted(p for p in peers if p != customer_name)
    unknown = [p for p in wanted if p not in peers]
    if unknown:
        raise RingError(f"tier B of {customer_name}: tiers.ring.peers names {unknown}, which "
                        f"have no ring_backup block (peers: {', '.join(sorted(peers)) or '-'})",
                        retryable=False)
    return list(wanted)


def _classify(exc: ResticError, where: str, host: str) -> RingError:
    """Turns a restic failure at the peer into a RingError with the right retry decision."""
    text = f"{exc}\n{exc.detail}".lower()
    if isinstance(exc, ResticTimeout):
        return RingError(f"tier B: {where}: {exc}. The link dropped or is too slow; a lock "
                         f"left at the peer is cleared on the next run (it is provably stale); "
                         f"local tier unaffected; {NEXT_STEP}", retryable=True, host=host)
    if isinstance(exc, WrongPassword):
        return RingError(f"tier B: {where}: {exc}; not retried (a password does not fix "
                         f"itself); local tier unaffected", retryable=False, host=host)
    link_words = ("ssh command exited", "connection lost", "connection closed",
                  "server not responding", "broken pipe", "connection reset",
                  "unable to start the sftp session", "eof")
    if isinstance(exc, ResticFatal) and any(w in text for w in link_words):
        return RingError(f"tier B: {where}: the ssh link failed during restic ({exc}); local "
                         f"tier unaffected; {NEXT_STEP}", retryable=True, host=host)
    if isinstance(exc, ResticFatal) and exc.restic_exit == 1:
        return RingError(f"tier B: {where}: {exc}. The repository at the peer may be damaged: "
                         f"run `restic check` on it (or move it away so the next run starts a "
                         f"new one); not retried; local tier unaffected", retryable=False,
                         host=host)
    return RingError(f"tier B: {where}: {exc}; local tier unaffected; {NEXT_STEP}",
                     retryable=not isinstance(exc, ResticFatal), host=host)


def latest_set(customer_name: str, customer: Customer, *,
               in_progress: Callable[[str], bool] | None = None,
               log: Callable[[str], None] | None = None) -> BackupSet:
    """Given a customer, return the newest tier-A set whose run has finished (a set still
    being written by a running tier-A run is never copied). Raise RingError when there is
    none (retryable while the only set is still being written)."""
    try:
        return newest_finished_set(customer_name, customer, tier="tier B",
                                   in_progress=in_progress, say=log)
    except NoSetToCopy as exc:
        raise RingError(str(exc) + ("; nothing copied, retried later" if exc.waiting else ""),
                        retryable=exc.waiting) from None


def push_set(config: Site, customer_name: str, peer: str, *,
             log: Callable[[str], None] | None = None,
             in_progress: Callable[[str], bool] | None = None) -> PushResult:
    """Given a customer and a peer, copy every snapshot of the latest finished tier-A set to
    our repository at the peer and return the PushResult.

    Initialises the peer repository on first use (`--copy-chunker-params` from tier A), never
    re-initialises one that exists, clears locks at the peer only when provably stale, copies
    what is missing and reads the peer back to confirm the whole set is there (copy_set).
    Raise RingError (with `retryable`).
    """
    say = log or (lambda _msg: None)
    started = time.monotonic()
    pl = link(config, customer_name, peer)
    source = local_repository(customer_name, pl.customer)
    the_set = latest_set(customer_name, pl.customer, in_progress=in_progress,
                         log=say)
    status = pl.probe()
    say(f"tier B: {peer} reachable at {status.host}"
        + (" (ssh_ip fallback)" if status.via_fallback else ""))
    restic = pl.restic(status.host)
    where = f"{peer} at {status.host}"
    result = PushResult(customer=customer_name, peer=peer, host=status.host,
                        run_id=the_set.run_id, set_time=the_set.time,
                        status=status, the_set=the_set)
    try:
        try:
            # Before anything else: a lock left by an earlier run whose process is gone (the
            # link dropped, restic could not remove it) is cleared; a live one is kept.
            result.cleared_locks = len(restic.clear_stale_locks())
            exists = True
        except RepositoryMissing:
            exists = False
        if result.cleared_locks:
            say(f"tier B: removed {result.cleared_locks} stale lock(s) at {peer}")
        if not exists:
            result.created_repository = restic.init(copy_chunker_params_from=source)
            say(f"tier B: created the repository at {pl.location(status.host)} with tier A's "
                f"chunker parameters")
        copied = copy_set(restic, source, the_set, customer_name, tier="tier B", to=peer,
                          say=say)
    except ResticError as exc:
        raise _classify(exc, where, status.host) from None
    except SecretError as exc:
        raise RingError(f"tier B: {where}: {exc}", retryable=False) from None
    if copied.still_missing:
        ids = ", ".join(s.short_id for s in copied.still_missing)
        raise RingError(f"tier B: {where}: {len(copied.still_missing)} snapshot(s) of set "
                        f"{the_set.run_id[:8]} are still missing after the copy ({ids}); local "
                        f"tier unaffected; {NEXT_STEP}", retryable=True, host=status.host)
    result.at_peer, result.copied = copied.after, copied.copied
    result.already_present, result.bytes = copied.already_present, copied.bytes
    result.duration_s = time.monotonic() - started
    return result


def peer_snapshots(config: Site, customer_name: str,
                   peer: str) -> tuple[PeerStatus, list[Snapshot]]:
    """Given a customer and a peer, return (what ssh found, the customer's snapshots in our
    repository there), for the peer_now check. Raise RingError when the peer or the
    repository cannot be reached."""
    pl = link(config, customer_name, peer)
    status = pl.probe()
    try:
        return status, pl.restic(status.host).snapshots(tags=[f"customer={customer_name}"])
    except ResticError as exc:
        raise _classify(exc, f"{peer} at {status.host}", status.host) from None


def open_ring(config: Site, customer_name: str, peer: str) -> Restic:
    """Given a customer and a peer, return a Restic for our repository there, at the first
    address that answers (restores read tier B through it). Raise RingError when none does."""
    pl = link(config, customer_name, peer)
    return pl.restic(pl.probe().host)
