"""The CI skip hook (tests/ci_skips.py) run for real: a pytest subprocess over a tiny test
file, with and without `CI=true`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TESTS = '''
import pytest

def test_ok():
    pass

@pytest.mark.skipif(True, reason="openssh-server is not installed")
def test_marker_skip():
    pass

def test_call_skip():
    pytest.skip("mounting tmpfs is not permitted here")

def test_legitimate_skip():
    pytest.skip("no docker client with the compose plugin here")

@pytest.mark.xfail(reason="a known gap", strict=True)
def test_expected_failure():
    assert False
'''


def _start(tmp_path: Path, ci: str | None) -> subprocess.Popen[str]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "test_sample.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # keeps this project's ini out
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    # Only the hook under test: no installed plugin (xdist, timeout, anyio...) to load.
    env.update(PYTHONPATH=str(ROOT), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    if ci is not None:
        env["CI"] = ci
    return subprocess.Popen([sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"),
                             "-p", "tests.ci_skips", "-p", "no:cacheprovider",
                             "-q", "-rA", str(tmp_path / "test_sample.py")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    return _finish(_start(tmp_path, ci))


def test_in_ci_a_skip_fails_the_run_unless_it_is_legitimate(tmp_path: Path):
    proc = _run(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout
    summary = proc.stdout.strip().splitlines()[-1]
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in summary, proc.stdout
    # A skipif marker is refused at set-up (an error), a pytest.skip() in the test a failure;
    # both say why and what to do.
    assert "ERROR test_sample.py::test_marker_skip - skipped in CI: openssh-server is not " \
           "installed" in proc.stdout
    assert "FAILED test_sample.py::test_call_skip - skipped in CI: mounting tmpfs is not " \
           "permitted here" in proc.stdout
    assert "LEGITIMATE_SKIPS in tests/ci_skips.py" in proc.stdout
    # The allow-listed reason and an xfail stay what they are.
    assert "SKIPPED [1] test_sample.py" in proc.stdout and "compose plugin" in proc.stdout
    assert "XFAIL test_sample.py::test_expected_failure" in proc.stdout


def test_outside_ci_a_skip_stays_a_skip(tmp_path: Path):
    # The three runs side by side, each in a folder of its own.
    started = [_start(tmp_path / f"ci-{i}", ci) for i, ci in enumerate((None, "false", ""))]
    for proc in map(_finish, started):
        assert proc.returncode == 0, proc.stdout
        assert "1 passed, 3 skipped, 1 xfailed" in proc.stdout.strip().splitlines()[-1]


def test_the_suite_uses_the_hook():
    import tests.conftest as conftest
    from tests import ci_skips

    assert conftest.pytest_runtest_makereport is ci_skips.pytest_runtest_makereport
