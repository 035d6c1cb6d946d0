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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from axe_pipelines.backup import local_repository
from axe_pipelines.config import Customer, Site
from axe_pipelines.copying import NoSetToCopy, copy_set, newest_finished_set
from axe_pipelines.peer import (
    NEXT_STEP,
    PeerLink,
    PeerStatus,
    RepositoryFacts,
    RingError,
    SshRecord,
    link,
    ring_settings,
)
from axe_pipelines.restic import (
    Repository,
    RepositoryLocked,
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
    """What one push did: the set copied, what was copied or already there, the ids
    (originals) confirmed at the peer afterwards and how (copying.CopyResult), and what ssh
    found (PeerStatus)."""

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
    at_peer: frozenset[str] = frozenset()  # ids confirmed at the peer after the copy
    confirmed_by: str = ""


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


@dataclass(frozen=True)
class LinkFacts:
    """What is known once a restic call at the peer failed: each sftp session's ssh exit
    status (None: still running), ssh's own log lines, how long ssh waits for an answer, and
    when ssh stayed up, a second look: the link probed again (its error, if any) and whether
    the repository still opens (None: not looked)."""

    ssh_exits: tuple[int | None, ...] = ()
    ssh_said: tuple[str, ...] = ()
    silent_s: int = 30
    link_error: RingError | None = None
    repository_opens: bool | None = None


SSH_FAILED = 255  # ssh's own exit status for every failure of ssh itself (else: the remote's)


def classify(exc: ResticError, where: str, host: str, facts: LinkFacts) -> RingError:
    """Given a restic failure at the peer (`where`: "<peer> at <host>") and what is known about
    the link and the repository, return the RingError in axe's words with its retry decision:
    a timeout, ssh failing (exit 255), a live lock or a link that no longer answers are retried;
    a wrong password or a repository that no longer opens are not; any other failure, with
    the link up and the repository opening, is not one axe can place and is retried."""
    if isinstance(exc, ResticTimeout):
        return RingError(f"tier B: {where}: {exc}. The link dropped or is too slow; a lock "
                         f"left at the peer is cleared on the next run (it is provably stale); "
                         f"local tier unaffected; {NEXT_STEP}", retryable=True, host=host)
    if isinstance(exc, WrongPassword):
        return RingError(f"tier B: {where}: {exc}; not retried (a password does not fix "
                         f"itself); local tier unaffected", retryable=False, host=host)
    if SSH_FAILED in facts.ssh_exits:
        said = [ln for ln in facts.ssh_said if "not responding" in ln.lower()]
        why = (f"no answer for {facts.silent_s} s (ssh's keepalive gave up)" if said else
               facts.ssh_said[-1] if facts.ssh_said else "ssh ended without saying why")
        return RingError(f"tier B: the link to {where} dropped: {why} (ssh exit {SSH_FAILED}); "
                         f"restic stopped, and a lock it left at the peer is cleared on the next "
                         f"run (it is provably stale); local tier unaffected; {NEXT_STEP}",
                         retryable=True, ssh_exit=SSH_FAILED, host=host)
    if isinstance(exc, RepositoryLocked):  # by a live process: it ends, the lock goes
        return RingError(f"tier B: {where}: {exc}; local tier unaffected; {NEXT_STEP}",
                         retryable=True, host=host)
    if facts.link_error is not None:
        return RingError(f"tier B: {where}: {_first_line(exc)}; looked again: "
                         f"{str(facts.link_error).removeprefix('tier B: ')}",
                         retryable=facts.link_error.retryable,
                         ssh_exit=facts.link_error.ssh_exit, host=host)
    if facts.repository_opens is False:
        return RingError(f"tier B: {where}: {_first_line(exc)}. The repository at the peer no "
                         f"longer opens, so it is damaged: run `restic check` on it (or move "
                         f"it away so the next run starts a new one); not retried; local tier "
                         f"unaffected", retryable=False, host=host)
    return RingError(f"tier B: {where}: {_first_line(exc)}; not a link or repository fault "
                     f"(ssh stayed up, the link answers, the repository opens), so it is "
                     f"retried; local tier unaffected; {NEXT_STEP}", retryable=True, host=host)


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _failure(pl: PeerLink, host: str, exc: ResticError, record: SshRecord) -> RingError:
    """Given a failed restic call through `record`'s ssh sessions, gather what is known (ssh's
    exit status, and when ssh stayed up a second look at the link and the repository) and
    return the classified RingError."""
    exits = tuple(record.sessions())
    facts = LinkFacts(ssh_exits=exits, ssh_said=tuple(record.ssh_said()), silent_s=pl.silent_s)
    if isinstance(exc, ResticFatal) and SSH_FAILED not in exits:
        facts = replace(facts, **_look_again(pl, host))
    return classify(exc, f"{pl.peer} at {host}", host, facts)


def _look_again(pl: PeerLink, host: str) -> dict[str, Any]:
    """After restic failed while ssh stayed up: probe the link, then open the repository
    (`restic cat config`). Return the LinkFacts fields that say what was found."""
    try:
        pl.probe()
    except RingError as exc:
        return {"link_error": exc}
    with SshRecord() as record:
        try:
            pl.restic(host, record).run(["cat", "config", "--no-lock"],
                                        what="opening the repository again",
                                        timeout=pl.settings.connect_timeout_s + pl.silent_s + 30)
        except ResticError as exc:
            if SSH_FAILED in record.sessions():
                return {"link_error": RingError(f"tier B: the link to {pl.peer} at {host} "
                                                f"failed again ({_first_line(exc)})",
                                                retryable=True, ssh_exit=SSH_FAILED, host=host)}
            return {"repository_opens": False}
    return {"repository_opens": True}


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
    what is missing and confirms the whole set is there (copy_set: restic's report and
    the peer's snapshot files, else the peer read back).
    Raise RingError (with `retryable`).
    """
    say = log or (lambda _msg: None)
    started = time.monotonic()
    pl = link(config, customer_name, peer)
    source = local_repository(customer_name, pl.customer)
    # Tier A is read while ssh reaches the peer and restic opens our repository there (two
    # repositories, two processes: issue 12); a missing set is still the failure reported.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="axe-tier-a-set") as pool:
        chosen = pool.submit(latest_set, customer_name, pl.customer, in_progress=in_progress,
                             log=say)
        try:
            status = pl.probe()
        except RingError:
            chosen.result()
            raise
        say(f"tier B: {peer} reachable at {status.host}"
            + (" (ssh_ip fallback)" if status.via_fallback else ""))
        where = f"{peer} at {status.host}"
        facts = status.repository
        with SshRecord() as record:
            restic = pl.restic(status.host, record)
            try:
                cleared, created = _prepare_peer(pl, restic, source, status.host, say,
                                                 chosen.result, facts)
                # The snapshot ids at the peer before the copy, as file names: the probe's
                # (none in a repository made just now), else restic lists them.
                names = frozenset() if created else facts.snapshot_files if facts else None
                before = restic.snapshots(tags=[f"customer={customer_name}"]) \
                    if names is None else None
                the_set = chosen.result()
                copied = copy_set(restic, source, the_set, customer_name, tier="tier B",
                                  to=pl.peer, say=say, before=before, names_before=names,
                                  files_after=lambda: pl.snapshot_files(status.host))
            except (ResticError, SecretError) as exc:
                chosen.result()  # tier A's own failure (no set to copy) comes first
                if isinstance(exc, SecretError):
                    raise RingError(f"tier B: {where}: {exc}", retryable=False) from None
                raise _failure(pl, status.host, exc, record) from None
    if copied.still_missing:
        ids = ", ".join(s.short_id for s in copied.still_missing)
        raise RingError(f"tier B: {where}: {len(copied.still_missing)} snapshot(s) of set "
                        f"{the_set.run_id[:8]} are still missing after the copy ({ids}); local "
                        f"tier unaffected; {NEXT_STEP}", retryable=True, host=status.host)
    return PushResult(customer=customer_name, peer=peer, host=status.host,
                      run_id=the_set.run_id, set_time=the_set.time, copied=copied.copied,
                      already_present=copied.already_present, bytes=copied.bytes,
                      duration_s=time.monotonic() - started, created_repository=created,
                      cleared_locks=cleared, status=status, the_set=the_set,
                      at_peer=copied.present, confirmed_by=copied.confirmed_by)


def _prepare_peer(pl: PeerLink, restic: Restic, source: Repository, host: str,
                  say: Callable[[str], None], the_set: Callable[[], BackupSet],
                  facts: RepositoryFacts | None = None) -> tuple[int, bool]:
    """Given the peer's repository and tier A's (and what the probe saw of its folder),
    clear provably stale locks at the peer and create the repository on first use, once
    `the_set()` says there is a set to copy; return (locks cleared, whether it was
    created). The locks are listed only when the probe did not see an empty `locks/` beside
    the repository's `config`. Raise the mapped ResticError, or what `the_set()` raises."""
    try:
        # Before anything else: a lock left by an earlier run whose process is gone (the link
        # dropped, restic could not remove it) is cleared; a live one is kept.
        cleared = 0 if facts is not None and not facts.locks else \
            len(restic.clear_stale_locks())
        exists = True
    except RepositoryMissing:
        cleared, exists = 0, False
    if cleared:
        say(f"tier B: removed {cleared} stale lock(s) at {pl.peer}")
    created = False
    if not exists:
        the_set()  # no repository is made at the peer for a tier A without a set
        created = restic.init(copy_chunker_params_from=source)
        say(f"tier B: created the repository at {pl.location(host)} with tier A's "
            f"chunker parameters")
    return cleared, created


def peer_snapshots(config: Site, customer_name: str,
                   peer: str) -> tuple[PeerStatus, list[Snapshot]]:
    """Given a customer and a peer, return (what ssh found, the customer's snapshots in our
    repository there), for the peer_now check. Raise RingError when the peer or the
    repository cannot be reached."""
    pl = link(config, customer_name, peer)
    status = pl.probe()
    with SshRecord() as record:
        try:
            return status, pl.restic(status.host, record).snapshots(
                tags=[f"customer={customer_name}"])
        except ResticError as exc:
            raise _failure(pl, status.host, exc, record) from None


def open_ring(config: Site, customer_name: str, peer: str) -> Restic:
    """Given a customer and a peer, return a Restic for our repository there, at the first
    address that answers (restores read tier B through it). Raise RingError when none does."""
    pl = link(config, customer_name, peer)
    return pl.restic(pl.probe().host)
