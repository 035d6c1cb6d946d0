"""No silent skips in CI: with `CI=true`, a skipped test fails the run unless its reason is
one of LEGITIMATE_SKIPS.

`.ci/run` installs everything the suite needs (PostgreSQL, restic, openssh-server, Debian's
chromium with Playwright) and runs as root (tmpfs mounts), so in CI a skip means a broken
set-up that would otherwise pass unseen. Outside CI a skip stays a skip. tests/conftest.py
imports the hook; README "Tests" lists the legitimate skips.
"""

from __future__ import annotations

import os

import pytest

# Reasons a test may skip even in CI: what .ci/run does not install. Each is named in README
# "Tests"; add one only together with that sentence.
LEGITIMATE_SKIPS: tuple[str, ...] = (
    "no docker client with the compose plugin",  # deploy/compose.yaml; no Docker in CI
)


def in_ci() -> bool:
    """Return True when the environment says this is a CI run (`CI=true`, as most CI
    services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_reason(report: pytest.TestReport) -> str:
    """Given a skipped test's report, return the reason pytest recorded for the skip."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI, turn a skip whose reason is not a legitimate one into a failure that names the
    reason and what to do about it (xfail results are left alone)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return
    reason = skip_reason(report)
    if any(allowed in reason for allowed in LEGITIMATE_SKIPS):
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped in CI: {reason}\n.ci/run installs this test's components, so "
                       f"in CI this skip hides a broken set-up: fix the set-up, or, if the "
                       f"component truly cannot exist in CI, add the reason to "
                       f"LEGITIMATE_SKIPS in tests/ci_skips.py and to README \"Tests\"")
