"""Reading the SQL scripts pg_dump and pg_dumpall write: statements, and the statements about
a database itself (its encoding, owner, settings, grants, comment)."""

from __future__ import annotations

import re

from axe_pipelines.postgres.client import quote_ident


def split_statements(script: str) -> list[str]:
    """Given a pg_dump/pg_dumpall script, return its SQL statements, one string each
    (comments, blank lines and psql meta-commands dropped). Quotes are respected, so a `;` or
    a newline inside a string literal or quoted identifier does not end a statement."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for line in script.splitlines():
        if quote is None and not current and (not line.strip() or line.startswith(("--", "\\"))):
            continue
        current.append(line)
        for ch in line:
            if quote is None and ch in "'\"":
                quote = ch
            elif ch == quote:
                quote = None
        if quote is None and line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    if current:
        statements.append("\n".join(current).strip())
    return statements


def ident_pattern(name: str) -> str:
    """Given an identifier, return a regex matching it as pg_dump writes it (bare when it
    can be, else quoted)."""
    quoted = re.escape(quote_ident(name))
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return f"(?:{quoted}|{re.escape(name)})"
    return quoted


_DB_LEVEL = re.compile(r"^(CREATE DATABASE|ALTER DATABASE|COMMENT ON DATABASE|GRANT|REVOKE|"
                       r"ALTER ROLE)\b")


def database_level_statements(script: str, old: str, new: str) -> list[str]:
    """Given pg_dump/pg_restore `-C` output for database `old`, return the statements about the
    database itself (CREATE with encoding and locale, owner, ALTER DATABASE … SET and
    CONNECTION LIMIT, ALTER ROLE … IN DATABASE … SET, COMMENT, GRANT/REVOKE ON DATABASE),
    renamed to database `new`."""
    ident = ident_pattern(old)
    target = quote_ident(new)
    out = []
    for stmt in split_statements(script):
        if not _DB_LEVEL.match(stmt):
            continue
        if stmt.startswith(("GRANT", "REVOKE", "ALTER ROLE")) and not re.search(
                rf"\bDATABASE {ident}(?=[\s;])", stmt):
            continue  # a grant on something else
        renamed, n = re.subn(rf"(\bDATABASE ){ident}(?=[\s;])", lambda m: m.group(1) + target,
                             stmt, count=1)
        if n:
            out.append(renamed)
    return out
