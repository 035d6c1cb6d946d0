"""Where a new tier-A repository takes its chunker parameters from.

restic splits data into chunks with a polynomial chosen when a repository is created; a copy
(`restic copy`) deduplicates only between repositories with the same one. Tiers B and C are
created from tier A's (`--copy-chunker-params`), but a rebuilt machine used to create tier A
anew, and from then on every copy to the existing peer and cold repositories stored all the
data again. So `axe init` creates tier A from the parameters of an existing copy: the one
`--chunker-from ring|cold|<peer>` names, else the first it finds (a mounted cold volume, then
each ring peer), and says which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from axe_pipelines.backup import local_restic
from axe_pipelines.config import ConfigError, Site
from axe_pipelines.errors import Unusable
from axe_pipelines.restic import Restic, ResticError
from axe_pipelines.tiers import TierName, TierUnavailable, open_tier, resolve_tier

Opener = Callable[[], Restic]


class ChunkerSourceError(Unusable):
    """`--chunker-from` names a repository that cannot be read now; nothing was created."""


def _copies(site: Site, name: str) -> Iterator[tuple[str, Opener]]:
    """The customer's copy tiers that may hold a repository: cold, then each ring peer."""
    from axe_pipelines.peer import RingError
    from axe_pipelines.ring import ring_peers

    tiers = site.customer(name).tiers
    if tiers is not None and tiers.cold is not None:
        yield "tier C", lambda: open_tier(site, name, "cold")
    if tiers is not None and tiers.ring is not None:
        try:
            peers = ring_peers(site, name)
        except RingError:
            peers = []
        for peer in peers:
            yield f"tier B ({peer})", lambda peer=peer: open_tier(site, name, "ring", peer)


def _copy_tier(site: Site, words: str) -> tuple[TierName, str | None]:
    """The copy tier (and peer) `--chunker-from` names. Raise ConfigError otherwise."""
    tier, peer = resolve_tier(site, words, None)
    if tier == "local":
        raise ConfigError(site.path or "customers.yaml", [
            f"--chunker-from {words}: that is tier A itself; name ring, cold or a peer"])
    return tier, peer


def _named(site: Site, name: str, words: str) -> Restic:
    """The repository `--chunker-from` names. Raise ConfigError for words naming no copy tier,
    ChunkerSourceError when it cannot be opened or holds no repository."""
    tier, peer = _copy_tier(site, words)
    try:
        restic = open_tier(site, name, tier, peer)
        if restic.exists():
            return restic
        why = "holds no repository of " + name
    except (TierUnavailable, ResticError) as exc:
        why = str(exc)
    raise ChunkerSourceError(f"axe init --chunker-from {words}: {why}; nothing was created "
                             f"(without --chunker-from, axe init uses whichever copy it finds)")


def chunker_source(site: Site, name: str, words: str | None) -> tuple[Restic | None, str]:
    """Given a customer and `--chunker-from` (None: look), return the repository whose
    chunker parameters a new tier A takes, or None, with why none was found. Raise
    ChunkerSourceError or ConfigError when `words` names one that cannot be used."""
    if words:
        return _named(site, name, words), ""
    tried = []
    for label, opener in _copies(site, name):
        try:
            restic = opener()
            if restic.exists():
                return restic, ""
            tried.append(f"{label}: no repository yet")
        except (TierUnavailable, ResticError) as exc:
            tried.append(f"{label}: {str(exc).splitlines()[0]}")
    return None, "; ".join(tried) or "no ring or cold tier configured"


def init_tier_a(site: Site, name: str, words: str | None = None) -> tuple[str, str]:
    """Given a customer (and `--chunker-from`), create its tier-A repository unless it
    exists — with the chunker parameters of an existing ring or cold repository when there is
    one — and return (the repository's label, what was done). Raise ChunkerSourceError or
    ConfigError for a `--chunker-from` that cannot be used, else the mapped ResticError."""
    if words:
        _copy_tier(site, words)  # a wrong word is a usage error even when tier A exists
    restic = local_restic(name, site.customers[name])
    if restic.exists():
        kept = " (its chunker parameters are kept: --chunker-from only applies when creating " \
               "it)" if words else ""
        return restic.repo.label, "exists already" + kept
    source, why = chunker_source(site, name, words)
    if source is None:
        restic.init()
        return restic.repo.label, (f"created with new chunker parameters (no copy to take them "
                                   f"from: {why})")
    # restic reads the other repository itself: an sftp one needs its ssh options too.
    creator = Restic(dataclasses.replace(restic.repo, extra_args=source.repo.extra_args),
                     binary=restic.binary, timezone=restic.timezone, timeout=source.timeout)
    creator.init(copy_chunker_params_from=source.repo)
    return restic.repo.label, (f"created with the chunker parameters of {source.repo.label}, "
                               f"so copies to it keep deduplicating")
