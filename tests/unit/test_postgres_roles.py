"""postgres/roles.py: only the missing roles of a globals dump, passwords of existing ones
left alone."""

from __future__ import annotations

from axe_pipelines.postgres.roles import missing_roles_script, unquote_ident

GLOBALS = '''--
-- PostgreSQL database cluster dump
--
SET default_transaction_read_only = off;
CREATE ROLE frame;
ALTER ROLE frame WITH NOSUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:old';
CREATE ROLE "Odd ""Role""";
ALTER ROLE "Odd ""Role""" WITH LOGIN;
COMMENT ON ROLE "Odd ""Role""" IS 'an odd one';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER PASSWORD 'SCRAM-SHA-256$4096:keep';
GRANT frame TO "Odd ""Role""" GRANTED BY postgres;
GRANT postgres TO postgres;
CREATE TABLESPACE fast OWNER postgres LOCATION '/ssd';
'''


def test_only_missing_roles_and_their_memberships():
    script, missing, present = missing_roles_script(GLOBALS, {"postgres", "frame"})
    assert missing == ['Odd "Role"']
    assert present == ["frame", "postgres"]
    assert "PASSWORD 'SCRAM-SHA-256$4096:keep'" not in script  # an existing role's password
    assert "ALTER ROLE frame" not in script
    assert 'CREATE ROLE "Odd ""Role""";' in script
    assert "COMMENT ON ROLE" in script and 'GRANT frame TO "Odd ""Role""" ' in script
    assert "GRANT postgres TO postgres" not in script
    assert "TABLESPACE" not in script  # needs its folder: left to the operator
    assert script.startswith("SET default_transaction_read_only = off;")


def test_nothing_missing():
    script, missing, present = missing_roles_script(GLOBALS, {"postgres", "frame",
                                                              'Odd "Role"'})
    assert missing == [] and len(present) == 3
    assert script.strip() == "SET default_transaction_read_only = off;"


def test_unquote_ident():
    assert unquote_ident('"Odd ""Role"""') == 'Odd "Role"'
    assert unquote_ident("frame") == "frame"
