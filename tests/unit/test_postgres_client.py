"""postgres/client.py without a server: quoting, error lines, the libpq environment, the
connection's arguments, and run_tool on small stand-in commands."""

from __future__ import annotations

import sys

import pytest

from axe_pipelines.config import Server, parse_config
from axe_pipelines.postgres.client import (
    Connection,
    PostgresError,
    connection_for,
    first_error,
    first_line,
    quote_ident,
    quote_literal,
    run_tool,
    server_connection,
)


def test_quoting():
    assert quote_ident("journal_line") == '"journal_line"'
    assert quote_ident('We"ird') == '"We""ird"'
    assert quote_literal("it's") == "'it''s'"
    assert quote_literal("") == "''"


def test_first_error_prefers_the_error_line_and_drops_the_tool_prefix():
    stderr = ("WARNING:  something harmless\n"
              "psql:<stdin>:1: ERROR:  relation \"x\" does not exist\n")
    assert first_error(stderr) == 'psql:<stdin>:1: ERROR:  relation "x" does not exist'
    assert first_error("pg_restore: error: unsupported version (1.99) in file header\n") == \
        "unsupported version (1.99) in file header"
    assert first_error("psql: error: connection to server failed\n") == \
        "connection to server failed"
    assert first_error("\n  \n") == "no message"
    assert first_error("just a line\n") == "just a line"


def test_first_line():
    assert first_line(PostgresError("one\ntwo")) == "one"
    assert first_line(PostgresError()) == "PostgresError"


def _server(**kw: object) -> Server:
    return Server.model_validate({"host": "db.example", "port": 6543, "user": "frame", **kw})


def test_conn_args_and_exec_prefix():
    conn = Connection("frame-postgres", _server(), "frame")
    assert conn.conn_args() == ["-h", "db.example", "-p", "6543", "-U", "frame", "-d", "frame"]
    assert conn.conn_args(with_db=False)[-2:] == ["-U", "frame"]
    assert conn.where == "frame-postgres (db.example:6543)"
    boxed = Connection("frame-postgres", _server(exec=["docker", "exec", "-i", "pg"]), "frame")
    assert boxed.tool("psql") == ["docker", "exec", "-i", "pg", "psql"]
    assert boxed.where.startswith("frame-postgres (via docker exec -i")
    assert conn.admin().dbname == "postgres" and conn.with_db("x").dbname == "x"


def test_libpq_env(monkeypatch):
    monkeypatch.setenv("AXE_UNIT_PG_PW", "s3cret")
    monkeypatch.setenv("PGPASSWORD", "someone-elses")
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    with_pw = Connection("a", _server(password={"env": "AXE_UNIT_PG_PW"}), "frame")
    assert with_pw.libpq_env() == {"PGPASSWORD": "s3cret", "PGCONNECT_TIMEOUT": "10"}
    assert with_pw.libpq_env(target=True) == {
        "PGPASSWORD": "s3cret", "PGCONNECT_TIMEOUT": "10", "PGHOST": "db.example",
        "PGPORT": "6543", "PGDATABASE": "frame", "PGUSER": "frame"}
    # A server without a password never gets an inherited one.
    without = Connection("b", _server(), "frame")
    assert "PGPASSWORD" not in without.env()
    assert without.env()["PATH"]
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "3")
    assert without.libpq_env() == {"PGCONNECT_TIMEOUT": "3"}


def test_a_failing_password_source_is_a_postgres_error(monkeypatch):
    monkeypatch.delenv("AXE_UNIT_PG_MISSING", raising=False)
    conn = Connection("a", _server(password={"env": "AXE_UNIT_PG_MISSING"}), "frame")
    with pytest.raises(PostgresError, match="a .*password source failed"):
        conn.env()


def test_connection_for_and_server_connection():
    site = parse_config({"axe": {
        "tiers": {"local": {"repository": "/nonexistent/repo",
                            "password": {"env": "AXE_UNIT_PW"}}},
        "servers": {"frame-postgres": {"port": 5432}, "index-postgres": {"port": 5433}},
        "databases": {"frame": {"server": "frame-postgres", "dbname": "frame_prod"},
                      "index": {"server": "index-postgres"}}}})
    customer = site.customer("axe")
    conn = connection_for(customer, "frame")
    assert (conn.server_name, conn.dbname, conn.server.port) == ("frame-postgres",
                                                                 "frame_prod", 5432)
    assert server_connection(customer, "index-postgres").dbname == "index"


PY = sys.executable


def test_run_tool_input_capture_and_stderr_lines():
    lines: list[str] = []
    result = run_tool([PY, "-c", "import sys; d = sys.stdin.read(); print(d.upper()); "
                       "print('note 1', file=sys.stderr); print('note 2', file=sys.stderr)"],
                      input="hello", capture=True, on_line=lines.append, what="t")
    assert (result.code, result.stdout.strip()) == (0, "HELLO")
    assert lines == ["note 1", "note 2"]


def test_run_tool_failures_name_what_failed(tmp_path):
    with pytest.raises(PostgresError, match=r"^restore into x: boom$"):
        run_tool([PY, "-c", "import sys; print('pg_restore: error: boom', file=sys.stderr); "
                  "sys.exit(1)"], what="restore into x")
    assert run_tool([PY, "-c", "raise SystemExit(3)"], check=False, what="t").code == 3
    with pytest.raises(PostgresError, match=r"python.* was killed \(SIGKILL\)"):
        run_tool([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                 what="t")
    with pytest.raises(PostgresError, match="t: did not finish within 0 s"):
        run_tool([PY, "-c", "import time; time.sleep(30)"], timeout=0.2, what="t")
    with pytest.raises(PostgresError, match="not found"):
        run_tool([str(tmp_path / "no-such-tool")], what="t")


def test_run_tool_reads_a_file_as_stdin_and_drains_unwanted_stdout(tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("x" * 300_000)
    # 300 kB on stdout is more than a pipe holds: not reading it would hang the tool.
    with open(data, "rb") as fh:
        result = run_tool([PY, "-c", "import sys; sys.stdout.write(sys.stdin.read())"],
                          stdin=fh, what="t")
    assert result.code == 0 and result.stdout == ""
