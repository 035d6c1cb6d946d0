"""Longest tests first: the order parallel workers (pytest-xdist) take tests in.

scripts/test runs `--dist loadgroup --no-loadscope-reorder`: each worker takes the next unit
of the collection whenever it runs low, so the run ends soonest when the collection starts with
the longest units (a test alone, or every test of a module that has a module-scoped fixture,
kept together so the fixture is set up once, on one worker). How long each test takes comes
from tests/durations.json (seconds per test id, measured in a full run; regenerate it with
`python -m tests.ordering junit.xml > tests/durations.json` from a run with
`--junitxml=junit.xml`). A test not in it counts as NEW_E2E_SECONDS in tests/e2e (a new
end-to-end test is rarely short, and starting it early costs little) and as nothing
elsewhere. Only workers reorder: with `-n 0` the collection keeps pytest's own order.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")
NEW_E2E_SECONDS = 30.0
_SHARED_SCOPES = {"module", "class", "package"}


def _known() -> dict[str, float]:
    try:
        return json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}


def _seconds(nodeid: str, known: dict[str, float]) -> float:
    if nodeid in known:
        return known[nodeid]
    return NEW_E2E_SECONDS if nodeid.startswith("tests/e2e/") else 0.0


def _shares_fixture(item: pytest.Item) -> bool:
    """True when the test uses a fixture wider than itself but narrower than the session."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else []
    return any(d[-1].scope in _SHARED_SCOPES for d in defs if d)


def longest_first(ids: list[str], grouped: set[str], known: dict[str, float]) -> list[int]:
    """Given test ids in pytest's order, the ids whose module forms one unit (it shares a
    module- or class-scoped fixture) and the known seconds per id, return the positions of
    the ids in the order to run them: units by their total seconds, longest first (ties keep
    pytest's order), the tests of a unit together in pytest's order."""
    units: dict[str, list[int]] = {}
    for position, nodeid in enumerate(ids):
        key = nodeid.split("::", 1)[0] if nodeid in grouped else nodeid
        units.setdefault(key, []).append(position)
    weight = {key: sum(_seconds(ids[i], known) for i in unit) for key, unit in units.items()}
    return [i for key in sorted(units, key=lambda key: -weight[key]) for i in units[key]]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook appends the group to the test id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker, put the collection in longest_first order; the tests of a module with a
    module- or class-scoped fixture become one `xdist_group`, so one worker runs them all."""
    if not hasattr(config, "workerinput"):
        return
    grouped = {item.nodeid for item in items if _shares_fixture(item)}
    for item in items:
        if item.nodeid in grouped:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    order = longest_first([item.nodeid for item in items], grouped, _known())
    items[:] = [items[i] for i in order]


def durations_from_junit(path: Path) -> dict[str, float]:
    """Given a junit XML report, return {test id: seconds (setup + call + teardown)}."""
    out: dict[str, float] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        name = case.get("name", "")
        # classname is the dotted module (plus a class); its file is the first part that is
        # a test module.
        cut = next((i for i, part in enumerate(module) if part.startswith("test_")), None)
        if cut is None:
            continue
        nodeid = "/".join(module[:cut + 1]) + ".py::" + "::".join([*module[cut + 1:], name])
        out[nodeid] = round(out.get(nodeid, 0.0) + float(case.get("time", 0)), 2)
    return dict(sorted(out.items()))


if __name__ == "__main__":
    print(json.dumps(durations_from_junit(Path(sys.argv[1])), indent=0))
