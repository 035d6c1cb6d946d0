from datetime import UTC, datetime

from axe_pipelines.backup import coverage, run_tier_a


def test_fixture_backup(make_config, restic_bin):
    path, config = make_config()
    from axe_pipelines.backup import local_restic
    c = config.customer("axe")
    local_restic("axe", c).init()
    res = run_tier_a("axe", c, at=datetime.now(UTC).replace(microsecond=0), run_id="x")
    assert res.ok, [r.error for r in res.failed]
    assert coverage(c, res.snapshots) == []
