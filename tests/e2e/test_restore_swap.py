"""The swap of a restored copy for the live database (postgres/restore.swap): the copy's
settings, grants and comment, the terminate and the rename go to the server in one psql
call; a failure anywhere in it renames nothing and lets clients in again. Real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from axe_pipelines.postgres.client import Connection, PostgresError, connection_for
from axe_pipelines.postgres.restore import swap
from tests.e2e.test_restore import _connected_client


@pytest.fixture
def pair(make_config, scratch_db, server_a):
    """The live scratch database and an empty copy beside it; (connection, copy, kept)."""
    _, config = make_config(databases={"ledger": {"server": "frame-postgres",
                                                  "dbname": scratch_db}}, folders={})
    conn = connection_for(config.customer("axe"), "ledger")
    tag = uuid.uuid4().hex[:8]
    copy, kept = f"{scratch_db}_restoring_{tag}", f"{scratch_db}_before_restore_{tag}"
    server_a.psql(f'CREATE DATABASE "{copy}";')
    yield conn, copy, kept
    for name in (copy, kept):
        server_a.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')


def _state(cluster, *names: str) -> dict[str, bool]:
    """Each existing database among `names` -> whether it allows connections."""
    listed = ", ".join(f"'{n}'" for n in names)
    return {n: a == "t" for n, a in cluster.psql(
        f"SELECT datname, datallowconn FROM pg_database WHERE datname IN ({listed});")}


def _counting(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = Connection.psql

    def psql(self, sql, **kw):
        calls.append(sql)
        return real(self, sql, **kw)

    monkeypatch.setattr(Connection, "psql", psql)
    return calls


def test_a_forced_swap_with_its_settings_is_one_psql_call(pair, server_a, scratch_db,
                                                          monkeypatch):
    conn, copy, kept = pair
    client, _ = _connected_client(server_a, scratch_db, "frame-mcp-blue")
    calls = _counting(monkeypatch)
    try:
        swap(conn, copy, kept, force=True,
             before=[f"COMMENT ON DATABASE \"{copy}\" IS 'restored';"])
    finally:
        client.kill()
        client.wait()
    assert len(calls) == 1
    assert _state(server_a, scratch_db, copy, kept) == {scratch_db: True, kept: True}
    assert server_a.psql(f"SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                         f"WHERE datname = '{scratch_db}';") == [["restored"]]
    assert server_a.psql("SELECT count(*) FROM journal_line;", dbname=kept)[0][0] != "0"


@pytest.mark.parametrize("fault", ["kept name taken", "a setting fails"])
def test_a_failing_swap_renames_nothing_and_lets_clients_in(pair, server_a, scratch_db,
                                                            fault):
    conn, copy, kept = pair
    before: list[str] = []
    if fault == "kept name taken":  # the rename itself fails, after the terminate
        server_a.psql(f'CREATE DATABASE "{kept}";')
    else:
        before = [f'ALTER DATABASE "{copy}" SET no_such_setting = 1;']
    rows = server_a.psql("SELECT count(*) FROM journal_line;", dbname=scratch_db)
    with pytest.raises(PostgresError):
        swap(conn, copy, kept, force=True, before=before)
    state = _state(server_a, scratch_db, copy, kept)
    assert state[scratch_db] and state[copy]  # both under their names, clients let in
    assert server_a.psql("SELECT count(*) FROM journal_line;", dbname=scratch_db) == rows


def test_a_client_connected_during_the_restore_refuses_the_swap(pair, server_a, scratch_db,
                                                                monkeypatch):
    conn, copy, kept = pair
    client, _ = _connected_client(server_a, scratch_db, "frame-mcp-blue")
    calls = _counting(monkeypatch)
    try:
        with pytest.raises(PostgresError, match=r"1 client\(s\) connected during the "
                                                r"restore \(frame-mcp-blue\); rerun with --force"):
            swap(conn, copy, kept, force=False)
    finally:
        client.kill()
        client.wait()
    assert len(calls) == 1
    assert _state(server_a, scratch_db, copy, kept) == {scratch_db: True, copy: True}
