"""Roles: from a server's `pg_dumpall --globals-only`, create only the roles that are missing
(so a fresh server can take the dumps' owners); roles that exist are left exactly as they are,
passwords included."""

from __future__ import annotations

import re

from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    first_error,
    first_line,
    run_tool,
)
from axe_pipelines.postgres.sql import split_statements

_ROLE_NAME = r'("(?:[^"]|"")+"|[^\s;"]+)'
_ROLE_STMT = re.compile(rf"^(?:CREATE|ALTER) ROLE {_ROLE_NAME}|^COMMENT ON ROLE {_ROLE_NAME}")
_GRANT_ROLE = re.compile(rf"^GRANT {_ROLE_NAME} TO {_ROLE_NAME}")


def unquote_ident(name: str) -> str:
    """Given an identifier as SQL writes it (`"a""b"` or `bare`), return the name itself."""
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def missing_roles_script(script: str, existing: set[str]) -> tuple[str, list[str], list[str]]:
    """Given `pg_dumpall --globals-only` output and the roles the server has, return (the
    script that creates only the missing roles — CREATE ROLE, its ALTER ROLE with password
    and settings, comment — and the memberships that involve them, the missing roles, the
    existing roles named in the dump). Statements about roles that exist are dropped:
    replaying `ALTER ROLE … PASSWORD` would reset a password changed since the backup."""
    missing: list[str] = []
    kept_existing: list[str] = []
    out: list[str] = []
    for stmt in split_statements(script):
        m = _ROLE_STMT.match(stmt)
        if m:
            role = unquote_ident(m.group(1) or m.group(2))
            if role in existing:
                if role not in kept_existing:
                    kept_existing.append(role)
                continue
            if stmt.startswith("CREATE ROLE") and role not in missing:
                missing.append(role)
            out.append(stmt)
            continue
        g = _GRANT_ROLE.match(stmt)
        if g:
            if {unquote_ident(g.group(1)), unquote_ident(g.group(2))} & set(missing):
                out.append(stmt)
            continue
        if stmt.startswith("SET "):
            out.append(stmt)
        # Anything else (tablespaces, which need their folders) is left to the operator.
    return "\n".join(out) + "\n", missing, kept_existing


def existing_roles(conn: Connection, *, where: str) -> set[str]:
    """Given a connection to a server, return the names of its roles. Raise PostgresError
    (nothing changed) if the server cannot be reached."""
    try:
        return {r[0] for r in conn.admin().psql("SELECT rolname FROM pg_roles;")}
    except PostgresError as exc:
        raise PostgresError(f"{where}: cannot reach {conn.where}: {first_line(exc)}; "
                            f"nothing was changed") from None


def run_roles_script(conn: Connection, script: str) -> list[str]:
    """Given a server and a roles script (missing_roles_script), run it in the maintenance
    database and return the errors psql reported (empty when all went well). A failing
    statement does not stop the others."""
    admin = conn.admin()
    result = run_tool([*conn.tool("psql"), *admin.conn_args(), "-X", "-q", "--no-password",
                       "-f", "-"], input=script, env=conn.env(), check=False,
                      what=f"{conn.where}: psql")
    errors = [ln for ln in result.stderr.splitlines() if "ERROR" in ln]
    if result.code != 0 and not errors:
        errors = [first_error(result.stderr)]
    return errors
