"""The drill's evidence beyond tier A: the `kind=drill` snapshot copied to tiers C and B (so
the proof of restorability survives the loss of this machine and its disk), and past drills
read back from any tier for `axe drill --report --from-tier T` when the local evidence folder
is gone.

The evidence snapshot carries no `run=` tag (it is no backup set: as-of selection, coverage and
retention never see it), so the nightly set copy does not take it along; the drill copies it
itself, once per tier, at its end.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from axe_pipelines.actions.drill_report import REPORT_JSON, DrillReport
from axe_pipelines.backup import TAG_TOOL, local_repository
from axe_pipelines.config import Site
from axe_pipelines.postgres.client import first_line
from axe_pipelines.restic import Restic, ResticError
from axe_pipelines.ring import ring_peers
from axe_pipelines.secrets import SecretError
from axe_pipelines.tiers import TierUnavailable, open_tier, resolve_tier

Say = Callable[[str], None]
EVIDENCE_KIND = "drill"


def _other_tiers(site: Site, customer_name: str) -> list[tuple[str, str, str | None]]:
    tiers = site.customer(customer_name).tiers
    found: list[tuple[str, str, str | None]] = []
    if tiers and tiers.cold:
        found.append(("cold", "cold", None))
    if tiers and tiers.ring:
        found += [(f"ring ({p})", "ring", p) for p in ring_peers(site, customer_name)]
    return found


def copy_evidence(site: Site, customer_name: str, snapshot_id: str,
                  say: Say) -> dict[str, str]:
    """Given a customer and its drill's evidence snapshot in tier A, copy it to tier C (when
    a volume is mounted) and to each ring peer; return per tier `copied` or why not. Never
    raise: a tier that cannot take it now is recorded, the drill's result stays."""
    customer = site.customer(customer_name)
    done: dict[str, str] = {}
    for label, tier, peer in _other_tiers(site, customer_name):
        try:
            target = open_tier(site, customer_name, tier, peer)  # type: ignore[arg-type]
            target.copy(local_repository(customer_name, customer), [snapshot_id])
            copied = target.snapshots(tags=[f"customer={customer_name}",
                                            f"kind={EVIDENCE_KIND}"])
            done[label] = ("copied" if any(s.original == snapshot_id for s in copied)
                           else "not copied: restic copied nothing")
        except (ResticError, TierUnavailable, SecretError, OSError) as exc:
            done[label] = f"not copied: {first_line(exc)}"
        say(f"drill: evidence to {label}: {done[label]}")
    return done


def reports_in_tier(site: Site, customer_name: str, tier_word: str,
                    last: int) -> list[DrillReport]:
    """Given a customer, a tier word (local, ring, cold or a peer) and how many, return the
    newest `last` drills whose evidence snapshot that tier holds, newest first. Raise
    ConfigError for an unknown tier word, TierUnavailable when it cannot be opened, the
    mapped ResticError when it cannot be listed."""
    name, peer = resolve_tier(site, tier_word, None)
    restic = open_tier(site, customer_name, name, peer)
    snaps = restic.snapshots(tags=[TAG_TOOL, f"customer={customer_name}",
                                   f"kind={EVIDENCE_KIND}"])
    found: list[DrillReport] = []
    for snap in sorted(snaps, key=lambda s: s.time, reverse=True):
        report = _read_report(restic, snap.id, snap.paths[0] if snap.paths else "")
        if report is not None:
            found.append(report)
        if len(found) >= last:
            break
    return found


def _read_report(restic: Restic, snapshot_id: str, folder: str) -> DrillReport | None:
    try:
        with restic.dump(snapshot_id, f"{folder.rstrip('/')}/{REPORT_JSON}") as stream:
            return DrillReport.from_json(json.loads(stream.read().decode()))
    except (ResticError, OSError, ValueError, TypeError):
        return None  # an unreadable one is skipped, as past_reports does
