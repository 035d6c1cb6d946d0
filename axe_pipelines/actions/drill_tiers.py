"""The tiers a restore drill tries, in order, and how it reads them: tier A, then tier C (when
a volume is mounted), then each ring peer — or only the tier `--tier` names. A tier is opened
and listed once per drill; one that cannot be opened keeps its reason, so every item it could
not prove names it. restic runs with `--no-cache` here: the drill proves the repository, not
this machine's cache of its trees and index.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import datetime

from axe_pipelines.actions.selection import RestoreError
from axe_pipelines.config import Site
from axe_pipelines.postgres.client import PostgresError, first_line
from axe_pipelines.restic import RepositoryDamaged, Restic, ResticError
from axe_pipelines.ring import ring_peers
from axe_pipelines.secrets import SecretError
from axe_pipelines.sets import BackupSet, list_sets
from axe_pipelines.tiers import TierUnavailable, open_tier, resolve_tier

# What a tier can fail with while proving an item: recorded as that tier's reason.
FAILURES = (RestoreError, ResticError, PostgresError, TierUnavailable, SecretError, OSError)
_PACK = re.compile(r"<data/([0-9a-f]{6,64})>")


TIER_WORDS = {"local": "tier A", "cold": "tier C", "ring": "tier B"}


def tier_word(name: str) -> str:
    """Given a drill tier's name (`local`, `cold`, `ring (peer)`), return the operator's word
    for it: `tier A`, `tier C`, `tier B (peer)`."""
    head, _, peer = name.partition(" ")
    return TIER_WORDS.get(head, head) + (f" {peer}" if peer else "")


def damage_in(exc: BaseException) -> RepositoryDamaged | None:
    """Given why a tier failed, return it as RepositoryDamaged when it is damage to a pack
    file (restic's own RepositoryDamaged, or a complaint naming `<data/…>` in another
    error), else None."""
    if isinstance(exc, RepositoryDamaged):
        return exc
    text = f"{exc}\n{getattr(exc, 'detail', '') or ''}"
    m = _PACK.search(text)
    if not m:
        return None
    cause = next((ln.rsplit(": ", 1)[-1].strip() for ln in text.splitlines()
                  if m[1] in ln and ": " in ln), "unreadable")
    return RepositoryDamaged(first_line(exc), pack=m[1], cause=cause)


def failure_reason(exc: BaseException, tier: str) -> str:
    """Given why a tier failed, return its one line; restic's complaint about a pack file
    is named as what it is: damage in that tier's repository, and what to run."""
    damaged = damage_in(exc)
    if damaged is None:
        return first_line(exc)
    return (f"pack {damaged.pack[:10]} of the {tier} repository is damaged ({damaged.cause}); "
            f"run `restic check --read-data` (`axe check`) on it")


def _uncached(restic: Restic) -> Restic:
    repo = dataclasses.replace(restic.repo, extra_args=(*restic.repo.extra_args, "--no-cache"))
    return Restic(repo, binary=restic.binary, timezone=restic.timezone, timeout=restic.timeout)


class TierSource:
    """One tier of the customer as a drill reads it: opened and listed once, on first use;
    a tier that cannot be opened keeps its reason for every item that asks."""

    def __init__(self, name: str, customer_name: str, opener: Callable[[], Restic] | None,
                 reason: str = ""):
        self.name = name
        self.customer_name = customer_name
        self._opener = opener
        self._reason = reason
        self._opened: tuple[Restic, list[BackupSet]] | None = None

    def open(self) -> tuple[Restic, list[BackupSet]]:
        """Return the tier's repository and the customer's sets in it. Raise RestoreError
        with the tier's reason if it cannot be opened or listed."""
        if self._opened is None and not self._reason:
            assert self._opener is not None
            try:
                restic = _uncached(self._opener())
                self._opened = restic, list_sets(restic, self.customer_name)
            except FAILURES as exc:
                self._reason = failure_reason(exc, self.name)
        if self._opened is None:
            raise RestoreError(self._reason)
        return self._opened


def tier_chain(site: Site, customer_name: str, tier: str | None) -> list[TierSource]:
    """Given the customer and `--tier` (or None), return the tiers to try in order: that one
    only, or tier A, then C, then each ring peer (a tier not configured is kept with that as
    its reason, so the report names it). Raise ConfigError for an unknown tier word."""
    def opener(name: str, peer: str | None) -> Callable[[], Restic]:
        return lambda: open_tier(site, customer_name, name, peer)  # type: ignore[arg-type]

    if tier:
        name, peer = resolve_tier(site, tier, None)
        return [TierSource(name + (f" ({peer})" if peer else ""), customer_name,
                           opener(name, peer))]
    tiers = site.customer(customer_name).tiers
    chain = [TierSource("local", customer_name, opener("local", None))]
    chain.append(TierSource("cold", customer_name, opener("cold", None)) if tiers and tiers.cold
                 else TierSource("cold", customer_name, None, "tier C is not configured"))
    peers = ring_peers(site, customer_name) if tiers and tiers.ring else []
    chain += [TierSource(f"ring ({p})", customer_name, opener("ring", p)) for p in peers]
    if not peers:
        chain.append(TierSource("ring", customer_name, None, "tier B is not configured"))
    return chain


def newest_holding(sets: list[BackupSet], kind: str, name: str, as_of: datetime,
                   where: str) -> list[BackupSet]:
    """Given a tier's sets, return those at or before `as_of` that hold a `kind` snapshot of
    `name`, oldest first (per item, so a night that lost this item does not hide the one
    before). Raise RestoreError naming the tier when there is none."""
    holding = [s for s in sets if s.time <= as_of and s.member(kind, name)]
    if not holding:
        later = [s for s in sets if s.member(kind, name)]
        raise RestoreError(f"{where} holds no {kind} snapshot of {name} at or before "
                           f"{as_of:%Y-%m-%d %H:%M %Z}" + (
                               f" (its first is from {later[0].time:%Y-%m-%d %H:%M})"
                               if later else ""))
    return holding
