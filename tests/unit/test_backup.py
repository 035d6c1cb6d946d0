"""backup.py's plan, tags, coverage and failure lines, without servers or restic."""

from __future__ import annotations

from datetime import UTC, datetime

from axe_pipelines.backup import Item, _one_line, coverage, dump_filename, plan_tier_a
from axe_pipelines.config import parse_config
from axe_pipelines.restic import ResticFatal, Snapshot

AXE = parse_config({"axe": {
    "servers": {"frame-postgres": {"dumpall": True}, "index-postgres": {"roles": False},
                "idle-postgres": {}},
    "databases": {"frame": {"server": "frame-postgres"},
                  "index": {"server": "index-postgres", "dbname": "idx", "format": "plain"}},
    "folders": {"files": {"path": "/srv/files"}, "cache": {"path": "/srv/cache",
                                                           "required": False}},
    "tiers": {"local": {"repository": "/r", "password": {"env": "X"}}}}}).customer("axe")


def snap(kind: str, key: str, name: str, *extra: str) -> Snapshot:
    return Snapshot(name, name[:8], datetime(2026, 5, 20, tzinfo=UTC),
                    ("axe-pipelines", f"kind={kind}", f"{key}={name}", *extra), ("/x",), "h")


def test_the_plan_in_its_stable_order():
    assert [i.label for i in plan_tier_a(AXE)] == [
        "roles/frame-postgres", "dumpall/frame-postgres", "db/frame", "db/index", "files/files",
        "files/cache"]  # a server without databases (idle-postgres) has nothing to dump


def test_items_tags_lanes_and_file_names():
    frame = Item("pgdump", "frame", "frame-postgres")
    assert frame.tags("axe", "r1") == ["axe-pipelines", "customer=axe", "kind=pgdump",
                                       "database=frame", "run=r1"]
    assert Item("roles", "frame-postgres", "frame-postgres").tags("axe", "r1")[3] == \
        "server=frame-postgres"
    assert frame.lane == "server:frame-postgres" and Item("files", "files").lane == "folders"
    assert dump_filename(AXE, frame) == "frame.pgdump"
    assert dump_filename(AXE, Item("pgdump", "index", "index-postgres")) == "index.sql"
    assert dump_filename(AXE, Item("dumpall", "frame-postgres", "frame-postgres")) == \
        "frame-postgres.dumpall.sql"


def test_coverage_names_every_missing_item_and_ignores_incomplete_snapshots():
    have = [snap("roles", "server", "frame-postgres"), snap("dumpall", "server", "frame-postgres"),
            snap("pgdump", "database", "frame"),
            snap("files", "folder", "files", "incomplete")]
    assert [g.reason for g in coverage(AXE, have)] == [
        "database idx on index-postgres is not in the set",
        "required folder /srv/files is not in the set"]  # the optional cache is no gap
    have[-1] = snap("files", "folder", "files")
    have.append(snap("pgdump", "database", "index"))
    assert coverage(AXE, have) == []


def test_a_failed_dump_says_pg_dumps_own_reason():
    exc = ResticFatal("tier A repository of axe (/r): backup of frame.pgdump failed: Fatal: "
                      "unable to save snapshot: command failed: exit status 1",
                      detail="subprocess pg_dump: pg_dump: error: Dumping the contents of "
                             'table "blob" failed: PQgetResult() failed.')
    line = _one_line(exc, Item("pgdump", "frame", "frame-postgres"))
    assert line.endswith('(pg_dump for db/frame failed: Dumping the contents of table "blob" '
                         'failed: PQgetResult() failed.)')
    bare = ResticFatal("x: command failed: exit status 1", detail="no tool line")
    assert _one_line(bare, Item("roles", "s", "s")).endswith(
        "(pg_dumpall for roles/s failed; see the server log or run `axe doctor`)")
    assert _one_line(OSError(), Item("files", "f")) == "OSError"
