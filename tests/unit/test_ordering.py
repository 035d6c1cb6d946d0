"""The order parallel workers take tests in (tests/ordering.py): longest first, a module that
shares a module-scoped fixture kept together, a new end-to-end test early."""

from __future__ import annotations

from pathlib import Path

from tests.ordering import NEW_E2E_SECONDS, durations_from_junit, longest_first

IDS = [
    "tests/e2e/test_a.py::test_short",
    "tests/e2e/test_a.py::test_long",
    "tests/e2e/test_ui.py::test_one",       # module fixture: 5 + 5 + 40 s as one unit
    "tests/e2e/test_ui.py::test_two",
    "tests/e2e/test_ui.py::test_three",
    "tests/e2e/test_new.py::test_unknown",  # not measured yet
    "tests/unit/test_x.py::test_unknown",
    "tests/unit/test_x.py::test_known",
]
KNOWN = {IDS[0]: 2.0, IDS[1]: 45.0, IDS[2]: 5.0, IDS[3]: 5.0, IDS[4]: 40.0, IDS[7]: 0.5}


def test_longest_unit_first_and_a_shared_module_kept_together_in_its_order():
    order = [IDS[i] for i in longest_first(IDS, set(IDS[2:5]), KNOWN)]
    assert order == [IDS[2], IDS[3], IDS[4],  # 50 s together, in pytest's order
                     IDS[1],                  # 45 s
                     IDS[5],                  # new e2e: NEW_E2E_SECONDS
                     IDS[0], IDS[7], IDS[6]]
    assert 2.0 < NEW_E2E_SECONDS < 45.0


def test_without_a_shared_fixture_each_test_is_its_own_unit():
    order = [IDS[i] for i in longest_first(IDS, set(), KNOWN)]
    assert order[:3] == [IDS[1], IDS[4], IDS[5]]  # 45, 40, new; then 5, 5 in pytest's order
    assert order[3:5] == [IDS[2], IDS[3]]


def test_durations_from_a_junit_report(tmp_path: Path):
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.e2e.test_a" name="test_long" time="45.123"/>'
        '<testcase classname="tests.e2e.test_a.TestGroup" name="test_in_class[x-1]" '
        'time="3"/>'
        '<testcase classname="tests.unit.test_x" name="test_known" time="0.5"/>'
        '</testsuite></testsuites>')
    assert durations_from_junit(report) == {
        "tests/e2e/test_a.py::TestGroup::test_in_class[x-1]": 3.0,
        "tests/e2e/test_a.py::test_long": 45.12,
        "tests/unit/test_x.py::test_known": 0.5}


def test_the_suite_uses_the_ordering_hook():
    import tests.conftest as conftest
    from tests import ordering

    assert conftest.pytest_collection_modifyitems is ordering.pytest_collection_modifyitems
