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
