"""What `axe doctor` does: restic, customers.yaml and every password source in it, then per
customer its repository (free space against the last set), databases, folders and the client
tools against each server, its ring peers (ssh, free space, chunker parameters) and their
pushes to us, mounted cold volumes (the same), and the Dagster instance with its daemon.
Every probe is bounded (restic, ssh and tool timeouts); each finding is yielded as it is
made. Exit codes (README): 0 ok, 1 a FAIL (warnings keep 0), 3 without restic."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from axe_pipelines.actions.doctor_checks import (
    Finding,
    TierAFacts,
    chunker,
    disk_free,
    free_space,
    password_sources,
    same_chunker,
    tool_versions,
)
from axe_pipelines.actions.doctor_physical import physical_findings
from axe_pipelines.actions.doctor_wal import wal_findings
from axe_pipelines.backup import local_restic
from axe_pipelines.cold import find_volumes, volume_restic
from axe_pipelines.config import Customer, Site, load_config
from axe_pipelines.damage import recorded_damage
from axe_pipelines.inbound import inbound_state
from axe_pipelines.peer import RingError, link, ring_settings
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.restic import ResticError, find_restic, restic_version
from axe_pipelines.ring import ring_peers
from axe_pipelines.sets import group_sets

InstanceProbe = Callable[[], Iterable[tuple[str, str]]]


def doctor(config_path: Path | None,
           instance: InstanceProbe | None = None) -> Iterator[Finding]:
    """Given the --config path (None: the usual places) and the Dagster layer's probe of the
    instance (checks/history.instance_findings: (status, text) pairs), yield every finding.
    Stops after the first when restic is unusable; raise ConfigError when customers.yaml is
    invalid."""
    try:
        binary = find_restic()
    except ResticError as exc:
        yield Finding("FAIL", str(exc), unusable=True)
        return
    yield Finding("ok", f"restic {'.'.join(map(str, restic_version(binary) or ()))} ({binary})")
    site = load_config(config_path)
    yield Finding("ok", f"config {site.path}")
    yield from password_sources(site)
    facts: dict[str, TierAFacts] = {}
    for name in site.backed_up_customers():
        yield from _local(name, site.customers[name], facts)
        yield from tool_versions(name, site.customers[name])
        yield from physical_findings(name, site.customers[name])  # doctor_physical.py
        yield from wal_findings(name, site.customers[name])  # doctor_wal.py (issue 13)
    yield from _ring(site, facts)
    yield from _cold(site, facts)
    for status, text in instance() if instance is not None else ():
        yield Finding(status, text)


def _local(name: str, customer: Customer, facts: dict[str, TierAFacts]) -> Iterator[Finding]:
    """The customer's tier-A repository (free space against its newest set; its chunker
    parameters go into `facts` for the copy tiers), each database and each folder."""
    restic = local_restic(name, customer)
    try:
        snaps = restic.snapshots(tags=[f"customer={name}"])
        yield Finding("ok", f"{restic.repo.label}: {len(snaps)} snapshot(s)")
        sets = group_sets(snaps)
        facts[name] = TierAFacts(chunker(restic), sets[-1] if sets else None)
        yield from free_space(restic.repo.label, disk_free(restic.repo.location),
                              facts[name].newest)
    except (ResticError, ValueError) as exc:
        yield Finding("FAIL", str(exc))
    if damage := recorded_damage(restic.repo.location):
        yield Finding("FAIL", damage)
    for db_name, db in customer.databases.items():
        conn = Connection(db.server, customer.servers[db.server],
                          customer.database_name(db_name))
        try:
            version = conn.psql("SHOW server_version;")[0][0]
            yield Finding("ok", f"database {db_name} on {conn.where}: PostgreSQL {version}")
        except PostgresError as exc:
            yield Finding("FAIL", f"database {db_name}: {exc}")
    for folder_name, folder in customer.folders.items():
        path = folder.path.expanduser()
        if path.is_dir():
            yield Finding("ok", f"folder {folder_name}: {path}")
        else:
            yield Finding("FAIL" if folder.required else "warn",
                          f"folder {folder_name}: {path} does not exist")


def _ring(site: Site, facts: dict[str, TierAFacts]) -> Iterator[Finding]:
    """Tier B: every peer a customer pushes to (one ssh probe each; free space there against
    the newest set, chunker parameters against tier A's), and every peer that pushes to us
    (its newest push's age)."""
    pushing = [n for n in site.backed_up_customers()
               if (t := site.customers[n].tiers) is not None and t.ring is not None]
    for name in pushing:
        try:
            peers = ring_peers(site, name)
        except RingError as exc:
            yield Finding("FAIL", str(exc))
            continue
        for peer in peers:
            try:
                pl = link(site, name, peer)
                st = pl.probe()
            except RingError as exc:
                yield Finding("FAIL", str(exc))
                continue
            free = f"{st.free_bytes / 1024 ** 3:.1f} GiB free" if st.free_bytes else "free ?"
            yield Finding("ok", f"ring peer {peer} reachable at {st.host}"
                                f"{' (ssh_ip fallback)' if st.via_fallback else ''}: restic "
                                f"{st.restic_version or 'not found'}, {free}")
            if (fact := facts.get(name)) is not None:
                yield from free_space(f"ring peer {peer}", st.free_bytes, fact.newest)
                yield from same_chunker(f"tier B of {name} at {peer}", fact.chunker,
                                        pl.restic(st.host))
        hours = ring_settings(site.customers[name]).inbound_freshness_hours
        for peer, block in sorted(site.peers().items()):
            state = inbound_state(block)
            age = state.age_hours()
            if age is not None and age <= hours:
                yield Finding("ok", f"inbound from {peer}: last push {age:.1f} h ago")
            else:
                yield Finding("warn", f"inbound from {peer}: "
                              + (f"last push {age:.1f} h ago" if age is not None else
                                 f"nothing in {state.path}")
                              + " (ring backup 단방향? ask its operator)")


def _cold(site: Site, facts: dict[str, TierAFacts]) -> Iterator[Finding]:
    """Tier C: the mounted volumes, when each customer last synced onto them, their free
    space against the newest set and their chunker parameters against tier A's."""
    for name in site.backed_up_customers():
        customer = site.customers[name]
        if not (customer.tiers and customer.tiers.cold):
            continue
        cold = customer.tiers.cold
        volumes = find_volumes(cold)
        if not volumes:
            yield Finding("warn", f"tier C of {name}: no cold volume mounted "
                                  f"({cold.mount_glob}); fine while the SSDs are offline")
        for v in volumes:
            last = ((v.marker or {}).get("last_sync") or {}).get(name, "never")
            yield Finding("ok", f"{v.label()}: last sync of {name} {last}")
            if (fact := facts.get(name)) is not None:
                yield from free_space(v.label(), disk_free(v.path), fact.newest)
                yield from same_chunker(f"tier C of {name} on {v.label()}", fact.chunker,
                                        volume_restic(v, cold))
