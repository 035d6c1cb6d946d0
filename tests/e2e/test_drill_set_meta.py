"""The dump-time counts and checksum_tables digests travel with the set (set_meta.py): a
machine rebuilt without its Dagster history still proves the content round trip, from tier A
and from a tier-C copy of the set; retention and `axe snapshots` treat set-meta as no item."""

from __future__ import annotations

from axe_pipelines import cli
from axe_pipelines.actions.drill import DrillOptions, run_drill
from axe_pipelines.backup import local_restic
from axe_pipelines.care.planner import item_label
from axe_pipelines.set_meta import SET_META_KIND
from axe_pipelines.sets import list_sets
from tests.e2e.drill_support import (  # noqa: F401 - work_dir is a fixture
    cold_volume,
    sync_cold,
    work_dir,
    write_config,
)


def _checks(report, name: str, tier: str = "local") -> dict:
    item = next(i for i in report.items if i.name == name)
    attempt = next(a for a in item.attempts if a.tier == tier)
    return {c["check"]: c for c in attempt.checks}


def test_a_lost_dagster_home_still_proves_the_digest_from_the_set(
        tmp_path, server_a, server_b, work_dir, dagster_home, monkeypatch, capsys):  # noqa: F811
    path, config = write_config(
        tmp_path, server_a, server_b, folders={},
        databases={"index": {"server": "index-postgres", "checksum_tables": ["evidence_blob"]}},
        drill={"work_dir": str(work_dir)},
        tiers=cold_volume(tmp_path, monkeypatch))
    assert cli.main(["--config", str(path), "init"]) == 0
    assert cli.main(["--config", str(path), "backup", "--local", "--plain"]) == 0
    sync_cold(config)

    restic = local_restic("axe", config.customer("axe"))
    [the_set] = list_sets(restic, "axe")
    assert [s.tag("kind") for s in the_set.snapshots].count(SET_META_KIND) == 1
    meta = next(s for s in the_set.snapshots if s.tag("kind") == SET_META_KIND)
    assert item_label(meta) == "set-meta/set"  # judged by retention, forgotten with its set

    # The rebuilt machine: an empty Dagster home, so no dump history at all.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "rebuilt_home"))
    report = run_drill(config, "axe", DrillOptions(as_of="latest"))
    checks = _checks(report, "index")
    assert checks["checksum-tables"]["result"] == "ok", checks["checksum-tables"]
    assert "counted in the dump's snapshot" in checks["row-counts"]["detail"]
    assert report.ok

    cold_report = run_drill(config, "axe", DrillOptions(as_of="latest", tier="cold"))
    [item] = cold_report.items
    [attempt] = item.attempts
    assert attempt.ok and attempt.original_id, attempt.reason  # a copy, checked by set-meta
    assert _checks(cold_report, "index", attempt.tier)["checksum-tables"]["result"] == "ok"

    capsys.readouterr()
    assert cli.main(["--config", str(path), "integrity-check", "--customer", "axe",
                     "--target", "index"]) == 0
    out = capsys.readouterr().out
    assert "checksum-tables" in out and "FAILED" not in out

    # axe snapshots lists the set's items; set-meta is none of them.
    from axe_pipelines.actions.snapshots import describe_set
    items = describe_set(config.customer("axe"), the_set).items
    assert "db/index" in items and not [i for i in items if SET_META_KIND in i]
