"""The Dagster UI as an operator sees it, in a real browser: Debian's Chromium driven by
Playwright (from PyPI; no browser download) against `dagster-webserver` + `dagster-daemon` on
a home with one tier-A backup (run by `axe backup --local`), a ring peer, two peers' pushes to
us (one fresh, one 40 h old) and a cold tier. Opens the lineage graph and a dump's page, finds
every asset by its own label and the status and freshness shown, and saves screenshots under
$AXE_TEST_ARTIFACTS (default tests/artifacts/test_ui_browser/). Through GraphQL: the CLI's run
is filed under its job, the inbound sensor's ticks say what they recorded, and the pushes'
freshness counts from the push.

The Dagster UI has no test ids: nodes are found by the CSS-module class prefix of Dagster's
pinned release (`AssetNode_assetName`), and texts by what the page says.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from axe_pipelines.names import location_name
from tests.conftest import PG_PASSWORD_ENV, REPO_PASSWORD_ENV, server_entry
from tests.ui_support import BIN, Dagster, artifacts_dir, running_dagster, wait_for

CHROMIUM = Path("/usr/bin/chromium")
# As root (no sandbox), and quiet: the machine's closed network refuses Chromium's own calls.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1920, "height": 1200}
LINEAGE_VIEWPORT = {"width": 1920, "height": 2800}
NODE_NAME = '[class*="AssetNode_assetName"]'
NODE_LABEL = f"svg foreignObject {NODE_NAME}"
ASSETS = "{ assetNodes { assetKey { path } tags { key value } " \
         "freshnessStatusInfo { freshnessStatus } } }"

try:
    from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - scripts/setup installs it
    sync_playwright = None  # type: ignore[assignment]


def _require_browser() -> None:
    missing = [what for what, ok in (("playwright", sync_playwright is not None),
                                     (str(CHROMIUM), CHROMIUM.exists())) if not ok]
    if missing:
        reason = f"{' and '.join(missing)} missing; run scripts/setup"
        if os.environ.get("CI"):  # CI installs both: a skip there would hide a broken setup
            pytest.fail(reason)
        pytest.skip(reason)


def _peer(root: Path, name: str, pushed_hours_ago: float) -> dict[str, Any]:
    """A ring peer's block whose receive folder holds one push (a snapshot file) that old."""
    snapshots = root / "inbound" / name / "snapshots"
    snapshots.mkdir(parents=True)
    stamp = (datetime.now(UTC) - timedelta(hours=pushed_hours_ago)).timestamp()
    (snapshots / "a1b2c3").write_text("encrypted\n")
    os.utime(snapshots / "a1b2c3", (stamp, stamp))
    return {"ring_backup": {"ssh_user": name, "ssh_fqdn": f"{name}.invalid",
                            "receive_dir_at_peer": f"/srv/peer-backups/{name}/",
                            "receive_dir_at_self": str(root / "inbound" / name)}}


def ui_site(root: Path, server_a: Any) -> Path:
    """Given a folder and server A, write a customers.yaml with two databases, a folder, tier A,
    tier B to realchoice (never pushed: nothing listens there), a cold tier (never synced) and
    two peers pushing to us, realchoice 40 h ago and nearby 1 h ago; return its path."""
    (root / "files" / "uploads").mkdir(parents=True)
    (root / "files" / "uploads" / "a.txt").write_text("contract\n" * 100)
    (root / "cold-password").write_text("cold-not-the-repo-password\n")
    data = {
        "axe": {
            "servers": {"frame-postgres": server_entry(server_a)},
            "databases": {"frame": {"server": "frame-postgres"},
                          "hive": {"server": "frame-postgres"}},
            "folders": {"files": {"path": str(root / "files"), "required": True}},
            "tiers": {"local": {"repository": str(root / "repo"),
                                "password": {"env": REPO_PASSWORD_ENV}},
                      "ring": {"peers": ["realchoice"]},
                      "cold": {"password": {"file": str(root / "cold-password")},
                               "mount_glob": str(root / "Volumes" / "axe-cold-*"),
                               "accept_plain_folders": True}}},
        "realchoice": _peer(root, "realchoice", 40),
        "nearby": _peer(root, "nearby", 1),
    }
    path = root / "customers.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert PG_PASSWORD_ENV in os.environ  # server_entry's password source
    return path


def freshness(node: dict[str, Any]) -> str | None:
    """Given a GraphQL asset node, return its freshness status (HEALTHY, DEGRADED, ...)."""
    return (node["freshnessStatusInfo"] or {}).get("freshnessStatus")


def _judged(dagster: Dagster) -> list[dict[str, Any]] | None:
    nodes = dagster.graphql(ASSETS)["assetNodes"]
    dumps = [n for n in nodes if {"key": "axe/kind", "value": "pgdump"} in n["tags"]]
    pushes = [n for n in nodes if n["assetKey"]["path"][:2] == ["peers", "inbound"]]
    ok = dumps and all(freshness(n) == "HEALTHY" for n in dumps) and len(pushes) == 2 and all(
        freshness(n) in ("HEALTHY", "DEGRADED") for n in pushes)
    return nodes if ok else None


@pytest.fixture(scope="module")
def ui(tmp_path_factory, server_a) -> Iterator[tuple[Dagster, list[dict[str, Any]]]]:
    """A webserver and daemon on an embedded (SQLite) home in which `axe backup --local` has
    recorded one tier-A run; yields the server and its asset nodes once the freshness daemon
    has judged the dumps and the inbound sensor's pushes."""
    _require_browser()
    root = tmp_path_factory.mktemp("ui")
    config = ui_site(root, server_a)
    home = root / "dagster_home"
    env = {**os.environ, "AXE_CONFIG": str(config), "DAGSTER_HOME": str(home)}
    for argv in (["init"], ["backup", "--local", "--plain"]):
        done = subprocess.run([str(BIN / "axe"), *argv], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
    with running_dagster(home, {"AXE_CONFIG": str(config)}, root / "logs") as dagster:
        nodes = wait_for(lambda: _judged(dagster), timeout=180, interval=3,
                         what="the freshness daemon to judge the dumps and the pushes",
                         on_timeout=dagster.logs)
        yield dagster, nodes


@pytest.fixture(scope="module")
def browser(ui) -> Iterator[BrowserContext]:
    """One browser context for the module, past the community modal (see dismiss_community),
    which the first page it opens shows."""
    dagster, _ = ui
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS, timeout=60_000)
        context = chromium.new_context(viewport=VIEWPORT)
        context.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)  # the first page waits for the workspace to load
        first = context.new_page()
        first.goto(f"{dagster.url}/asset-groups")
        dismiss_community(first)
        first.close()
        yield context
        context.close()
        chromium.close()


@pytest.fixture
def page(browser: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = browser.new_page()
    yield page
    # What the page showed last, pass or fail: the first thing to look at when it fails.
    page.screenshot(path=str(artifacts_dir("test_ui_browser") / f"{request.node.name}-end.png"))
    page.close()


def dismiss_community(page: Page) -> bool:
    """Given a page that has just opened the UI, close the "Join the Dagster community" modal
    that Dagster OSS shows a new browser (Skip; remembered in the browser's storage, so later
    pages of the same context do not show it) and return whether it was shown."""
    community = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
    try:
        community.wait_for(state="visible", timeout=15_000)
    except PlaywrightTimeout:
        return False  # a later Dagster may not greet at all
    community.get_by_role("button", name="Skip").click()
    expect(community).to_have_count(0)
    return True


def label_of(node: dict[str, Any]) -> str:
    """Given a GraphQL asset node, return the label the UI draws for it: its key's last part."""
    return node["assetKey"]["path"][-1]


def open_lineage(page: Page, dagster: Dagster, nodes: list[dict[str, Any]]) -> list[str]:
    """Given a page, open the global asset lineage and return the node labels it draws once
    every asset is there. Raise AssertionError if the graph lacks one."""
    # The graph draws only the nodes in view: a tall page holds every group of this site.
    page.set_viewport_size(LINEAGE_VIEWPORT)
    page.goto(f"{dagster.url}/asset-groups")
    # With more than one group the graph opens with every group collapsed; the graph's own
    # settings menu expands them.
    expect(page.locator("svg foreignObject").first).to_be_visible()  # the graph is drawn
    gear = page.get_by_role("button").filter(has=page.locator('[aria-label="settings"]'))
    gear.filter(has_not_text="Settings").click()  # the graph's gear, not the user settings
    expect(page.get_by_role("menuitem").first).to_be_visible()
    expand = page.get_by_role("menuitem", name="Expand all groups")
    if expand.count():  # else this browser context has expanded them already
        expand.click()
    page.keyboard.press("Escape")  # close the menu again, before any screenshot
    expect(page.get_by_role("menuitem")).to_have_count(0)
    graph = page.locator(NODE_LABEL)
    expect(graph).to_have_count(len(nodes))
    drawn = graph.all_inner_texts()
    assert sorted(drawn) == sorted(label_of(n) for n in nodes)
    return drawn


def test_lineage_graph_and_dump_page(page: Page, ui) -> None:
    dagster, nodes = ui
    out = artifacts_dir("test_ui_browser")
    open_lineage(page, dagster, nodes)
    # Every tier-A asset (the backup recorded them all) shows its status "Materialized".
    tier_a = [n for n in nodes if {"key": "axe/tier", "value": "a"} in n["tags"]]
    assert tier_a
    for node in tier_a:
        box = page.locator("svg foreignObject").filter(
            has=page.locator(NODE_NAME, has_text=label_of(node)))
        expect(box.filter(has_text="Materialized").first).to_be_visible()
    expect(page.get_by_role("dialog")).to_have_count(0)  # nothing covers the screenshot
    page.screenshot(path=str(out / "lineage.png"))

    dump = next(n for n in nodes if {"key": "axe/kind", "value": "pgdump"} in n["tags"])
    page.goto(f"{dagster.url}/assets/{'/'.join(dump['assetKey']['path'])}")
    status = page.get_by_text("Latest materialization", exact=True)
    expect(status).to_be_visible()
    expect(page.get_by_text("Freshness policy", exact=True).first).to_be_visible()
    # The freshness daemon's verdict, as the page words it (only freshness says "Passing").
    expect(page.get_by_text("Passing", exact=True).first).to_be_visible()
    # The breadcrumb spells the key's end (Dagster folds a three-part key's first part into
    # "…"): `dumps › frame` — the page says which database's dump it is.
    for part in dump["assetKey"]["path"][-2:]:
        expect(page.get_by_role("link", name=part, exact=True).or_(
            page.get_by_text(part, exact=True)).first).to_be_visible()
    # Sizes people read beside the byte counts, and the one row-count table.
    expect(page.get_by_text("size_read", exact=True)).to_be_visible()
    expect(page.get_by_text("row_counts", exact=True)).to_be_visible()
    expect(page.get_by_text("tables", exact=True)).to_have_count(0)
    expect(page.get_by_role("dialog")).to_have_count(0)
    page.screenshot(path=str(out / "dump.png"))


def test_every_node_has_a_distinct_label(page: Page, ui) -> None:
    """Every database's dump was once labelled "dump": now each node says what it is."""
    dagster, nodes = ui
    drawn = open_lineage(page, dagster, nodes)
    page.screenshot(path=str(artifacts_dir("test_ui_browser") / "labels.png"))
    repeated = sorted({label for label in drawn if drawn.count(label) > 1})
    assert not repeated, f"labels shared by several nodes: {repeated}"
    assert {"frame", "hive", "frame-postgres", "files", "nightly_set", "realchoice",
            "cold_volumes", "restore_drill", "from-realchoice", "from-nearby"} <= set(drawn)


JOB_RUNS = """query($location: String!) { pipelineOrError(params: {pipelineName: "axe_tier_a",
  repositoryName: "__repository__", repositoryLocationName: $location}) {
  __typename ... on Pipeline { runs { runId pipelineName status tags { key value } } } } }"""
EPHEMERAL = """{ runsOrError(filter: {pipelineName: "__ephemeral_asset_job__"}) {
  ... on Runs { results { runId } } } }"""


def test_the_cli_run_is_filed_under_its_job(ui) -> None:
    dagster, _ = ui
    job = dagster.graphql(JOB_RUNS, {"location": location_name()})["pipelineOrError"]
    assert job["__typename"] == "Pipeline", job
    [run] = job["runs"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS" and tags["axe/tier"] == "a" and "axe/repository" in tags
    assert dagster.graphql(EPHEMERAL)["runsOrError"]["results"] == []


TICKS = """query($location: String!, $sensor: String!) { sensorOrError(sensorSelector: {
  repositoryName: "__repository__", repositoryLocationName: $location, sensorName: $sensor}) {
  __typename ... on Sensor { sensorState { ticks(limit: 5) { status skipReason } } } } }"""
PUSHES = """query($path: [String!]!) { assetNodes(assetKeys: [{path: $path}]) {
  freshnessStatusInfo { freshnessStatus }
  assetMaterializations(limit: 1) { timestamp metadataEntries { label } } } }"""


def test_pushes_are_dated_and_judged_from_the_push_and_ticks_say_so(ui) -> None:
    dagster, _ = ui
    for peer, hours, verdict in (("realchoice", 40, "DEGRADED"), ("nearby", 1, "HEALTHY")):
        [node] = dagster.graphql(PUSHES, {"path": ["peers", "inbound", f"from-{peer}"]})[
            "assetNodes"]
        # Found minutes ago by the sensor, recorded at the push's own time: 40 h is stale.
        assert freshness(node) == verdict
        [push] = node["assetMaterializations"]
        age_h = (datetime.now(UTC).timestamp() - int(push["timestamp"]) / 1000) / 3600
        assert abs(age_h - hours) < 0.5, (peer, age_h)
        assert "dagster/last_updated_timestamp" in {m["label"] for m in
                                                    push["metadataEntries"]}
        sensor = dagster.graphql(TICKS, {"location": location_name(),
                                         "sensor": f"peers_{peer}_inbound"})["sensorOrError"]
        reasons = [t["skipReason"] or "" for t in sensor["sensorState"]["ticks"]]
        assert any(r.startswith(f"recorded a push from {peer} at ") for r in reasons), reasons
