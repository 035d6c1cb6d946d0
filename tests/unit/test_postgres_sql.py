"""postgres/sql.py: statements of a pg_dump script and the database's own statements."""

from __future__ import annotations

import re

from axe_pipelines.postgres.sql import database_level_statements, ident_pattern, split_statements

SCRIPT = """--
-- PostgreSQL database dump
--
\\restrict abc
SET statement_timeout = 0;
CREATE DATABASE ledger WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc
    LOCALE = 'C';
ALTER DATABASE ledger OWNER TO frame;
\\connect ledger
COMMENT ON DATABASE ledger IS 'the books; all of them
across lines';
ALTER DATABASE ledger SET work_mem TO '8MB';
ALTER ROLE frame IN DATABASE ledger SET search_path TO 'axec';
ALTER ROLE frame SET statement_timeout TO '1s';
GRANT CONNECT ON DATABASE ledger TO reader;
GRANT SELECT ON TABLE public.t TO reader;
REVOKE ALL ON DATABASE ledger FROM PUBLIC;
CREATE TABLE "semi;colon" (x text DEFAULT 'a;b');
"""


def test_split_statements_respects_quotes_and_skips_comments_and_meta_commands():
    statements = split_statements(SCRIPT)
    assert statements[0] == "SET statement_timeout = 0;"
    assert statements[1].startswith("CREATE DATABASE ledger") and statements[1].endswith(
        "LOCALE = 'C';")
    assert "COMMENT ON DATABASE ledger IS 'the books; all of them\nacross lines';" in statements
    assert statements[-1] == "CREATE TABLE \"semi;colon\" (x text DEFAULT 'a;b');"
    assert not any(s.startswith(("--", "\\")) for s in statements)
    assert split_statements("SELECT 1") == ["SELECT 1"]  # no final semicolon


def test_database_level_statements_are_renamed_and_others_dropped():
    out = database_level_statements(SCRIPT, "ledger", "ledger_restoring_1")
    new = '"ledger_restoring_1"'
    assert out == [
        f"CREATE DATABASE {new} WITH TEMPLATE = template0 ENCODING = 'UTF8' "
        "LOCALE_PROVIDER = libc\n    LOCALE = 'C';",
        f"ALTER DATABASE {new} OWNER TO frame;",
        f"COMMENT ON DATABASE {new} IS 'the books; all of them\nacross lines';",
        f"ALTER DATABASE {new} SET work_mem TO '8MB';",
        f"ALTER ROLE frame IN DATABASE {new} SET search_path TO 'axec';",
        f"GRANT CONNECT ON DATABASE {new} TO reader;",
        f"REVOKE ALL ON DATABASE {new} FROM PUBLIC;",
    ]


def test_quoted_database_names():
    script = 'CREATE DATABASE "My DB" WITH TEMPLATE = template0;\n' \
             'ALTER DATABASE "My DB" OWNER TO x;\nALTER DATABASE "My DBx" OWNER TO y;\n'
    assert database_level_statements(script, "My DB", "new") == [
        'CREATE DATABASE "new" WITH TEMPLATE = template0;', 'ALTER DATABASE "new" OWNER TO x;']
    assert re.fullmatch(ident_pattern("ledger"), '"ledger"')
    assert re.fullmatch(ident_pattern("ledger"), "ledger")
    assert not re.fullmatch(ident_pattern("Ledger"), "Ledger")  # needs quotes as pg_dump writes
