"""Per-item `--as-of` and what tiers B and C copy of an incomplete night (sets.py,
actions/selection.py, copying.py, checks/tier_b.py), on snapshots made up here."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines.actions.selection import RestoreError, member, pick_member
from axe_pipelines.checks.tier_b import set_complete_result
from axe_pipelines.config import parse_config
from axe_pipelines.copying import SetToCopy, with_gaps
from axe_pipelines.names import tier_b_key
from axe_pipelines.restic import Snapshot
from axe_pipelines.sets import group_sets, newest_holding, parse_as_of, sets_holding

KST = ZoneInfo("Asia/Seoul")
CUSTOMER = parse_config({"axe": {
    "servers": {"pg": {"host": "h"}},
    "databases": {"frame": {"server": "pg"}, "hive": {"server": "pg"}},
    "folders": {"files": {"path": "/srv/files"}},
    "tiers": {"local": {"repository": "/r", "password": {"env": "X"}}}}}).customer("axe")


def snap(sid: str, day: int, run: str, kind: str, key: str) -> Snapshot:
    return Snapshot(sid, sid[:8], datetime(2026, 5, day, 3, 0, tzinfo=KST),
                    ("axe-pipelines", "customer=axe", f"run={run}", f"kind={kind}", key),
                    ("/x",), "host")


def nights():
    """The 19th and 20th complete; the 21st: databases and roles failed, the folder made."""
    full = [("roles", "server=pg"), ("pgdump", "database=frame"), ("pgdump", "database=hive"),
            ("files", "folder=files")]
    snaps = [snap(f"{d}{i}aaaaaaaa", d, f"run-{d}", k, t) for d in (19, 20)
             for i, (k, t) in enumerate(full)]
    snaps.append(snap("21-files-aaaa", 21, "run-21", "files", "folder=files"))
    return group_sets(snaps)


def test_as_of_picks_each_items_newest_good_set():
    sets = nights()
    on_21st = parse_as_of("2026-05-21", "Asia/Seoul")
    assert newest_holding(sets, "files", "files", on_21st).run_id == "run-21"
    assert newest_holding(sets, "pgdump", "frame", on_21st).run_id == "run-20"
    assert newest_holding(sets, "pgdump", "frame", parse_as_of("2026-05-18", "Asia/Seoul")) \
        is None
    the_set, found = pick_member(sets, on_21st, "pgdump", "hive", "tier ring of axe")
    assert (the_set.run_id, found.id) == ("run-20", "202aaaaaaaa")
    assert sets_holding(sets, "pgdump", "frame", KST) == "2026-05-20T03:00, 2026-05-19T03:00"
    assert sets_holding(sets, "pgdump", "frame", KST, shown=1) == "2026-05-20T03:00 (and 1 " \
                                                                  "older)"


def test_errors_that_say_pick_another_as_of_list_the_sets_that_work():
    sets = nights()
    with pytest.raises(RestoreError) as info:
        pick_member(sets[2:], parse_as_of("2026-05-21", "Asia/Seoul"), "pgdump", "frame",
                    "tier A of axe")
    assert str(info.value) == ("tier A of axe holds no pgdump snapshot of frame at or before "
                               "2026-05-21 23:59 KST; sets holding one: none; pick one of "
                               "those with --as-of; nothing was changed")
    with pytest.raises(RestoreError) as info:
        pick_member(sets, parse_as_of("2026-05-19T02:00", "Asia/Seoul"), "pgdump", "frame",
                    "tier A of axe")
    assert "sets holding one: 2026-05-20T03:00, 2026-05-19T03:00; pick one" in str(info.value)
    with pytest.raises(RestoreError, match=r"pick another --as-of \(sets holding one: "
                                           r"2026-05-20T03:00, 2026-05-19T03:00\)"):
        member(sets[2], "pgdump", "frame", "tier A of axe", sets)


def test_an_incomplete_night_is_copied_with_the_newest_earlier_snapshots_it_lacks():
    sets = nights()
    newest = with_gaps(CUSTOMER, sets[-1], sets[:-1])
    assert [label for label, _ in newest.missing] == ["roles/pg", "db/frame", "db/hive"]
    assert [(c.label, c.run_id, c.snapshot.id) for c in newest.carried] == [
        ("roles/pg", "run-20", "200aaaaaaaa"), ("db/frame", "run-20", "201aaaaaaaa"),
        ("db/hive", "run-20", "202aaaaaaaa")]
    assert [s.id for s in newest.to_copy] == ["21-files-aaaa", "200aaaaaaaa", "201aaaaaaaa",
                                              "202aaaaaaaa"]
    complete = with_gaps(CUSTOMER, sets[1], sets[:1])
    assert complete.missing == () and complete.to_copy == complete.snapshots


def test_set_complete_is_an_error_naming_the_missing_items():
    sets = nights()
    key = tier_b_key("axe", "realchoice")
    bad = set_complete_result(key, with_gaps(CUSTOMER, sets[-1], []))
    assert not bad.passed and bad.severity.value == "ERROR"
    assert bad.description == ("set run-21 of 2026-05-21 03:00 is incomplete: missing "
                               "roles/pg, db/frame, db/hive; no earlier snapshot of roles/pg, "
                               "db/frame, db/hive")
    carried = set_complete_result(key, with_gaps(CUSTOMER, sets[-1], sets[:-1]))
    assert carried.description.endswith("; copied with it: roles/pg from the set of "
                                         "2026-05-20 03:00, db/frame from the set of 2026-05-20 "
                                         "03:00, db/hive from the set of 2026-05-20 03:00")
    good = set_complete_result(key, SetToCopy(sets[1].run_id, sets[1].time, sets[1].snapshots))
    assert good.passed and good.description == "set run-20 of 2026-05-20 03:00 complete"
