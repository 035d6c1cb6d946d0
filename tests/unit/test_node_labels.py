"""Issue 11's asset keys: every node's label (its key's last part) names the thing and no two
nodes share one; customers.yaml whose names would make two nodes look alike is refused; the
keys before the rename are known, so their history stays readable; the code location's name
comes from workspace.yaml."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from axe_pipelines.backup import Item
from axe_pipelines.config import ConfigError, load_config, parse_config
from axe_pipelines.definitions import build_definitions
from axe_pipelines.names import (
    former_keys,
    history_keys,
    inbound_key,
    item_key,
    location_name,
    set_key,
    tier_b_key,
    tier_c_key,
)

HERE = Path(__file__).parent
LOCAL = {"repository": "/r", "password": {"env": "X"}}
COLD = {"password": {"file": "/cold.pw"}}
PEER = {"ring_backup": {"ssh_user": "p", "ssh_fqdn": "p.invalid", "receive_dir_at_peer": "/in/",
                        "receive_dir_at_self": "/srv/peer/in"}}


def _site(**axe: object) -> dict:
    body = {"servers": {"pg": {"host": "/run/pg"}}, "databases": {"frame": {"server": "pg"}},
            "folders": {"files": {"path": "/srv/files"}}, "tiers": {"local": LOCAL}}
    body.update(axe)
    return {"axe": body}


def _problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_every_node_of_the_snapshot_site_has_its_own_label():
    defs = build_definitions(load_config(HERE / "data" / "customers.yaml"))
    graph = defs.get_repository_def().asset_graph
    by_group: dict[str, list[str]] = {}
    for key in graph.get_all_asset_keys():
        group = graph.get(key).group_name
        by_group.setdefault(group.split("_tier_")[0].split("_drill")[0], []).append(
            key.path[-1])
    for owner, labels in by_group.items():
        assert len(labels) == len(set(labels)), (owner, sorted(labels))
    axe_labels = set(by_group["axe"])
    assert {"frame", "hive", "index", "frame-postgres", "frame-postgres-dumpall", "files",
            "cache", "nightly_set", "realchoice", "cold_volumes", "restore_drill"} <= axe_labels
    assert sorted(by_group["peers"]) == ["from-other-peer", "from-realchoice"]


def test_keys_name_the_thing_and_keep_the_lineage_prefixes():
    assert item_key("axe", Item("pgdump", "frame")).path == ["axe", "dumps", "frame"]
    assert item_key("axe", Item("roles", "frame-postgres")).path == [
        "axe", "roles", "frame-postgres"]
    assert item_key("axe", Item("dumpall", "frame-postgres")).path == [
        "axe", "dumpall", "frame-postgres-dumpall"]
    assert item_key("axe", Item("files", "files")).path == ["axe", "folders", "files"]
    assert set_key("axe").path == ["axe", "tier_a", "nightly_set"]
    assert tier_b_key("axe", "realchoice").path == ["axe", "tier_b", "realchoice"]
    assert tier_c_key("axe").path == ["axe", "tier_c", "cold_volumes"]
    assert inbound_key("realchoice").path == ["peers", "inbound", "from-realchoice"]


@pytest.mark.parametrize(("new", "old"), [
    (item_key("axe-b", Item("pgdump", "ledger")), ["axe-b", "db", "ledger", "dump"]),
    (item_key("axe", Item("files", "files")), ["axe", "files", "files"]),
    (item_key("axe", Item("dumpall", "frame-postgres")), ["axe", "dumpall", "frame-postgres"]),
    (set_key("axe"), ["axe", "tier_a", "local"]),
    (tier_c_key("axe"), ["axe", "tier_c", "cold"]),
    (inbound_key("real-choice"), ["peers", "real-choice", "inbound"]),
])
def test_the_keys_before_the_rename_are_known(new: dg.AssetKey, old: list[str]):
    assert former_keys(new) == [dg.AssetKey(old)]
    assert history_keys(new) == [new, dg.AssetKey(old)]


def test_unchanged_keys_have_no_former_key():
    assert former_keys(item_key("axe", Item("roles", "frame-postgres"))) == []
    assert former_keys(tier_b_key("axe", "realchoice")) == []
    assert former_keys(dg.AssetKey(["axe", "drill", "restore_drill"])) == []


def test_a_database_named_like_a_folder_is_refused():
    [line] = _problems(_site(databases={"files": {"server": "pg"}}))
    assert line.startswith("axe: database files and folder files would both show as 'files'")
    assert "rename one of them in customers.yaml" in line


@pytest.mark.parametrize(("change", "says"), [
    ({"databases": {"frame": {"server": "pg"}, "pg": {"server": "pg"}}},
     "roles of server pg and database pg"),
    ({"folders": {"nightly_set": {"path": "/srv/n"}}}, "folder nightly_set and the night's set"),
    ({"databases": {"cold_volumes": {"server": "pg"}},
      "tiers": {"local": LOCAL, "cold": COLD}}, "database cold_volumes and tier C"),
    ({"folders": {"restore_drill": {"path": "/srv/d"}}}, "folder restore_drill and the restore"),
])
def test_other_look_alikes_are_refused(change: dict, says: str):
    assert any(says in line for line in _problems(_site(**change)))


def test_a_peer_named_like_a_database_or_its_pushes_is_refused():
    data = {**_site(databases={"frame": {"server": "pg"}, "realchoice": {"server": "pg"}},
                    tiers={"local": LOCAL, "ring": {}}), "realchoice": PEER}
    [line] = _problems(data)
    assert "database realchoice and tier B copy at realchoice" in line
    data = {**_site(folders={"from-realchoice": {"path": "/srv/x"}},
                    tiers={"local": LOCAL, "ring": {}}), "realchoice": PEER}
    assert "folder from-realchoice and realchoice's pushes to us" in _problems(data)[0]


def test_our_push_and_the_peers_push_to_us_are_told_apart():
    site = parse_config({**_site(tiers={"local": LOCAL, "ring": {}}), "realchoice": PEER})
    defs = build_definitions(site)
    labels = [k.path[-1] for k in defs.get_repository_def().asset_graph.get_all_asset_keys()]
    assert labels.count("realchoice") == 1 and labels.count("from-realchoice") == 1


def test_the_code_location_is_named_in_workspace_yaml(tmp_path, monkeypatch):
    monkeypatch.delenv("AXE_LOCATION_NAME", raising=False)
    assert location_name() == "axe-site"  # the repository's workspace.yaml
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module:\n      module_name: "
                         "axe_pipelines.definitions\n      location_name: axe-frame\n")
    assert location_name(workspace) == "axe-frame"
    assert location_name(tmp_path / "missing.yaml") == "axe-site"
    monkeypatch.setenv("AXE_LOCATION_NAME", "axe-compose")
    assert location_name(workspace) == "axe-compose"
