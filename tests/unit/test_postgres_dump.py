"""postgres.py pieces that need no server: counting rows in a dump script."""

from __future__ import annotations

import pytest

from axe_pipelines.postgres import PostgresError, count_script_rows

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


@pytest.mark.parametrize("size", range(1, len(SCRIPT) + 1))
def test_counts_are_the_same_whatever_the_block_boundaries(size):
    assert count_script_rows(blocks(SCRIPT, size)) == EXPECTED


@pytest.mark.parametrize("cut", [b"4\tmulti", b"8\tlee\n", b"7\tkim\n8\tlee\n\\."])
def test_a_script_cut_inside_data_is_truncated(cut):
    end = SCRIPT.index(cut) + len(cut)
    with pytest.raises(PostgresError, match="truncated"):
        count_script_rows(blocks(SCRIPT[:end], 7))
