"""postgres/table.py without a server: which table `--table` names, which archive entries
make up one table, and the plan's words."""

from __future__ import annotations

import pytest

from axe_pipelines.postgres.client import PostgresError
from axe_pipelines.postgres.restore import parse_toc
from axe_pipelines.postgres.table import (
    TablePlan,
    find_table,
    parse_dependencies,
    table_entries,
)

TOC = """\
10; 1259 1 TABLE public journal_line postgres
11; 1259 2 SEQUENCE public journal_line_id_seq postgres
12; 0 0 SEQUENCE OWNED BY public journal_line_id_seq postgres
13; 2604 3 DEFAULT public journal_line id postgres
14; 1259 4 TABLE public note postgres
15; 1259 5 TABLE axec journal_line postgres
16; 1259 6 VIEW public big_lines postgres
20; 0 7 TABLE DATA public journal_line postgres
21; 0 0 SEQUENCE SET public journal_line_id_seq postgres
22; 0 8 TABLE DATA public note postgres
30; 2606 9 CONSTRAINT public journal_line journal_line_pkey postgres
31; 1259 10 INDEX public journal_line_posted_idx postgres
32; 2620 11 TRIGGER public journal_line audit postgres
33; 2606 12 FK CONSTRAINT public journal_line journal_line_entity_fkey postgres
34; 2606 13 FK CONSTRAINT public note note_jl_fkey postgres
40; 0 0 COMMENT public TABLE journal_line postgres
41; 0 0 COMMENT public VIEW big_lines postgres
42; 0 0 ACL public TABLE journal_line postgres
"""

DEPS = """\
--
-- TOC entry 10 (class 1259 OID 1)
-- Name: journal_line; Type: TABLE; Schema: public; Owner: postgres
--
CREATE TABLE public.journal_line (id bigint);
-- TOC entry 11 (class 1259 OID 2)
-- Dependencies: 10
-- TOC entry 12 (class 0 OID 0)
-- Dependencies: 11
-- TOC entry 13 (class 2604 OID 3)
-- Dependencies: 10 11
-- TOC entry 14 (class 1259 OID 4)
-- TOC entry 16 (class 1259 OID 6)
-- Dependencies: 10
-- TOC entry 30 (class 2606 OID 9)
-- Dependencies: 10
-- TOC entry 31 (class 1259 OID 10)
-- Dependencies: 10
-- TOC entry 32 (class 2620 OID 11)
-- Dependencies: 10
-- TOC entry 33 (class 2606 OID 12)
-- Dependencies: 10
-- TOC entry 34 (class 2606 OID 13)
-- Dependencies: 14 10 30
-- TOC entry 40 (class 0 OID 0)
-- Dependencies: 10
-- TOC entry 41 (class 0 OID 0)
-- Dependencies: 16
-- TOC entry 42 (class 0 OID 0)
-- Dependencies: 10
"""


def test_find_table():
    entries = parse_toc(TOC)
    assert find_table(entries, "note", "w").dump_id == 14
    assert find_table(entries, "public.journal_line", "w").dump_id == 10
    assert find_table(entries, '"axec"."journal_line"', "w").dump_id == 15
    with pytest.raises(PostgresError, match="'journal_line' is ambiguous .*say schema.table"):
        find_table(entries, "journal_line", "w")
    with pytest.raises(PostgresError, match=r"w: no table 'ghost' in the dump \(tables: "
                       r"public.journal_line, public.note, axec.journal_line\); nothing"):
        find_table(entries, "ghost", "w")


def test_parse_dependencies():
    deps = parse_dependencies(DEPS)
    assert deps[10] == set() and deps[13] == {10, 11} and deps[34] == {14, 10, 30}
    assert deps[14] == set()


def test_table_entries_are_its_own_and_the_dependents_of_others():
    entries = parse_toc(TOC)
    mine, others = table_entries(entries, parse_dependencies(DEPS), entries[0])
    assert [e.dump_id for e in mine] == [10, 11, 12, 13, 20, 21, 30, 31, 32, 33, 40, 42]
    # note's foreign key to it and the view on it belong to other objects; so does the
    # view's comment.
    assert [e.dump_id for e in others] == [16, 34, 41]


def test_plan_words():
    live = TablePlan("public.journal_line", '"public"."journal_line"', True, [],
                     "index journal_line_posted_idx")
    assert live.describe().startswith("replace the rows of public.journal_line inside one "
                                      "transaction")
    assert live.describe().endswith(", recreating its missing index journal_line_posted_idx")
    assert live.outcome(2000, "abcd1234") == (
        "public.journal_line now holds the 2000 rows of snapshot abcd1234; recreated its "
        "missing index journal_line_posted_idx")
    entries = parse_toc(TOC)
    dropped = TablePlan("public.note", '"public"."note"', False, [entries[4], entries[7]], "")
    assert dropped.describe() == "recreate the dropped table public.note with TABLE, TABLE DATA"
    assert dropped.outcome(50, "abcd1234") == "public.note recreated with 50 rows from " \
                                              "snapshot abcd1234"
