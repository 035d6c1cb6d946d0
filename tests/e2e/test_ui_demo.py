"""The README's first command, end to end: `scripts/demo --ui` (python -m axe_pipelines.demo)
on an empty folder runs every tier through `axe` — tier A, tier B to a loopback sshd standing
in for the ring peer, tier C onto a folder as the cold SSD, a restore drill that reports to a
local Slack stand-in — then serves the UI with dagster-webserver and dagster-daemon. What a
newcomer opening it sees: the whole graph A -> B/C, the peer's pushes to us, every schedule and
sensor running, each run under its own job, the first drill. SIGTERM (as Ctrl-C) stops the UI
and every server the demo started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from axe_pipelines.demo_services import listening
from axe_pipelines.names import location_name
from tests.ui_support import ROOT, Dagster, _location_loaded, free_port, wait_for

REPOSITORY = """query($location: String!) { repositoryOrError(repositorySelector: {
  repositoryName: "__repository__", repositoryLocationName: $location}) {
  ... on Repository {
    assetNodes { assetKey { path } }
    schedules { name scheduleState { status } }
    sensors { name sensorState { status } }
    pipelines { name runs { status } } } } }"""
PUSH = """{ assetNodes(assetKeys: [{path: ["peers", "inbound", "from-realchoice"]}]) {
  assetMaterializations(limit: 1) { timestamp } } }"""


def _ports(root: Path) -> list[int]:
    files = [*root.glob("ports/pg-*"), root / "peer" / "port", root / "slack" / "port"]
    return [int(f.read_text()) for f in files]


def test_scripts_demo_shows_every_tier_in_the_ui_and_stops_cleanly(tmp_path: Path):
    root, port = tmp_path / "demo", free_port()
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen([sys.executable, "-m", "axe_pipelines.demo", "--root", str(root),
                             "--ui", "--port", str(port)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"})
    dagster = Dagster(port)
    text = lambda: (tmp_path / "demo.log").read_text(errors="replace")[-6000:]  # noqa: E731
    try:
        def ui_up() -> list[str] | None:
            assert demo.poll() is None, text()
            return _location_loaded(dagster)
        wait_for(ui_up, timeout=600, interval=3, what="the demo's UI", on_timeout=text)
        assert "Demo done" in text() and "scripts/demo --root" in text()
        repo = dagster.graphql(REPOSITORY, {"location": location_name()})["repositoryOrError"]
        keys = {"/".join(n["assetKey"]["path"]) for n in repo["assetNodes"]}
        assert {"axe/dumps/frame", "axe/dumps/index", "axe/roles/frame-postgres",
                "axe/folders/files", "axe/tier_a/nightly_set", "axe/tier_b/realchoice",
                "axe/tier_c/cold_volumes", "axe/drill/restore_drill",
                "peers/inbound/from-realchoice"} <= keys
        for kind in ("schedules", "sensors"):
            states = {s["name"]: s[f"{kind[:-1]}State"]["status"] for s in repo[kind]}
            assert states and set(states.values()) == {"RUNNING"}, states
        runs = {p["name"]: [r["status"] for r in p["runs"]] for p in repo["pipelines"]}
        # Each `axe` step is a run of its job (oldest last); the daemon may add its own (the
        # mount sensor syncs the mounted volume once more).
        for job in ("axe_tier_a", "axe_tier_b", "axe_tier_c", "axe_restore_drill"):
            assert (runs.get(job) or [None])[-1] == "SUCCESS", (job, runs.get(job))
        # The daemon's inbound sensor records the peer's push to us.
        wait_for(lambda: dagster.graphql(PUSH)["assetNodes"][0]["assetMaterializations"]
                 or None, timeout=120, interval=3, what="the peer's push to be recorded")
        posts = [json.loads(line) for line in
                 (root / "slack" / "posts.jsonl").read_text().splitlines()]
        assert any("drill" in json.dumps(p["body"]).lower() for p in posts)
        servers = _ports(root)
        assert all(listening(p) for p in servers)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
        try:
            code = demo.wait(120)
        finally:
            try:
                os.killpg(demo.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            log.close()
    assert code == 0, text()
    assert not [p for p in [port, *_ports(root)] if listening(p)], "left running"
