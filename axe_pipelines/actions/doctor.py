"""What `axe doctor` does: restic, customers.yaml, then per customer its repository,
databases and folders, its ring peers (ssh) and their pushes to us, and mounted cold volumes.
Every probe is bounded (restic and ssh timeouts); each finding is yielded as it is made."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from axe_pipelines.backup import local_restic
from axe_pipelines.cold import find_volumes
from axe_pipelines.config import Customer, Site, load_config
from axe_pipelines.errors import EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE
from axe_pipelines.inbound import inbound_state
from axe_pipelines.peer import RingError, link, ring_settings
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.restic import ResticError, find_restic, restic_version
from axe_pipelines.ring import ring_peers


@dataclass(frozen=True)
class Finding:
    """One line of `axe doctor`: `status` is ok, warn or FAIL. `unusable`: restic itself is
    missing, so nothing else could be checked."""

    status: str
    text: str
    unusable: bool = False

    @property
    def exit_code(self) -> int:
        """Return 3 (restic unusable), 1 (FAIL) or 0 (ok, warn)."""
        if self.unusable:
            return EXIT_UNUSABLE
        return EXIT_FAILED if self.status == "FAIL" else EXIT_OK


def doctor(config_path: Path | None) -> Iterator[Finding]:
    """Given the --config path (None: the usual places), yield every finding. Stops after
    the first when restic is unusable; raise ConfigError when customers.yaml is invalid."""
    try:
        binary = find_restic()
    except ResticError as exc:
        yield Finding("FAIL", str(exc), unusable=True)
        return
    yield Finding("ok", f"restic {'.'.join(map(str, restic_version(binary) or ()))} ({binary})")
    site = load_config(config_path)
    yield Finding("ok", f"config {site.path}")
    for name in site.backed_up_customers():
        yield from _local(name, site.customers[name])
    yield from _ring(site)
    yield from _cold(site)


def _local(name: str, customer: Customer) -> Iterator[Finding]:
    """The customer's tier-A repository, each database and each folder."""
    restic = local_restic(name, customer)
    try:
        n = len(restic.snapshots(tags=[f"customer={name}"]))
        yield Finding("ok", f"{restic.repo.label}: {n} snapshot(s)")
    except ResticError as exc:
        yield Finding("FAIL", str(exc))
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


def _ring(site: Site) -> Iterator[Finding]:
    """Tier B: every peer a customer pushes to (one ssh probe each), and every peer that
    pushes to us (its newest push's age)."""
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
                st = link(site, name, peer).probe()
            except RingError as exc:
                yield Finding("FAIL", str(exc))
                continue
            free = f"{st.free_bytes / 1024 ** 3:.1f} GiB free" if st.free_bytes else "free ?"
            yield Finding("ok", f"ring peer {peer} reachable at {st.host}"
                                f"{' (ssh_ip fallback)' if st.via_fallback else ''}: restic "
                                f"{st.restic_version or 'not found'}, {free}")
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


def _cold(site: Site) -> Iterator[Finding]:
    """Tier C: the mounted volumes and when each customer last synced onto them."""
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
