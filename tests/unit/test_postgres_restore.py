"""postgres/restore.py without a server: the archive's table of contents and restore names."""

from __future__ import annotations

from datetime import datetime

from axe_pipelines.postgres.restore import parse_toc, stamp

TOC = """;
; Archive created at 2026-05-20 03:00:00 KST
;     dbname: ledger
;     Format: CUSTOM
;
; Selected TOC Entries:
;
5; 2615 16385 SCHEMA - axec postgres
216; 1259 16390 TABLE public journal_line postgres
217; 1259 16389 SEQUENCE public journal_line_id_seq postgres
218; 0 0 SEQUENCE OWNED BY public journal_line_id_seq postgres
219; 1259 16391 TABLE public My Table frame
3372; 0 16397 TABLE DATA public journal_line postgres
3373; 0 0 SEQUENCE SET public journal_line_id_seq postgres
3200; 2606 16400 CONSTRAINT public journal_line journal_line_pkey postgres
3201; 2606 16410 FK CONSTRAINT public note note_jl_fkey postgres
3380; 0 0 COMMENT public TABLE journal_line postgres
3390; 1262 16384 DATABASE - ledger postgres
3391; 0 0 DATABASE PROPERTIES - ledger postgres
4000; 1255 16500 WEIRD THING public x postgres
"""


def test_parse_toc_reads_every_entry_and_skips_comments():
    entries = parse_toc(TOC)
    assert [e.dump_id for e in entries] == [5, 216, 217, 218, 219, 3372, 3373, 3200, 3201,
                                            3380, 3390, 3391, 4000]
    by_id = {e.dump_id: e for e in entries}
    assert (by_id[5].desc, by_id[5].schema, by_id[5].name) == ("SCHEMA", "-", "axec")
    # The longest description wins: TABLE DATA is not TABLE, SEQUENCE SET is not SEQUENCE.
    assert (by_id[3372].desc, by_id[3372].name) == ("TABLE DATA", "journal_line")
    assert by_id[3373].desc == "SEQUENCE SET" and by_id[218].desc == "SEQUENCE OWNED BY"
    assert by_id[219].name == "My Table"  # names may hold spaces
    assert by_id[3200].name == "journal_line journal_line_pkey"  # "<table> <constraint>"
    assert (by_id[3201].desc, by_id[3201].name) == ("FK CONSTRAINT", "note note_jl_fkey")
    assert (by_id[3380].desc, by_id[3380].name) == ("COMMENT", "TABLE journal_line")
    assert by_id[3391].desc == "DATABASE PROPERTIES"
    assert by_id[4000].desc == "WEIRD"  # an unknown one: its first word
    assert by_id[216].line == "216; 1259 16390 TABLE public journal_line postgres"


def test_parse_toc_of_nothing():
    assert parse_toc("") == [] and parse_toc(";\n; only comments\n") == []


def test_stamp():
    assert stamp(datetime(2026, 5, 20, 3, 0, 42)) == "20260520030042"
    assert len(stamp()) == 14
