"""The definitions snapshot: what a fixed customers.yaml (data/customers.yaml) puts into the
code location — asset keys with their groups, checks, jobs with their run tags, schedules,
sensors and pools — compared with the committed expected_definitions.json. A rename shows up
here as a diff, never as a silently moved asset history in the UI.

After an intended change, regenerate the expectation and commit it with the change:

    AXE_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest -n 0 tests/unit/test_definitions.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from axe_pipelines.config import load_config
from axe_pipelines.definitions import build_definitions

HERE = Path(__file__).parent
EXPECTED = HERE / "expected_definitions.json"
REGENERATE = ("AXE_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest -n 0 "
              "tests/unit/test_definitions.py")


def snapshot(defs: dg.Definitions) -> dict[str, list[str]]:
    """Given the code location's definitions, return their names, sorted, as JSON data."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    jobs = [j for j in repo.get_all_jobs() if not j.name.startswith("__")]
    return {
        "assets": sorted(f"{k.to_user_string()} (group {graph.get(k).group_name})"
                         for k in graph.get_all_asset_keys()),
        "checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}"
                         for k in graph.asset_check_keys),
        "jobs": sorted(f"{j.name} {json.dumps(dict(j.tags), sort_keys=True)}" for j in jobs),
        "schedules": sorted(f"{s.name}: {s.cron_schedule} {s.execution_timezone} -> "
                            f"{s.job_name}" for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "pools": sorted({f"{n.name}: {n.definition.pool}" for j in jobs
                         for n in j.graph.node_dict.values()
                         if getattr(n.definition, "pool", None)}),
    }


def test_definitions_match_the_committed_snapshot():
    defs = build_definitions(load_config(HERE / "data" / "customers.yaml"))
    dg.Definitions.validate_loadable(defs)
    got = snapshot(defs)
    if os.environ.get("AXE_UPDATE_SNAPSHOT") == "1":
        EXPECTED.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    expected = json.loads(EXPECTED.read_text())
    assert got == expected, (
        f"the definitions differ from {EXPECTED.name}; if the change is intended, "
        f"regenerate it with `{REGENERATE}` and commit it")
