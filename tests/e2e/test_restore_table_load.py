"""A single table's rows loaded from a dump in one transaction, against a real PostgreSQL
(postgres/table.py with table_load.py): the indexes that can be are dropped and built once
after the rows, coming back with the same definitions; the others (a comment on them, a
foreign key using them, the clustering index) are kept as they are; a dump cut short or a
failing statement leaves the table exactly as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from axe_pipelines.config import Server
from axe_pipelines.postgres.client import Connection, PostgresError
from axe_pipelines.postgres.table import plan_table, restore_table
from axe_pipelines.postgres.table_load import rebuildable_indexes
from axe_pipelines.secrets import EnvSource
from tests.conftest import PG_PASSWORD_ENV

SHAPE_SQL = """
CREATE FUNCTION norm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lower(t) $$;
CREATE INDEX journal_line_memo ON journal_line (norm(memo)) WHERE amount > 10;
CREATE UNIQUE INDEX journal_line_posted ON journal_line (posted_on, id) WITH (fillfactor = 70);
CREATE INDEX journal_line_amount ON journal_line (amount);
COMMENT ON INDEX journal_line_amount IS 'kept: it has a comment';
CREATE INDEX journal_line_clustered ON journal_line (entity_id);
ALTER TABLE journal_line CLUSTER ON journal_line_clustered;
CREATE TABLE note (id serial PRIMARY KEY, jl bigint REFERENCES journal_line(id), body text);
INSERT INTO note(jl, body) SELECT g * 7, 'note ' || g FROM generate_series(1, 20) g;
"""
INDEXES = ("SELECT indexname, indexdef, (quote_ident(schemaname) || '.' || "
           "quote_ident(indexname))::regclass::oid FROM pg_indexes "
           "WHERE tablename = 'journal_line' ORDER BY 1;")


def _conn(cluster, dbname: str) -> Connection:
    return Connection("a", Server(host="127.0.0.1", port=cluster.port, user=cluster.user,
                                  password=EnvSource(env=PG_PASSWORD_ENV),
                                  bin_dir=cluster.bin_dir), dbname)


def _dump(cluster, conn: Connection, out: Path) -> Path:
    subprocess.run([str(cluster.bin_dir / "pg_dump"), *conn.conn_args(), "-Fc", "-Z0",
                    "-f", str(out)], env=conn.env(), check=True)
    return out


def _md5(cluster, db: str) -> str:
    return cluster.psql("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM journal_line t;",
                        dbname=db)[0][0]


@pytest.fixture
def shaped(server_a, scratch_db, tmp_path):
    server_a.psql(SHAPE_SQL, dbname=scratch_db)
    conn = _conn(server_a, scratch_db)
    return conn, _dump(server_a, conn, tmp_path / "db.pgdump")


def test_rebuilt_indexes_come_back_the_same_and_the_others_are_left_alone(
        server_a, scratch_db, shaped, tmp_path):
    conn, dump = shaped
    original = _md5(server_a, scratch_db)
    before = {name: (d, oid) for name, d, oid in server_a.psql(INDEXES, dbname=scratch_db)}
    rebuilt = {r.name for r in rebuildable_indexes(conn, "public.journal_line")}
    # The primary key is used by note's foreign key; one index has a comment; one clusters.
    assert rebuilt == {"public.journal_line_entity", "public.journal_line_memo",
                       "public.journal_line_posted"}
    server_a.psql("DELETE FROM journal_line WHERE id > 500 AND id NOT IN (SELECT jl FROM note);"
                  "UPDATE journal_line SET memo = 'corrupt' WHERE id < 50;", dbname=scratch_db)
    plan = plan_table(conn, dump, "journal_line", where="t")
    assert restore_table(conn, dump, plan, workdir=tmp_path, lock_timeout=5, where="t") == 2000
    assert _md5(server_a, scratch_db) == original
    after = {name: (d, oid) for name, d, oid in server_a.psql(INDEXES, dbname=scratch_db)}
    assert {n: d for n, (d, _) in after.items()} == {n: d for n, (d, _) in before.items()}
    changed = {f"public.{n}" for n in after if after[n][1] != before[n][1]}
    assert changed == rebuilt  # built again; the kept ones are the same objects
    assert server_a.psql("SELECT obj_description('journal_line_amount'::regclass);",
                         dbname=scratch_db)[0][0] == "kept: it has a comment"
    assert server_a.psql("SELECT indisclustered FROM pg_index WHERE indexrelid = "
                         "'journal_line_clustered'::regclass;", dbname=scratch_db)[0][0] == "t"
    assert server_a.psql("SELECT indisunique FROM pg_index WHERE indexrelid = "
                         "'journal_line_posted'::regclass;", dbname=scratch_db)[0][0] == "t"


def test_a_dump_cut_short_leaves_the_table_and_its_indexes_unchanged(
        server_a, scratch_db, shaped, tmp_path):
    conn, dump = shaped
    plan = plan_table(conn, dump, "journal_line", where="t")
    server_a.psql("UPDATE journal_line SET memo = 'after the backup' WHERE id < 50;",
                  dbname=scratch_db)
    damaged = _md5(server_a, scratch_db)
    indexes = server_a.psql(INDEXES, dbname=scratch_db)
    cut = tmp_path / "cut.pgdump"
    data = dump.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])  # inside journal_line's data
    with pytest.raises(PostgresError, match="rolled back.*unchanged"):
        restore_table(conn, cut, plan, workdir=tmp_path, lock_timeout=5, where="t")
    assert _md5(server_a, scratch_db) == damaged
    assert server_a.psql(INDEXES, dbname=scratch_db) == indexes


def test_a_failing_guard_rolls_back_the_dropped_indexes_too(server_a, scratch_db, shaped,
                                                            tmp_path):
    conn, dump = shaped
    plan = plan_table(conn, dump, "entity", where="t")
    # A line for an entity the dump lacks: restoring entity would orphan it.
    server_a.psql("INSERT INTO entity(code) VALUES ('axez'); INSERT INTO journal_line("
                  "entity_id, posted_on, amount) SELECT id, '2026-06-01', 5 FROM entity "
                  "WHERE code = 'axez';", dbname=scratch_db)
    indexes = server_a.psql("SELECT indexdef, indexrelid FROM pg_indexes JOIN pg_index ON "
                            "indexrelid = (quote_ident(schemaname) || '.' || "
                            "quote_ident(indexname))::regclass WHERE tablename = 'entity' "
                            "ORDER BY 1;", dbname=scratch_db)
    with pytest.raises(PostgresError, match="journal_line_entity_id_fkey.*unchanged"):
        restore_table(conn, dump, plan, workdir=tmp_path, lock_timeout=5, where="t")
    assert server_a.psql("SELECT count(*) FROM entity;", dbname=scratch_db)[0][0] == "3"
    assert server_a.psql("SELECT indexdef, indexrelid FROM pg_indexes JOIN pg_index ON "
                         "indexrelid = (quote_ident(schemaname) || '.' || "
                         "quote_ident(indexname))::regclass WHERE tablename = 'entity' "
                         "ORDER BY 1;", dbname=scratch_db) == indexes
