"""set_meta.py without servers: what the set-meta snapshot holds, and SetMetaHistory asking
Dagster's history first, then the set's set-meta, matching a tier-B/C copy by its original."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from axe_pipelines.backup import Item
from axe_pipelines.restic import Snapshot
from axe_pipelines.set_meta import SetMetaHistory, set_meta_content
from axe_pipelines.sets import BackupSet

AT = datetime(2026, 7, 14, 18, 0, tzinfo=UTC)


@dataclass
class _Result:
    item: Item
    ok: bool
    snapshot_id: str | None
    row_counts: dict[str, int] = field(default_factory=dict)
    table_digests: dict[str, str | None] = field(default_factory=dict)


class _Repo:
    """Answers `restic dump` of the set-meta file; counts the calls."""

    def __init__(self, data: dict):
        self.data, self.dumps = data, 0

    @contextmanager
    def dump(self, snapshot_id: str, path: str):
        self.dumps += 1
        yield io.BytesIO(json.dumps(self.data).encode())


class _History:
    def __init__(self, digests=None):
        self.digests = digests

    def counts_for(self, *_):
        return None

    def digests_for(self, *_):
        return self.digests


def _snap(sid: str, tags: tuple[str, ...], original: str | None = None) -> Snapshot:
    return Snapshot(sid, sid[:8], AT, ("axe-pipelines", "customer=axe", *tags, "run=r1"),
                    ("/x",), "host", original=original)


def test_the_content_holds_each_stored_dump_and_nothing_else():
    results = [_Result(Item("pgdump", "index", "s"), True, "a1", {"t": 3}, {"t": "3:ab"}),
               _Result(Item("pgdump", "frame", "s"), False, None),
               _Result(Item("files", "files"), True, "f1")]
    content = set_meta_content("r1", results)
    assert content == {"version": 1, "run": "r1", "dumps": {
        "index": {"snapshot": "a1", "row_counts": {"t": 3}, "table_digests": {"t": "3:ab"}}}}
    assert set_meta_content("r1", results[1:]) is None  # no dump: no set-meta snapshot


def test_history_first_then_the_sets_set_meta_read_once_and_copies_match_by_original():
    data = {"version": 1, "run": "r1", "dumps": {
        "index": {"snapshot": "a1", "row_counts": {"t": 3}, "table_digests": {"t": "3:ab"}}}}
    # tier B: the copy of dump a1 is b1, of the set-meta b2
    the_set = BackupSet("r1", AT, (_snap("b1", ("kind=pgdump", "database=index"), "a1"),
                                   _snap("b2", ("kind=set-meta",), "a2")))
    repo = _Repo(data)
    history = SetMetaHistory(_History(), repo, [the_set])  # type: ignore[arg-type]
    assert history.digests_for("axe", "index", "a1") == {"t": "3:ab"}
    assert history.counts_for("axe", "index", "a1") == {"t": 3}
    assert repo.dumps == 1
    assert history.digests_for("axe", "index", "zz") is None  # a dump of no known set
    recorded = SetMetaHistory(_History({"t": "from-dagster"}), _Repo(data), [the_set])  # type: ignore[arg-type]
    assert recorded.digests_for("axe", "index", "a1") == {"t": "from-dagster"}


def test_a_dump_still_under_way_is_recorded_without_its_id_and_found_by_its_set():
    done = _Result(Item("pgdump", "index", "s"), True, "a1", {"t": 3})
    streaming = _Result(Item("pgdump", "frame", "s"), False, None, {"j": 7})
    content = set_meta_content("r1", [done], in_flight=[streaming])
    assert content["dumps"]["frame"] == {"snapshot": None, "row_counts": {"j": 7},
                                         "table_digests": {}}
    assert content["dumps"]["index"]["snapshot"] == "a1"
    # The set holds one dump of frame (c9, stored after the set-meta was written): that one.
    the_set = BackupSet("r1", AT, (_snap("c9", ("kind=pgdump", "database=frame")),
                                   _snap("a1", ("kind=pgdump", "database=index")),
                                   _snap("m1", ("kind=set-meta",))))
    history = SetMetaHistory(_History(), _Repo(content), [the_set])  # type: ignore[arg-type]
    assert history.counts_for("axe", "frame", "c9") == {"j": 7}
    assert history.counts_for("axe", "index", "a1") == {"t": 3}


class _Storing:
    """A Restic whose backup_command records what the set-meta snapshot would hold."""

    def __init__(self):
        import threading

        self.stored: list[dict] = []
        self.lock = threading.Lock()

    def backup_command(self, argv, **_kwargs):
        from axe_pipelines.restic import BackupSummary

        with self.lock:
            self.stored.append(json.loads(open(argv[1]).read()))
        return BackupSummary("m" * 64, 10, 10, 0.1)


def test_the_writer_stores_once_the_last_dump_is_counted_beside_it():
    from axe_pipelines.set_meta import SetMetaWriter

    restic = _Storing()
    frame, index = Item("pgdump", "frame", "s"), Item("pgdump", "index", "s")
    writer = SetMetaWriter(restic, ["axe-pipelines"], AT, "r1", [frame, index])  # type: ignore[arg-type]
    first = _Result(index, False, None, {"t": 3})
    writer.counted(first)
    assert restic.stored == []  # frame's counts are not taken yet
    first.ok, first.snapshot_id = True, "a1"
    writer.counted(_Result(frame, False, None, {"j": 7}))  # frame now streams
    snap = writer.finish([])
    assert snap is not None and snap.id == "m" * 64 and "kind=set-meta" in snap.tags
    [content] = restic.stored
    assert {k: v["snapshot"] for k, v in content["dumps"].items()} == {"index": "a1",
                                                                       "frame": None}


def test_the_writer_without_counted_dumps_stores_from_the_results_at_the_end():
    from axe_pipelines.set_meta import SetMetaWriter

    restic = _Storing()
    frame = Item("pgdump", "frame", "s")
    writer = SetMetaWriter(restic, ["axe-pipelines"], AT, "r1", [frame])  # type: ignore[arg-type]
    assert writer.finish([_Result(frame, False, None)]) is None  # failed before counts
    assert restic.stored == []
