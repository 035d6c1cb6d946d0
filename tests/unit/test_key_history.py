"""History recorded before issue 11's key rename stays readable: a dump's row counts (the JSON
mapping then, one table now) under `<customer>/db/<database>/dump`, and the cold syncs under
`<customer>/tier_c/cold` that volumes_current judges — on a real (ephemeral) instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from axe_pipelines.assets.metadata import row_count_table
from axe_pipelines.backup import Item
from axe_pipelines.checks.tier_c import build_volumes_current_check
from axe_pipelines.config_tiers import ColdTier
from axe_pipelines.names import item_key, tier_c_key
from axe_pipelines.resources import DagsterDumpHistory

OLD_DUMP = dg.AssetKey(["axe", "db", "frame", "dump"])


def test_row_counts_recorded_under_the_old_key_are_found():
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(OLD_DUMP, metadata={
        "snapshot_id": "old" * 8, "row_counts": dg.MetadataValue.json({"public.entity": 2})}))
    instance.report_runless_asset_event(dg.AssetMaterialization(
        item_key("axe", Item("pgdump", "frame")), metadata={
            "snapshot_id": "new" * 8, "row_counts": row_count_table({"public.entity": 3})}))
    history = DagsterDumpHistory(instance=instance)
    assert history.counts_for("axe", "frame", "old" * 8) == {"public.entity": 2}
    assert history.counts_for("axe", "frame", "new" * 8) == {"public.entity": 3}
    assert history.counts_for("axe", "frame", "gone" * 6) is None


def test_cold_syncs_recorded_under_the_old_key_still_count():
    instance = dg.DagsterInstance.ephemeral()
    now = datetime.now(UTC)
    for key, number, days in ((dg.AssetKey(["axe", "tier_c", "cold"]), 1, 30),
                              (tier_c_key("axe"), 2, 1)):
        instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata={
            "synced_volumes": dg.MetadataValue.json(
                {str(number): (now - timedelta(days=days)).isoformat()})}))
    cold = ColdTier.model_validate({"password": {"file": "/cold.pw"}, "volumes": 2,
                                    "rotation_start_year": 2000})
    check = build_volumes_current_check("axe", cold, "Asia/Seoul")
    result = check(dg.build_asset_check_context(instance=instance))
    assert result.passed, result.description
    seen = result.metadata["last_sync_by_volume"].value
    assert set(seen) == {"1", "2"} and seen["1"].endswith("+09:00")  # the customer's zone



def test_status_reads_volume_syncs_recorded_under_the_old_key():
    # `axe status` and doctor read through DagsterOpsHistory: a volume synced only before
    # the rename must not show as never synced.
    from axe_pipelines.checks.history import DagsterOpsHistory

    instance = dg.DagsterInstance.ephemeral()
    synced = datetime(2026, 5, 19, 9, 0, tzinfo=UTC)
    instance.report_runless_asset_event(dg.AssetMaterialization(
        dg.AssetKey(["axe", "tier_c", "cold"]), metadata={
            "synced_volumes": dg.MetadataValue.json({"1": synced.isoformat()})}))
    history = DagsterOpsHistory(instance=instance)
    assert history.volume_syncs("axe") == {1: synced}
    newer = synced + timedelta(days=1)
    instance.report_runless_asset_event(dg.AssetMaterialization(tier_c_key("axe"), metadata={
        "synced_volumes": dg.MetadataValue.json({"2": newer.isoformat()})}))
    assert history.volume_syncs("axe") == {1: synced, 2: newer}
