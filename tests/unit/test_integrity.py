"""integrity.py without a server: where the expected counts come from (and that a broken
history counts as none), command placeholders, the check table."""

from __future__ import annotations

import threading

from axe_pipelines.config import parse_config
from axe_pipelines.integrity import (
    NO_HISTORY,
    CheckResult,
    check_names,
    command_argv,
    expected_counts,
    format_table,
    recorded_counts_soon,
)


class History:
    def __init__(self, counts=None, error: Exception | None = None):
        self.counts, self.error = counts, error
        self.asked: list[tuple[str, str, str]] = []
        self.thread = ""

    def counts_for(self, customer, database, snapshot_id):
        self.asked.append((customer, database, snapshot_id))
        self.thread = threading.current_thread().name
        if self.error:
            raise self.error
        return self.counts


def test_recorded_counts_decide_and_the_dump_is_not_read():
    history = History({"public.t": 3})
    recorded = recorded_counts_soon(history, "axe", "ledger", "snap1")

    def never() -> dict[str, int]:
        raise AssertionError("the dump was read although counts were recorded")
    assert expected_counts(recorded, never) == ({"public.t": 3}, "counted in the dump's snapshot")
    assert history.asked == [("axe", "ledger", "snap1")]
    assert history.thread == "counts-ledger"  # read beside the fetch, not before it


def test_no_or_broken_history_falls_back_to_the_dump():
    for history in (NO_HISTORY, History(None), History(error=RuntimeError("sqlite locked"))):
        recorded = recorded_counts_soon(history, "axe", "ledger", "snap1")
        assert expected_counts(recorded, lambda: {"public.t": 4}) == (
            {"public.t": 4}, "counted in the dump")


def test_command_argv_fills_only_the_pg_placeholders():
    env = {"PGHOST": "127.0.0.1", "PGPORT": "6543", "PGDATABASE": "ledger_x", "PGUSER": "pg"}
    assert command_argv(["check", "{PGDATABASE}@{PGHOST}:{PGPORT}", "{PrismaClient}",
                         "-U{PGUSER}"], env) == ["check", "ledger_x@127.0.0.1:6543",
                                                 "{PrismaClient}", "-Upg"]
    assert command_argv(["x", "{PGHOST}"], {}) == ["x", ""]


def test_check_names_and_table():
    site = parse_config({"axe": {
        "tiers": {"local": {"repository": "/nonexistent/repo", "password": {"env": "X"}}},
        "servers": {"s": {}}, "databases": {"ledger": {
        "server": "s", "integrity": [{"name": "entities", "sql": "SELECT 1"},
                                     {"name": "cli", "command": ["true"]}]}}}})
    db = site.customer("axe").databases["ledger"]
    assert check_names(db) == ["row-counts", "entities", "cli"]
    table = format_table([CheckResult("row-counts", "builtin", True, "2 table(s)"),
                          CheckResult("cli", "command", False, "exit 4: bad")])
    assert table.splitlines() == ["  check       kind     result  detail",
                                  "  row-counts  builtin  ok      2 table(s)",
                                  "  cli         command  FAILED  exit 4: bad"]
    assert format_table([]) == "  (no checks)"
