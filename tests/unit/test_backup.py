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


def test_warm_backups_are_started_with_what_the_run_will_ask_for(monkeypatch):
    """warm_start.warm_keys: every streamed item's file name and tags, and the set-meta's, as
    backup.py and set_meta.py will pass them to restic (else no warm one is ever claimed)."""
    import axe_pipelines.set_meta as set_meta
    from axe_pipelines.backup import TAG_TOOL
    from axe_pipelines.warm_start import warm_keys

    items = plan_tier_a(AXE)
    keys = warm_keys("axe", AXE, items, "r1")
    streamed = [i for i in items if i.kind != "files"]
    assert [(k.filename, list(k.tags)) for k in keys[:-1]] == [
        (dump_filename(AXE, i), i.tags("axe", "r1")) for i in streamed]
    asked: list[tuple[str, list[str]]] = []

    def record(_restic, tags, _at, _run_id, _results, in_flight=()):
        asked.append((set_meta.SET_META_FILE, list(tags)))
        return "s1"

    monkeypatch.setattr(set_meta, "write_set_meta", record)
    set_meta.store_set_meta(None, [TAG_TOOL, "customer=axe"], datetime(2026, 5, 20, tzinfo=UTC),
                            "r1", [])
    assert asked == [(keys[-1].filename, list(keys[-1].tags))]
