"""postgres/dump.py without a server: counting rows in a dump script, the dump command lines."""

from __future__ import annotations

import pytest

from axe_pipelines.postgres.client import PostgresError
from axe_pipelines.postgres.dump import count_script_rows

SCRIPT = (
    b"--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\n"
    b"CREATE TABLE public.journal_line (id bigint, memo text);\n"
    b"COPY public.journal_line (id, memo) FROM stdin;\n"
    b"1\tfirst\n2\twith a \\\\. inside\n3\t\\.x\n4\tmulti\\nline\n"
    b"\\.\n\n"
    b"COPY public.\"Weird Name\" (x) FROM stdin;\n\\.\n"
    b"COPY axec.employees (id, name) FROM stdin;\n7\tkim\n8\tlee\n\\.\n"
    b"-- COPY public.fake (x) FROM stdin; is only a comment\n"
    b"SELECT pg_catalog.setval('public.journal_line_id_seq', 4, true);\n"
)
EXPECTED = {"public.journal_line": 4, 'public."Weird Name"': 0, "axec.employees": 2}


def blocks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_counts_are_the_same_whatever_the_block_boundaries():
    """Every block size from 1 byte to the whole script puts a boundary at every position
    (inside a COPY line, between `\\` and `.`, inside a table name): the counts never change.
    One test, not one per size: the suite's count is of things proven, not of sizes tried."""
    wrong = {size: got for size in range(1, len(SCRIPT) + 1)
             if (got := count_script_rows(blocks(SCRIPT, size))) != EXPECTED}
    assert not wrong, (f"{len(wrong)} of {len(SCRIPT)} block sizes count differently, first "
                       f"{min(wrong)} byte(s): {wrong[min(wrong)]} instead of {EXPECTED}")


@pytest.mark.parametrize("cut", [b"4\tmulti", b"8\tlee\n", b"7\tkim\n8\tlee\n\\."])
def test_a_script_cut_inside_data_is_truncated(cut):
    end = SCRIPT.index(cut) + len(cut)
    with pytest.raises(PostgresError, match="truncated"):
        count_script_rows(blocks(SCRIPT[:end], 7))


def test_dump_command_lines():
    from axe_pipelines.config import Server
    from axe_pipelines.postgres.client import Connection
    from axe_pipelines.postgres.dump import count_rows_sql, pg_dump_argv, pg_dumpall_argv

    conn = Connection("s", Server(host="h", port=5433, user="u",
                                  exec=["docker", "exec", "-i", "pg"]), "ledger")
    assert pg_dump_argv(conn, snapshot="00000003-1") == [
        "docker", "exec", "-i", "pg", "pg_dump", "-h", "h", "-p", "5433", "-U", "u",
        "-d", "ledger", "--no-password", "-Fc", "-Z0", "--snapshot=00000003-1"]
    assert pg_dump_argv(conn, snapshot=None, fmt="plain")[-1] == "-Fp"
    assert pg_dumpall_argv(conn, globals_only=True)[4:] == [
        "pg_dumpall", "-h", "h", "-p", "5433", "-U", "u", "--no-password", "-l", "ledger",
        "--globals-only"]
    assert count_rows_sql(['public."it\'s"', "axec.t"]) == (
        "SELECT 'public.\"it''s\"', count(*) FROM public.\"it's\"\n"
        "UNION ALL SELECT 'axec.t', count(*) FROM axec.t;")
