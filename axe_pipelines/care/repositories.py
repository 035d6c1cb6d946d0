"""Which repositories the weekly care (retention, `restic check`) looks after, per tier:

    local   the customer's tier-A repository
    ring    our repository at each ring peer (`sftp:`, receive_dir_at_peer): our backups,
            pruned with our own policy. The peer's backups that it pushes to us
            (`ring_backup.receive_dir_at_self`) are never one of these: only the peer prunes
            them (care/forget.py refuses them as well)
    cold    the customer's repository on every cold volume mounted now (tier C is looked
            after when a volume is mounted; an unmounted one is not an error)

Opening a repository is deferred (`TierRepository.open`): a peer that does not answer fails
that one repository, not the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from axe_pipelines.care.policy import TIERS, RetentionPolicy, Tier, tier_policy
from axe_pipelines.restic import Repository, Restic

if TYPE_CHECKING:
    from axe_pipelines.config import Site
    from axe_pipelines.config_ops import CareSettings

TIER_LETTER: dict[Tier, str] = {"local": "A", "ring": "B", "cold": "C"}


@dataclass(frozen=True)
class TierRepository:
    """One repository of one customer's tier: `name` is "local", the peer, or the volume;
    `open()` returns its Restic (raising the tier's error when it cannot be reached);
    `guard()` holds what keeps a sync of the same repository out (a cold volume's lock)."""

    customer: str
    tier: Tier
    name: str
    timezone: str
    settings: CareSettings
    open: Callable[[], Restic] = field(compare=False)
    guard: Callable[[], AbstractContextManager[None]] = field(default=nullcontext,
                                                              compare=False)
    path: Path | None = None  # a cold volume's folder (its marker records the care: stamps.py)

    @property
    def label(self) -> str:
        """The repository as messages name it: `axe tier A`, `axe tier B at realchoice`,
        `axe tier C on axe-cold-1`."""
        where = {"local": "", "ring": f" at {self.name}", "cold": f" on {self.name}"}
        return f"{self.customer} tier {TIER_LETTER[self.tier]}{where[self.tier]}"

    @property
    def policy(self) -> RetentionPolicy | None:
        """The tier's retention policy, None when it keeps everything."""
        return tier_policy(self.settings)


def _ring(site: Site, customer_name: str, zone: str) -> Iterator[TierRepository]:
    from axe_pipelines.ring import open_ring, ring_peers

    customer = site.customer(customer_name)
    assert customer.tiers is not None and customer.tiers.ring is not None
    for peer in ring_peers(site, customer_name):
        yield TierRepository(customer_name, "ring", peer, zone, customer.tiers.ring,
                             open=lambda peer=peer: open_ring(site, customer_name, peer))


def _cold(site: Site, customer_name: str, zone: str) -> Iterator[TierRepository]:
    from axe_pipelines.cold import cold_settings, find_volumes, volume_lock

    cold = cold_settings(customer_name, site.customer(customer_name))
    for volume in find_volumes(cold):
        if not (volume.repo_path / "config").is_file():
            continue  # never synced: nothing to keep or check there yet
        repo = Repository(str(volume.repo_path), cold.password,
                          f"tier C repository on {volume.label()}")
        yield TierRepository(
            customer_name, "cold", volume.name, zone, cold,
            open=lambda repo=repo: Restic(repo, timeout=cold.timeout_s),
            guard=lambda volume=volume: volume_lock(volume, cold.timeout_s), path=volume.path)


def tier_repositories(site: Site, customer_name: str,
                      tiers: Sequence[Tier] = TIERS) -> list[TierRepository]:
    """Given the site, a customer with tier A and the tiers wanted, return the repositories
    the weekly care looks after, in tier order: tier A, each ring peer (with `tiers.ring`),
    each mounted cold volume holding a repository (with `tiers.cold`). Raise ConfigError for
    an unknown customer, RingError when `tiers.ring.peers` names an unknown peer."""
    from axe_pipelines.backup import local_restic
    from axe_pipelines.config import tier_timezone

    customer = site.customer(customer_name)
    assert customer.tiers is not None
    zone = tier_timezone(customer)
    found: list[TierRepository] = []
    if "local" in tiers:
        found.append(TierRepository(customer_name, "local", "local", zone,
                                    customer.tiers.local,
                                    open=lambda: local_restic(customer_name, customer)))
    if "ring" in tiers and customer.tiers.ring is not None:
        found += _ring(site, customer_name, zone)
    if "cold" in tiers and customer.tiers.cold is not None:
        found += _cold(site, customer_name, zone)
    return found
