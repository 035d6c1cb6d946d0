"""The findings `axe doctor` adds for issue 10 (actions/doctor.py yields them in order):
client tools at least as new as each server, every password source resolvable (its value
never printed), free space against the last set, the same chunker parameters on every tier.
Each is bounded: psql and the tools' `--version` by run_tool's timeouts, restic by its own.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from axe_pipelines.config import Customer, Site
from axe_pipelines.errors import EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE
from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    first_line,
    local_tool,
    run_tool,
)
from axe_pipelines.progress import human_bytes
from axe_pipelines.restic import RepositoryMissing, Restic, ResticError
from axe_pipelines.secrets import CommandSource, EnvSource, FileSource, KeychainSource, SecretError
from axe_pipelines.sets import BackupSet

_SOURCES = (KeychainSource, CommandSource, EnvSource, FileSource)


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


# --- pg_dump / pg_restore against each server ----------------------------------------------


def tool_major(version_text: str) -> tuple[int, int] | None:
    """Given `pg_dump --version` output, return (major, minor): `pg_dump (PostgreSQL) 15.4
    (Debian 15.4-1)` -> (15, 4), `pg_restore (PostgreSQL) 17beta1` -> (17, 0); None when it
    names no version."""
    m = re.search(r"PostgreSQL\)\s*(\d+)(?:\.(\d+))?", version_text) or re.search(
        r"(\d+)(?:\.(\d+))?", version_text)
    return (int(m[1]), int(m[2] or 0)) if m else None


def _tool_version(argv: list[str], what: str) -> tuple[int, int] | None:
    result = run_tool([*argv, "--version"], capture=True, check=False, what=what, timeout=30)
    return tool_major(result.stdout) if result.code == 0 else None


def tool_versions(customer_name: str, customer: Customer) -> Iterator[Finding]:
    """Given a customer, yield per server whether the pg_dump and pg_restore that back it up
    and restore it (inside its container with `exec`, else bin_dir or the newest installed;
    and this machine's pg_restore, which reads every dump's table of contents) are at least
    as new as the server: an older pg_dump refuses the server, an older pg_restore cannot
    read the dump's archive."""
    for server_name, server in customer.servers.items():
        conn = Connection(server_name, server, "postgres")
        try:
            number = int(conn.psql("SHOW server_version_num;", timeout=30)[0][0])
        except (PostgresError, ValueError, IndexError) as exc:
            yield Finding("FAIL", f"server {server_name} of {customer_name}: cannot read its "
                                  f"version: {first_line(exc)}")
            continue
        wanted = (number // 10000, number % 100)  # 150004 -> 15.4 (PostgreSQL 10 and later)
        try:
            tools = [("pg_dump", conn.tool("pg_dump")),
                     ("pg_restore", conn.tool("pg_restore"))]
            if server.exec:
                # A restore reads each dump's table of contents with this machine's pg_restore.
                tools.append(("pg_restore here", [local_tool("pg_restore")]))
        except PostgresError as exc:
            yield Finding("FAIL", f"server {server_name} of {customer_name}: {first_line(exc)}")
            continue
        old, seen = [], []
        for label, argv in tools:
            try:
                version = _tool_version(argv, f"{label} --version for {server_name}")
            except PostgresError as exc:
                old.append(f"{label} did not run ({first_line(exc)})")
                continue
            seen.append(f"{label} {'.'.join(map(str, version)) if version else '?'}")
            if version is None or version[0] < wanted[0]:
                old.append(f"{label} {'.'.join(map(str, version)) if version else 'unknown'}")
        server_v = f"PostgreSQL {wanted[0]}" + (f".{wanted[1]}" if wanted[1] else "")
        if old:
            yield Finding("FAIL", f"server {server_name} of {customer_name} is {server_v}, "
                                  f"older client tools: {', '.join(old)}; install "
                                  f"postgresql-client-{wanted[0]} or newer (or set bin_dir)")
        else:
            yield Finding("ok", f"server {server_name} ({server_v}): {', '.join(seen)}")


# --- password sources ----------------------------------------------------------------------


def _sources(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every password source inside a config value, with its dotted path."""
    if isinstance(value, _SOURCES):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _sources(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _sources(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _sources(item, f"{path}[{i}]")


def password_sources(site: Site) -> Iterator[Finding]:
    """Given the site, resolve every password source of customers.yaml once (a source used
    in several places is asked once) and yield ok or FAIL per source, naming where it is
    used and what it is — never its value."""
    places: dict[Any, list[str]] = {}
    for path, source in _sources(site.customers, ""):
        places.setdefault(source, []).append(path)
    for source, where in places.items():
        used = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        try:
            resolved = bool(source.resolve())
        except SecretError as exc:
            yield Finding("FAIL", f"password source for {used}: {exc}")
            continue
        if resolved:
            yield Finding("ok", f"password source for {used}: {source.describe()} resolves")
        else:
            yield Finding("FAIL", f"password source for {used}: {source.describe()} is empty")


# --- free space and chunker parameters ------------------------------------------------------


class TierAFacts(NamedTuple):
    """What doctor learnt from a customer's tier A that the copy tiers are compared with."""

    chunker: str | None
    newest: BackupSet | None


def set_bytes(the_set: BackupSet) -> tuple[int, int]:
    """Given a set, return (bytes its backups read, bytes they added to the repository)."""
    return (sum(int(s.summary.get("total_bytes_processed") or 0) for s in the_set.snapshots),
            sum(int(s.summary.get("data_added") or 0) for s in the_set.snapshots))


def free_space(label: str, free: int | None, the_set: BackupSet | None) -> Iterator[Finding]:
    """Given where a tier writes, its free bytes and the newest set, yield FAIL when the next
    night would not fit even as small as the last one's additions, warn when three such
    nights would not, or when the set's full size would not (a first copy to a new
    repository needs that much), else ok."""
    if free is None or the_set is None:
        return
    raw, added = set_bytes(the_set)
    text = (f"{label}: {human_bytes(free)} free; the last set read {human_bytes(raw)} and "
            f"added {human_bytes(added)}")
    if free < added:
        yield Finding("FAIL", f"{text}: the next backup does not fit; free space or prune")
    elif free < 3 * added:
        # Issue 8: a disk that fills mid-dump fails that night; warn while there is time.
        yield Finding("warn", f"{text}: less than three nights of such additions fit; free "
                              f"space or prune before a backup runs out of it")
    elif free < raw:
        yield Finding("warn", f"{text}: a full copy of it would not fit (a new tier's first "
                              f"copy needs that much)")
    else:
        yield Finding("ok", text)


def disk_free(path: str | Path) -> int | None:
    """Given a folder (or a path inside one that may not exist yet), return the bytes free
    on its file system, or None when no part of it exists."""
    p = Path(path).expanduser()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def chunker(restic: Restic) -> str:
    """Given a repository, return its chunker polynomial (`restic cat config`). Raise the
    mapped ResticError when it cannot be read."""
    data = json.loads(restic.run(["cat", "config", "--no-lock"], what="reading the config"))
    return str(data.get("chunker_polynomial", ""))


def same_chunker(label: str, local: str | None, restic: Restic) -> Iterator[Finding]:
    """Given a copy tier's repository and tier A's chunker polynomial, yield ok, or FAIL when
    they differ: then deduplication does not survive `restic copy` (every copy stores the
    data again)."""
    if local is None:
        return
    try:
        theirs = chunker(restic)
    except RepositoryMissing:
        yield Finding("ok", f"{label}: no repository yet (the next copy creates it with tier "
                            f"A's chunker parameters)")
        return
    except (ResticError, ValueError) as exc:
        yield Finding("warn", f"{label}: chunker parameters not read ({first_line(exc)})")
        return
    if theirs == local:
        yield Finding("ok", f"{label}: same chunker parameters as tier A")
    else:
        yield Finding("FAIL", f"{label}: chunker parameters differ from tier A's, so every "
                              f"copy stores the data again; move that repository away and "
                              f"the next copy re-creates it with --copy-chunker-params")
