"""What a restore or check reads: the target (`--target`), the tier's repository (`--tier`,
`--from`), the set (`--as-of`) and its snapshots, fetched into a scratch folder.

Shared by actions/restore.py and actions/integrity.py. Every failure here happens before
anything is changed, and says so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from axe_pipelines.config import Customer, Site
from axe_pipelines.damage import explain_damage
from axe_pipelines.errors import ItemFailed
from axe_pipelines.postgres.client import first_line
from axe_pipelines.restic import RepositoryDamaged, Restic, ResticError, Snapshot
from axe_pipelines.safe_paths import remove_tree
from axe_pipelines.sets import (
    AsOfError,
    BackupSet,
    list_sets,
    newest_holding,
    parse_as_of,
    select_as_of,
    sets_holding,
)
from axe_pipelines.tiers import TierName, TierUnavailable, open_tier, resolve_tier


class RestoreError(ItemFailed):
    """A restore or check was refused or failed outside PostgreSQL (target, tier, set,
    snapshot, folder). The message is one operator line: what, where, what to do, and whether
    anything was changed."""


@dataclass(frozen=True)
class Target:
    """What `--target` names, by its customers.yaml name: a database, a folder, or a server
    holding more than one database (all of them, and the server's roles)."""

    kind: Literal["database", "folder", "server"]
    name: str


def server_databases(customer: Customer) -> dict[str, list[str]]:
    """Given a customer, return each server that holds databases and their config names."""
    found: dict[str, list[str]] = {}
    for db_name, db in customer.databases.items():
        found.setdefault(db.server, []).append(db_name)
    return found


def valid_targets(customer: Customer) -> list[str]:
    """Given a customer, return every name `--target` accepts, for error messages."""
    names: list[str] = []
    for db_name, db in customer.databases.items():
        names += [db_name, f"{db_name}-postgres", *db.aliases]
    names += [*customer.folders, *server_databases(customer)]
    return sorted(set(names))


def _database(customer: Customer, target: str, *, spelled: bool) -> str | None:
    """The database `target` names: its config name or an alias; with `spelled` also the
    runbook's `<db>-postgres` form or its name on the server."""
    for db_name, db in customer.databases.items():
        if target in (db_name, *db.aliases) or spelled and target in (
                f"{db_name}-postgres", customer.database_name(db_name)):
            return db_name
    return None


def resolve_target(customer_name: str, customer: Customer, target: str) -> Target:
    """Given `--target` (a database's config name or alias, a folder, a server's name, the
    runbook's `<db>-postgres` form, or a database's real name), return the Target. A server
    holding one database means that database (the runbook's containers: `frame-postgres` is
    the server and `frame` + `-postgres` alike); one holding several means all of them. Raise
    RestoreError listing the valid names if it names nothing."""
    if (db := _database(customer, target, spelled=False)) is not None:
        return Target("database", db)
    if target in customer.folders:
        return Target("folder", target)
    on_server = server_databases(customer).get(target)
    if on_server:
        return Target("server", target) if len(on_server) > 1 else \
            Target("database", on_server[0])
    if (db := _database(customer, target, spelled=True)) is not None:
        return Target("database", db)
    raise RestoreError(f"unknown target {target!r} for customer {customer_name} "
                       f"(valid: {', '.join(valid_targets(customer))})")


def resolve_database(customer_name: str, customer: Customer, target: str, purpose: str) -> str:
    """Given `--target` and what it is for (`last-valid needs a database`), return the
    database's config name; here `<db>-postgres` means that database even when a server of
    several has that name. Raise RestoreError if it names a folder, such a server (naming
    its databases) or nothing."""
    if (db := _database(customer, target, spelled=True)) is not None:
        return db
    found = resolve_target(customer_name, customer, target)
    if found.kind == "server":
        raise RestoreError(f"{target} is a server holding "
                           f"{', '.join(server_databases(customer)[target])}; {purpose}: "
                           f"name one of them")
    if found.kind != "database":
        raise RestoreError(f"{target} is a folder; {purpose}")
    return found.name


def open_source(config: Site, customer_name: str, tier: str | None,
                source: str | None) -> tuple[TierName, str | None, Restic]:
    """Given `--tier`/`--from`, return (tier, peer, the opened repository). Raise
    ConfigError for unknown words, RestoreError if the tier cannot be opened now."""
    name, peer = resolve_tier(config, tier, source)
    try:
        return name, peer, open_tier(config, customer_name, name, peer)
    except TierUnavailable as exc:
        raise RestoreError(f"tier {name}: {exc}; nothing was changed") from None


def tier_label(tier: str, peer: str | None) -> str:
    """Given a tier and its peer, return `tier ring (peer realchoice)` for messages."""
    return f"tier {tier}" + (f" (peer {peer})" if peer else "")


def load_sets(restic: Restic, customer_name: str, where: str) -> list[BackupSet]:
    """Given a repository, return the customer's sets in it, oldest first. Raise
    RestoreError if the repository cannot be read."""
    try:
        return list_sets(restic, customer_name)
    except ResticError as exc:
        raise RestoreError(f"{where}: {first_line(exc)}; nothing was changed") from None


def choose_set(sets: list[BackupSet], as_of: str, timezone: str, where: str) -> BackupSet:
    """Given the sets and `--as-of` (see sets.parse_as_of), return the newest set at or
    before it. Raise RestoreError with the range that exists if there is none."""
    try:
        return select_as_of(sets, parse_as_of(as_of, timezone), where=where)
    except AsOfError as exc:
        raise RestoreError(f"{exc}; nothing was changed") from None


def as_of_moment(as_of: str, timezone: str) -> datetime:
    """Given `--as-of` (see sets.parse_as_of) and the customer's zone, return the moment it
    means. Raise RestoreError if it is not a time."""
    try:
        return parse_as_of(as_of, timezone)
    except AsOfError as exc:
        raise RestoreError(f"{exc}; nothing was changed") from None


def member(the_set: BackupSet, kind: str, name: str, where: str,
           sets: list[BackupSet] | None = None) -> Snapshot:
    """Given a set, a snapshot kind (pgdump, roles, files) and a name, return that member.
    Raise RestoreError if the set lacks it, naming the sets of `sets` that hold it."""
    snap = the_set.member(kind, name)
    if snap is None:
        zone = the_set.time.tzinfo or UTC
        holding = f" (sets holding one: {sets_holding(sets, kind, name, zone)})" if sets else ""
        raise RestoreError(f"the set of {the_set.time:%Y-%m-%d %H:%M} in {where} holds no "
                           f"{kind} snapshot of {name}; pick another --as-of{holding}")
    return snap


def pick_member(sets: list[BackupSet], as_of: datetime, kind: str, name: str,
                where: str) -> tuple[BackupSet, Snapshot]:
    """Given sets oldest first, the `--as-of` moment and an item, return the newest set at
    or before it holding a good snapshot of the item, and that snapshot (a night that failed
    the item leaves it to an earlier set). Raise RestoreError listing the sets that hold one
    when none at or before the moment does."""
    found = newest_holding(sets, kind, name, as_of)
    if found is None:
        raise RestoreError(f"{where} holds no {kind} snapshot of {name} at or before "
                           f"{as_of:%Y-%m-%d %H:%M %Z}; sets holding one: "
                           f"{sets_holding(sets, kind, name, as_of.tzinfo or UTC)}; pick one "
                           f"of those with --as-of; nothing was changed")
    snap = found.member(kind, name)
    assert snap is not None
    return found, snap


def dump_path(snap: Snapshot) -> str:
    """Given a dump snapshot, return the file it holds (`/<db>.pgdump` or `/<db>.sql`).
    Raise RestoreError if it names none."""
    if not snap.paths:
        raise RestoreError(f"snapshot {snap.short_id} names no path; is it a dump?")
    return snap.paths[0]


def fetch_file(restic: Restic, snap: Snapshot, workdir: Path) -> Path:
    """Given a dump snapshot, restore its single file into `workdir` and return its path.

    `restic restore` into a folder, never `restic dump | pg_restore`: an early-exiting reader
    kills restic with SIGPIPE and leaves a stale lock, and pg_restore -j refuses stdin.
    Raise RestoreError (nothing changed) if restic fails or restores no such file."""
    path = dump_path(snap)
    try:
        restic.run(["restore", snap.id, "--target", str(workdir), "--include", path],
                   what=f"restoring {path} from snapshot {snap.short_id}")
    except RepositoryDamaged as exc:
        raise RestoreError(f"{explain_damage(restic, exc, snap.id, f'a restore of {path}')}; "
                           f"nothing was changed") from None
    except ResticError as exc:
        raise RestoreError(f"{first_line(exc)}; nothing was changed") from None
    out = workdir / path.lstrip("/")
    if not out.is_file():
        raise RestoreError(f"restic restored no {path} from snapshot {snap.short_id}")
    return out


def snapshot_size(snap: Snapshot) -> int:
    """Given a snapshot, return the bytes its backup read (0 when restic did not say)."""
    return int(snap.summary.get("total_bytes_processed") or 0)


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """Yield a new folder under the system temp dir for fetched dumps; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="axe-restore-"))
    try:
        yield path
    finally:
        remove_tree(path, inside=Path(tempfile.gettempdir()))
