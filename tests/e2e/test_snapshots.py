"""`axe snapshots`: the sets on a tier as `--as-of` picks them — logical time in the
customer's zone (the process runs in UTC), items, completeness, size — and its JSON."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import yaml

from axe_pipelines.backup import plan_tier_a, run_tier_a
from axe_pipelines.config import load_config
from tests.e2e.test_cli_backup import run_axe

KST = ZoneInfo("Asia/Seoul")


def test_sets_on_tier_a_and_on_a_cold_volume(make_config, tmp_path, restic_bin, monkeypatch):
    from axe_pipelines.cold import find_volumes, sync_volume

    monkeypatch.setenv("AXE_TEST_COLD_PASSWORD", "cold-" + os.urandom(6).hex())
    path, _ = make_config(databases={"hive": {"server": "frame-postgres"}})
    data = yaml.safe_load(path.read_text())
    data["axe"]["tiers"]["cold"] = {"password": {"env": "AXE_TEST_COLD_PASSWORD"},
                                    "mount_glob": str(tmp_path / "vol" / "axe-cold-*"),
                                    "accept_plain_folders": True}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "vol" / "axe-cold-1").mkdir(parents=True)
    config = load_config(path)
    axe = config.customer("axe")
    home = tmp_path / "home"
    assert run_axe(path, home, "init").returncode == 0
    first = datetime(2026, 5, 20, 3, 0, tzinfo=KST)
    run_tier_a("axe", axe, at=first, run_id="run-may20")
    dumps = [i for i in plan_tier_a(axe) if i.kind == "pgdump"]
    run_tier_a("axe", axe, at=first + timedelta(days=1), run_id="run-may21", items=dumps)

    proc = run_axe(path, home, "snapshots", env={"TZ": "UTC"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (f"axe on local: 2 set(s) in {tmp_path / 'repo'}, times in Asia/Seoul")
    assert lines[1].split()[:7] == ["logical", "time", "run", "age", "set", "items", "size"]
    may20, may21 = lines[2].split(), lines[3].split()
    assert may20[:2] == ["2026-05-20", "03:00:00"] and may20[2] == "run-may20"
    assert "complete" in may20 and "files/files" in lines[2] and "db/hive" in lines[2]
    assert may21[:3] == ["2026-05-21", "03:00:00", "run-may21"] and "INCOMPLETE" in may21
    assert "  2026-05-21 03:00: missing roles of server frame-postgres is not in the set" \
        in lines

    proc = run_axe(path, home, "snapshots", "--json")
    assert proc.returncode == 0, proc.stderr
    (listing,) = json.loads(proc.stdout)
    assert set(listing) == {"customer", "tier", "peer", "repository", "timezone", "sets"}
    assert listing["tier"] == "local" and listing["peer"] is None
    old, new = listing["sets"]
    assert set(old) == {"run_id", "time", "age_hours", "complete", "items", "missing",
                        "raw_bytes"}
    assert old["time"] == "2026-05-20T03:00:00+09:00" and old["complete"] is True
    assert old["items"] == ["db/hive", "files/files", "roles/frame-postgres"]
    assert isinstance(old["raw_bytes"], int) and old["raw_bytes"] > 0
    assert isinstance(old["age_hours"], float)
    assert new["complete"] is False and new["items"] == ["db/hive"]
    assert new["missing"] == ["roles of server frame-postgres is not in the set",
                              f"required folder {tmp_path / 'files'} is not in the set"]

    # What --as-of picks on that tier: the same list, the same times.
    (volume,) = find_volumes(axe.tiers.cold)
    # The newest finished set, May 21st's, plus (issue 8) the newest earlier good snapshot of
    # each item it misses: May 20th's roles and folder.
    sync_volume(config, "axe", volume)
    proc = run_axe(path, home, "snapshots", "--tier", "cold", "--json")
    (cold,) = json.loads(proc.stdout)
    assert cold["tier"] == "cold" and cold["repository"] == str(volume.repo_path)
    assert [s["run_id"] for s in cold["sets"]] == ["run-may20", "run-may21"]
    assert cold["sets"][0]["items"] == ["files/files", "roles/frame-postgres"]
    assert cold["sets"][1]["time"] == "2026-05-21T03:00:00+09:00"

    proc = run_axe(path, home, "snapshots", "--tier", "moon")
    assert proc.returncode == 2 and "unknown tier or peer 'moon'" in proc.stderr
