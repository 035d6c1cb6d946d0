"""Metadata people read (issue 11): sizes beside byte counts, one row-count table (and the
reader of the JSON written before), short snapshot ids, times in the customer's zone — and a
first push to a peer whose receive folder does not exist yet still records its metadata."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from axe_pipelines.assets.metadata import in_zone, row_count_table, row_counts_from, short_id, sizes
from axe_pipelines.assets.tier_b import push_metadata
from axe_pipelines.checks.tier_b import peer_now_result
from axe_pipelines.config import RingBackup
from axe_pipelines.peer import PeerStatus
from axe_pipelines.ring import PushResult
from axe_pipelines.sets import BackupSet


def test_sizes_sit_beside_the_byte_counts():
    meta = sizes(bytes_read=1536, bytes_added=5 << 20)
    assert meta["bytes_read"].value == 1536 and meta["size_read"].value == "1.5 KiB"
    assert meta["size_added"].value == "5.0 MiB"


def test_one_row_count_table_and_the_old_json_read_alike():
    table = row_count_table({"public.b": 2, "public.a": 7})
    assert isinstance(table, dg.TableMetadataValue)
    assert [r.data for r in table.records] == [{"table": "public.a", "rows": 7},
                                               {"table": "public.b", "rows": 2}]
    assert row_counts_from(table) == {"public.a": 7, "public.b": 2}
    assert row_counts_from(dg.MetadataValue.json({"public.a": 7})) == {"public.a": 7}
    assert row_counts_from({"public.a": "7"}) == {"public.a": 7}
    with pytest.raises(ValueError):
        row_counts_from("7 rows")


def test_short_ids_and_times_in_the_customers_zone():
    assert short_id("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08") == \
        "9f86d081"
    assert short_id(None) == ""
    assert in_zone(datetime(2026, 5, 19, 18, tzinfo=UTC), "Asia/Seoul") == \
        "2026-05-20T03:00:00+09:00"


def test_a_first_push_without_the_peers_free_space_records_its_metadata():
    block = RingBackup.model_validate({"ssh_user": "u", "ssh_fqdn": "p.invalid",
                                       "receive_dir_at_peer": "/in/",
                                       "receive_dir_at_self": "/srv/in"})
    result = PushResult(customer="axe", peer="realchoice", host="localhost", run_id="r1",
                        set_time=datetime(2026, 5, 19, 18, tzinfo=UTC), bytes=3 << 20,
                        status=PeerStatus("localhost", False, None, "0.18.1", 0.2))
    meta = push_metadata(result, block, "Asia/Seoul")
    dg.MaterializeResult(metadata=meta)  # every value is one Dagster accepts
    assert meta["peer_free_gib"].value == -1.0 and meta["size_copied"].value == "3.0 MiB"
    assert meta["set_time"] == "2026-05-20T03:00:00+09:00"


def test_the_peer_look_shows_the_sets_time_in_the_customers_zone():
    block = RingBackup.model_validate({"ssh_user": "u", "ssh_fqdn": "p.invalid",
                                       "receive_dir_at_peer": "/in/",
                                       "receive_dir_at_self": "/srv/in"})
    the_set = BackupSet("run-1", datetime(2026, 5, 19, 18, tzinfo=UTC), ())
    result = peer_now_result(dg.AssetKey(["axe", "tier_b", "realchoice"]), block,
                             status=PeerStatus("localhost", False, 1 << 30, None, 0.2),
                             the_set=the_set, at_peer=[], zone="Asia/Seoul")
    assert "holds set run-1 (2026-05-20 03:00 KST)" in result.description
    assert result.metadata["set_time"].value == "2026-05-20T03:00:00+09:00"
