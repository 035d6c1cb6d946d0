"""A damaged pack looks damaged (issue 8 item 5): bytes flipped in the pack holding a dump's
data. restic's next backup reuses the bad blob and says nothing (dedup never reads it back);
the restorable check run on its own (it reads the dump back; a backup run proves what it
writes, not what it reuses), a restore, `axe status` and `axe doctor` name the pack, the repository
and what to run, and the restore's advice (an older set clear of the pack) works."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from axe_pipelines import cli
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.restic import RepositoryDamaged, Restic
from axe_pipelines.sets import list_sets
from tests.conftest import create_sample_databases_named, server_entry

T1 = datetime(2026, 5, 19, 18, 0, tzinfo=UTC)  # 2026-05-20 03:00 in Seoul
T2 = datetime(2026, 5, 20, 18, 0, tzinfo=UTC)


def content(restic: Restic, snapshot_id: str) -> list[str]:
    """The data blobs of the snapshot's one file, in order."""
    tree = json.loads(restic.run(["cat", "snapshot", snapshot_id], what="snapshot"))["tree"]
    return json.loads(restic.run(["cat", "blob", tree], what="tree"))["nodes"][0]["content"]


def flip_bytes_of(restic: Restic, blob: str, root: Path) -> str:
    """Flip bytes inside `blob`, in its pack file (kept as pack.good beside the repository);
    return the pack's id."""
    for index_id in restic.run(["list", "index"], what="index").split():
        index = json.loads(restic.run(["cat", "index", index_id], what="index"))
        for pack in index["packs"]:
            for entry in pack["blobs"]:
                if entry["id"] == blob:
                    path = root / "data" / pack["id"][:2] / pack["id"]
                    data = bytearray(path.read_bytes())
                    middle = entry["offset"] + entry["length"] // 2
                    for i in range(middle, middle + 64):
                        data[i] ^= 0xFF
                    path.chmod(0o644)
                    (root.parent / "pack.good").write_bytes(path.read_bytes())
                    path.write_bytes(bytes(data))
                    return pack["id"]
    raise AssertionError("blob not found in any index")


@pytest.fixture
def big_db(server_a):
    """A database whose dump spans several restic chunks (a few MiB)."""
    name = "t_" + uuid.uuid4().hex[:10]
    create_sample_databases_named(server_a, name, "frame", rows=20000)
    # Random text: content-defined chunk boundaries fall in it whatever the polynomial.
    server_a.psql("CREATE TABLE noise AS SELECT g, md5(random()::text) || md5(random()::text) "
                  "AS t FROM generate_series(1, 60000) g;", dbname=name)
    yield name
    server_a.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
    for (kept,) in server_a.psql(f"SELECT datname FROM pg_database WHERE datname LIKE "
                                 f"'{name}\\_%';"):
        server_a.psql(f'DROP DATABASE IF EXISTS "{kept}" WITH (FORCE);')


@pytest.fixture
def damaged(make_config, big_db, server_a, dagster_home, tmp_path):
    """Two good nights of one database, then the pack of the second night's dump damaged."""
    scratch_db = big_db
    path, config = make_config(
        servers={"frame-postgres": server_entry(server_a, roles=False)},
        databases={"frame": {"server": "frame-postgres", "dbname": scratch_db}}, folders={})
    customer = config.customer("axe")
    restic = local_restic("axe", customer)
    restic.init()
    assert run_tier_a("axe", customer, at=T1, run_id="run-1").ok
    server_a.psql("DELETE FROM journal_line WHERE id % 7 = 0; UPDATE noise SET t = "
                  "md5(t) WHERE g % 5 = 0;", dbname=scratch_db)
    assert run_tier_a("axe", customer, at=T2, run_id="run-2").ok
    first, second = list_sets(restic, "axe")
    # A blob the second night added (not in the first night's dump) and not its first chunk
    # (pg_dump's header holds the dump's time): the next backup deduplicates against it.
    added = [b for b in content(restic, second.member("pgdump", "frame").id)[1:]
             if b not in content(restic, first.member("pgdump", "frame").id)]
    assert added, "the dump must span several chunks"
    pack = flip_bytes_of(restic, added[-1], tmp_path / "repo")
    return path, restic, pack, first, second


def restorable_alone(config_path: Path):
    """Run the `restorable` check of db/frame on its own, as from the UI, on the operator's
    instance; return its evaluation."""
    import dagster as dg

    from axe_pipelines.assets.tier_a import build_tier_a
    from axe_pipelines.backup import plan_tier_a
    from axe_pipelines.config import load_config
    from axe_pipelines.names import PROGRESS_RESOURCE, item_key

    axe = load_config(config_path).customer("axe")
    [dump] = [i for i in plan_tier_a(axe) if i.kind == "pgdump"]
    result = dg.materialize(
        [build_tier_a("axe", axe)], instance=dg.DagsterInstance.get(),
        resources={PROGRESS_RESOURCE: dg.ResourceDefinition.hardcoded_resource(None)},
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(item_key("axe", dump),
                                                            "restorable")),
        raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    return evaluation


def test_damaged_pack_is_named_by_the_check_the_restore_status_and_doctor(damaged, capsys):
    path, restic, pack, first, second = damaged
    axe = ["--config", str(path)]

    # The next backup reuses the damaged blob without reading it (restic deduplicates): what
    # it wrote was proved while writing, and the damage waits for whoever reads the pack.
    assert cli.main([*axe, "backup", "--local", "--plain"]) == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ":restorable:" in ln]
    assert line.endswith(":restorable: ok"), line

    # The restorable check run on its own (from the UI) reads the dump back and names it.
    evaluation = restorable_alone(path)
    assert not evaluation.passed
    line = evaluation.description or ""
    assert f"pack {pack[:8]} of tier A repository of axe" in line
    assert "is damaged (ciphertext verification failed): run `restic check --read-data`" in line
    assert "input file is too short" not in line
    good = first.member("pgdump", "frame")
    assert f"older sets clear of it: --as-of {good.time.isoformat(timespec='minutes')} " \
           f"(snapshot {good.short_id})" in line

    # A restore of the damaged night says the same, and changes nothing.
    assert cli.main([*axe, "restore", "--customer", "axe", "--target", "frame", "--as-of",
                     "2026-05-21"]) == 1
    err = capsys.readouterr().err
    assert f"restore: pack {pack[:8]} of tier A repository of axe" in err
    assert "nothing was changed" in err

    assert cli.main([*axe, "status"]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out and f"pack {pack[:8]} of tier A repository of axe" in out
    assert cli.main([*axe, "doctor"]) == 1
    out = capsys.readouterr().out
    assert any(ln.startswith(f"FAIL pack {pack[:8]} of tier A repository of axe")
               for ln in out.splitlines())

    # The advice works: the older set is clear of the pack.
    assert cli.main([*axe, "restore", "--customer", "axe", "--target", "frame", "--as-of",
                     good.time.isoformat(timespec="minutes")]) == 0
    capsys.readouterr()

    # Repaired (the pack's good bytes back), a full read of the data clears the record.
    repo = path.parent / "repo"
    (repo / "data" / pack[:2] / pack).write_bytes((path.parent / "pack.good").read_bytes())
    assert cli.main([*axe, "check", "--customer", "axe", "--tier", "local",
                     "--read-data"]) == 0
    capsys.readouterr()
    cli.main([*axe, "status"])
    assert "DAMAGED" not in capsys.readouterr().out


def test_restic_damage_words_become_repository_damaged(damaged):
    _, restic, pack, _, second = damaged
    dump = second.member("pgdump", "frame")
    with pytest.raises(RepositoryDamaged) as info, restic.dump(dump.id, dump.paths[0]) as out:
        out.read()
    assert info.value.pack == pack[:8] and info.value.cause == "ciphertext verification failed"
