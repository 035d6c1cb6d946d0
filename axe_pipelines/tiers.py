"""Opening a tier's repository by the operator's words: local, ring (a peer), cold.

Restore, integrity checks and drills call `open_tier`; the tier modules provide the
repository for their tier.
"""

from __future__ import annotations

from typing import Literal

from axe_pipelines.backup import local_restic
from axe_pipelines.config import ConfigError, Site
from axe_pipelines.errors import Unusable
from axe_pipelines.restic import Restic

TierName = Literal["local", "ring", "cold"]
TIER_WORDS: dict[str, TierName] = {"local": "local", "a": "local", "ring": "ring", "b": "ring",
                                   "peer": "ring", "cold": "cold", "c": "cold"}


class TierUnavailable(Unusable):
    """The tier cannot be opened now (peer unreachable, no volume mounted, not configured)."""


def resolve_tier(config: Site, tier: str | None,
                 source: str | None) -> tuple[TierName, str | None]:
    """Given `--tier` and `--from`, return (tier, peer). `--from` takes the tier words or a
    peer name (which means the ring tier held by that peer); without either, local. Raise
    ConfigError when they disagree, name nothing known, or the ring needs a peer named."""
    peers = config.peers()
    words = [w for w in (tier, source) if w]
    if not words:
        return "local", None
    chosen: TierName | None = None
    peer: str | None = None
    for word in words:
        key = word.lower()
        if key in TIER_WORDS:
            if chosen and chosen != TIER_WORDS[key]:
                raise ConfigError(config.path or "customers.yaml",
                                  [f"--tier {tier} and --from {source} name different tiers"])
            chosen = TIER_WORDS[key]
        elif word in peers:
            peer = word
            if chosen not in (None, "ring"):
                raise ConfigError(config.path or "customers.yaml",
                                  [f"--from {word} is a ring peer, but --tier is {chosen}"])
            chosen = "ring"
        else:
            known = ", ".join(["local", "ring", "cold", *sorted(peers)])
            raise ConfigError(config.path or "customers.yaml",
                              [f"unknown tier or peer {word!r} (valid: {known})"])
    assert chosen is not None
    if chosen == "ring" and peer is None:
        if len(peers) == 1:
            peer = next(iter(peers))
        elif not peers:
            raise ConfigError(config.path or "customers.yaml",
                              ["--tier ring: no customer has a ring_backup block"])
        else:
            raise ConfigError(config.path or "customers.yaml",
                              [f"--tier ring: say which peer with --from "
                               f"({', '.join(sorted(peers))})"])
    return chosen, peer


def open_tier(config: Site, customer_name: str, tier: TierName,
              peer: str | None = None) -> Restic:
    """Given a customer and a tier (and peer), return a Restic for the customer's repository
    there. Raise TierUnavailable when it cannot be opened now (peer unreachable, no volume
    mounted, not configured)."""
    customer = config.customer(customer_name)
    if tier == "local":
        if not customer.backs_up:
            raise TierUnavailable(f"{customer_name} has no tier A (tiers.local) configured")
        return local_restic(customer_name, customer)
    if tier == "ring":
        from axe_pipelines.peer import RingError
        from axe_pipelines.ring import open_ring, ring_peers

        try:
            if peer is None:
                peers = ring_peers(config, customer_name)
                if len(peers) != 1:
                    raise TierUnavailable(f"tier ring of {customer_name}: say which peer "
                                          f"({', '.join(peers) or 'none configured'})")
                peer = peers[0]
            return open_ring(config, customer_name, peer)
        except RingError as exc:
            raise TierUnavailable(str(exc)) from None
    if tier == "cold":
        from axe_pipelines.cold import ColdError, open_cold

        try:
            return open_cold(config, customer_name)
        except ColdError as exc:
            raise TierUnavailable(str(exc)) from None
    raise TierUnavailable(f"unknown tier {tier!r}")
