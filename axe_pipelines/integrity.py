"""Integrity checks of a restored (or live) database: the built-in row-count round trip, the
named SQL checks of customers.yaml and command checks whose exit status decides.

Every check returns a CheckResult; none raises for a failing check, so a report always holds
the whole table. Used by `axe restore` (after every restore), `axe integrity-check` (against a
throwaway staging server or `--live`) and the last-valid search.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from axe_pipelines.config import Database, IntegrityCommand, IntegrityQuery
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.postgres.dump import count_rows, digest_settings_sql, table_digests

ROW_COUNTS = "row-counts"
CHECKSUM_TABLES = "checksum-tables"
OUTPUT_LIMIT = 4000  # characters of a command's output kept with its result


@dataclass
class CheckResult:
    """One check's outcome. `kind` is builtin, sql or command; `output` holds a command's
    output (trimmed) or the rows a SQL check returned."""

    name: str
    kind: str
    passed: bool
    detail: str
    output: str = ""
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        """Return the result as one row of the check table (check, kind, result, detail,
        seconds)."""
        return {"check": self.name, "kind": self.kind,
                "result": "ok" if self.passed else "FAILED", "detail": self.detail,
                "seconds": round(self.seconds, 2)}


def check_names(database: Database) -> list[str]:
    """Given a database's configuration, return the names of its checks (row-counts first,
    then checksum-tables when it lists any)."""
    digest = [CHECKSUM_TABLES] if database.checksum_tables else []
    return [ROW_COUNTS, *digest, *(c.name for c in database.integrity)]


class DumpHistory(Protocol):
    """Where the row counts tier A took inside a dump's own snapshot are recorded (the
    Dagster layer reads them from the dump's materializations; see resources.py)."""

    def counts_for(self, customer: str, database: str,
                   snapshot_id: str) -> dict[str, int] | None:
        """Given a customer, a database and a dump's snapshot id, return the row counts
        recorded for that dump, or None when there is no such record."""
        ...


class NoHistory:
    """A DumpHistory that knows nothing: the dump's own COPY counts serve."""

    def counts_for(self, customer: str, database: str,
                   snapshot_id: str) -> dict[str, int] | None:
        """Return None: no counts are recorded here."""
        return None


NO_HISTORY = NoHistory()
Recorded = Callable[[], "dict[str, int] | None"]


def recorded_counts_soon(history: DumpHistory, customer_name: str, db_name: str,
                         snapshot_id: str) -> Recorded:
    """Given a history and a dump, start reading its recorded row counts in a thread and
    return the call that waits for them: opening the Dagster instance costs about a second,
    which then overlaps with fetching the dump from restic instead of adding to it. An
    unreadable history counts as none."""
    box: list[dict[str, int] | None] = []

    def read() -> None:
        try:
            box.append(history.counts_for(customer_name, db_name, snapshot_id))
        except Exception:  # noqa: BLE001 - history is optional; an unreadable one is none
            box.append(None)

    worker = threading.Thread(target=read, name=f"counts-{db_name}", daemon=True)
    worker.start()

    def wait() -> dict[str, int] | None:
        worker.join()
        return box[0] if box else None
    return wait


def expected_counts(recorded: Recorded, dump_counts: Callable[[], dict[str, int]],
                    ) -> tuple[dict[str, int], str]:
    """Given the recorded counts (recorded_counts_soon) and a reader of the dump's own COPY
    counts, return (counts to compare a restore with, where they come from): the recorded
    ones when there are any, else the dump's (`dump_counts` reads the whole dump, so it is
    called only then)."""
    got = recorded()
    if got is not None:
        return got, "counted in the dump's snapshot"
    return dump_counts(), "counted in the dump"


def row_count_check(conn: Connection, expected: dict[str, int], *,
                    only: Iterable[str] | None = None,
                    source: str = "counted in the dump") -> CheckResult:
    """Built-in round trip: every table's row count equals the count in the dump (`expected`,
    keyed like `public.journal_line`). `only` limits it to some tables (a table restore)."""
    started = time.monotonic()
    keep = set(only) if only is not None else None
    wanted = {t: n for t, n in expected.items() if keep is None or t in keep}
    try:
        # A table restore counts only its table, not the whole database.
        got = count_rows(conn, list(wanted) if only is not None else None)
    except PostgresError as exc:
        return CheckResult(ROW_COUNTS, "builtin", False, f"cannot count rows: {exc}",
                           seconds=time.monotonic() - started)
    problems = []
    for table, want in sorted(wanted.items()):
        have = got.get(table)
        if have is None:
            problems.append(f"{table}: missing ({want} rows {source})")
        elif have != want:
            problems.append(f"{table}: {have} rows, {want} {source}")
    detail = (f"{len(wanted)} table(s), {sum(wanted.values())} rows as {source}"
              if not problems else "; ".join(problems[:10]))
    return CheckResult(ROW_COUNTS, "builtin", not problems, detail,
                       seconds=time.monotonic() - started)


def recorded_digests(history: object, customer_name: str, db_name: str,
                     snapshot_id: str) -> dict[str, str | None] | None:
    """Given a history (one with `digests_for`, like resources.DagsterDumpHistory) and a
    dump's tier-A snapshot id, return the checksum_tables digests recorded for it, or None
    when the history has none or cannot be read."""
    reader = getattr(history, "digests_for", None)
    if reader is None:
        return None
    try:
        return reader(customer_name, db_name, snapshot_id)
    except Exception:  # noqa: BLE001 - history is optional; an unreadable one is none
        return None


def digest_check(conn: Connection, tables: Sequence[str],
                 recorded: dict[str, str | None] | None) -> CheckResult:
    """Content round trip of `checksum_tables`: each table's digest in the restored copy
    (postgres.dump.table_digests) equals the one taken inside the dump's own snapshot. A
    table without a recorded digest fails: the drill never claims a proof it did not make."""
    started = time.monotonic()
    if recorded is None:
        return CheckResult(CHECKSUM_TABLES, "builtin", False,
                           "no digest was recorded for this dump (dumped before "
                           "checksum_tables named these tables, or its Dagster history is "
                           "gone)", seconds=time.monotonic() - started)
    try:
        got = table_digests(lambda sql: conn.psql(digest_settings_sql(local=False) + sql,
                                                  timeout=3600), tables)
    except PostgresError as exc:
        return CheckResult(CHECKSUM_TABLES, "builtin", False, f"cannot digest: {exc}",
                           seconds=time.monotonic() - started)
    problems = []
    for table in tables:
        want, have = recorded.get(table, ""), got.get(table)
        if table not in recorded:
            problems.append(f"{table}: no digest recorded at dump time")
        elif want is None:
            problems.append(f"{table}: did not exist at dump time")
        elif have != want:
            problems.append(f"{table}: digest {have or 'missing'} after the restore, {want} "
                            f"at dump time")
    detail = ("; ".join(problems) if problems else
              f"{len(tables)} table(s) with the digest taken in the dump's snapshot")
    return CheckResult(CHECKSUM_TABLES, "builtin", not problems, detail,
                       output="; ".join(f"{t}={got.get(t)}" for t in tables),
                       seconds=time.monotonic() - started)


def _normalise(value: Any) -> str:
    # psql's unaligned output: booleans t/f, NULL as the empty string.
    if value is True:
        return "t"
    if value is False:
        return "f"
    if value is None:
        return ""
    return str(value)


def sql_check(conn: Connection, query: IntegrityQuery) -> CheckResult:
    """Runs a named SQL check; passes when it runs and (if `expect` is set) returns exactly
    the expected rows, compared as text in order."""
    started = time.monotonic()
    try:
        rows = conn.psql(query.sql.rstrip().rstrip(";") + ";")
    except PostgresError as exc:
        return CheckResult(query.name, "sql", False, f"query failed: {exc}",
                           seconds=time.monotonic() - started)
    shown = "; ".join(", ".join(r) for r in rows[:20])
    if query.expect is None:
        return CheckResult(query.name, "sql", True, f"{len(rows)} row(s)", output=shown,
                           seconds=time.monotonic() - started)
    want = [[_normalise(v) for v in row] for row in query.expect]
    passed = rows == want
    detail = "rows as expected" if passed else (
        f"got [{shown}], expected [{'; '.join(', '.join(r) for r in want)}]")
    return CheckResult(query.name, "sql", passed, detail, output=shown,
                       seconds=time.monotonic() - started)


PLACEHOLDERS = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER")


def command_argv(command: Sequence[str], env: dict[str, str]) -> list[str]:
    """A command check's argv with `{PGHOST}`, `{PGPORT}`, `{PGDATABASE}`, `{PGUSER}` replaced
    by the checked database's values (for commands that do not read the environment, e.g.
    `docker exec -e PGHOST={PGHOST} …`). Only these exact tokens: other braces (a Node or
    Python snippet) are left alone."""
    out = []
    for arg in command:
        for key in PLACEHOLDERS:
            arg = arg.replace("{" + key + "}", env.get(key, ""))
        out.append(arg)
    return out


def command_check(conn: Connection, check: IntegrityCommand) -> CheckResult:
    """Runs a command check with the database's connection in its environment (and in the
    placeholders of its argv); exit 0 passes. Output (stdout + stderr, trimmed) is kept with
    the result."""
    started = time.monotonic()
    env = conn.env(target=True)
    try:
        proc = subprocess.run(command_argv(check.command, env), env=env, capture_output=True,
                              text=True, timeout=check.timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return CheckResult(check.name, "command", False,
                           f"command {check.command[0]!r} not found",
                           seconds=time.monotonic() - started)
    except subprocess.TimeoutExpired:
        return CheckResult(check.name, "command", False,
                           f"did not finish within {check.timeout:.0f} s; it was stopped",
                           seconds=time.monotonic() - started)
    output = (proc.stdout + proc.stderr).strip()[-OUTPUT_LIMIT:]
    last = output.splitlines()[-1] if output else ""
    detail = ("exit 0" if proc.returncode == 0 else f"exit {proc.returncode}") + (
        f": {last[:200]}" if last else "")
    return CheckResult(check.name, "command", proc.returncode == 0, detail, output=output,
                       seconds=time.monotonic() - started)


def run_checks(conn: Connection, database: Database, *,
               expected_counts: dict[str, int] | None,
               only: Sequence[str] | None = None,
               count_tables: Iterable[str] | None = None,
               sql_only: bool = False,
               commands_only: bool = False,
               counts_source: str = "counted in the dump") -> list[CheckResult]:
    """Runs the built-in row-count check (when `expected_counts` is given) and the database's
    configured checks against `conn`. `only` restricts to those check names; `sql_only` skips
    command checks (`--live`, and a restored copy before its swap: a command may reach the
    live database through an application, not the copy); `commands_only` runs just those
    (after the swap)."""
    results: list[CheckResult] = []
    if commands_only:
        return [command_check(conn, c) for c in database.integrity
                if isinstance(c, IntegrityCommand) and (only is None or c.name in only)]
    if expected_counts is not None and (only is None or ROW_COUNTS in only):
        results.append(row_count_check(conn, expected_counts, only=count_tables,
                                       source=counts_source))
    for check in database.integrity:
        if only is not None and check.name not in only:
            continue
        if isinstance(check, IntegrityQuery):
            results.append(sql_check(conn, check))
        elif not sql_only:
            results.append(command_check(conn, check))
    return results


def format_table(results: Sequence[CheckResult]) -> str:
    """The check table as aligned text lines (what the CLI prints)."""
    if not results:
        return "  (no checks)"
    rows = [r.row() for r in results]
    cols = ["check", "kind", "result", "detail"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols[:-1]}
    lines = ["  " + "  ".join(c.ljust(widths.get(c, 0)) for c in cols).rstrip()]
    for r in rows:
        lines.append("  " + "  ".join(str(r[c]).ljust(widths.get(c, 0)) for c in cols).rstrip())
    return "\n".join(lines)
