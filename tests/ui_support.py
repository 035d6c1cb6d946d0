"""Helpers for the tests that run Dagster as an operator does: `dagster-webserver` and
`dagster-daemon` as two processes on a DAGSTER_HOME, read back through GraphQL, and a
production home on dagster-postgres built from deploy/dagster.yaml.

Everything here is bounded: every wait has a deadline, every request a timeout, and the
processes are stopped with SIGTERM (what systemd and launchd send) and killed if they linger.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
WORKSPACE = ROOT / "workspace.yaml"
BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    """Given nothing, return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(probe: Callable[[], T | None], *, timeout: float, what: str,
             interval: float = 1.0, on_timeout: Callable[[], str] | None = None) -> T:
    """Given a probe that returns None (or raises OSError) until something is ready, return its
    first other value. Raise AssertionError naming `what` (and `on_timeout()`'s text) if that
    takes longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value is not None:
                return value
        except OSError as exc:  # the server is not listening yet, or restarting
            last = exc
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                                 f"{f' (last error: {last})' if last else ''}\n{extra}")
        time.sleep(interval)


def production_instance_yaml(*, run_launcher: bool = False) -> dict[str, Any]:
    """Given deploy/dagster.yaml, return its settings; without `run_launcher` the
    DockerRunLauncher is left out, so the instance uses Dagster's default launcher (runs as
    local processes) where no Docker engine answers."""
    data = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    if not run_launcher:
        data.pop("run_launcher", None)
    return data


def postgres_env(cluster: Any, db_name: str, password: str) -> dict[str, str]:
    """Given a conftest LocalCluster, a database name on it and the postgres password, return
    the DAGSTER_PG_* variables that deploy/dagster.yaml reads (the password stays out of the
    file and out of every argv)."""
    return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(cluster.port),
            "DAGSTER_PG_USER": cluster.user, "DAGSTER_PG_PASSWORD": password,
            "DAGSTER_PG_DB": db_name}


def write_home(home: Path, settings: Mapping[str, Any]) -> Path:
    """Given a folder and instance settings, write `<home>/dagster.yaml` and return home."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(dict(settings), sort_keys=False))
    return home


@dataclass
class Service:
    """One long-running Dagster process with its log file."""

    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        """Given nothing, return the last lines of this process's output, for failures."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- {self.name} (exit {self.proc.poll()}) ---\n" + "\n".join(text[-lines:])

    def stop(self, timeout: float = 30) -> int | None:
        """Given a grace period, send SIGTERM and return the exit code, or None if the process
        was still running after `timeout` seconds (it is then killed, with its group)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        # Whatever the process left behind in its session (code servers, run workers).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if code is None:
            self.proc.wait(timeout=10)
        return code


@dataclass
class Dagster:
    """A webserver (and maybe a daemon) on one DAGSTER_HOME and workspace.yaml."""

    port: int
    services: list[Service] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        """Given nothing, return the tail of every process's output."""
        return "\n".join(s.tail() for s in self.services)

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None,
                timeout: float = 30) -> dict[str, Any]:
        """Given a GraphQL document and its variables, return the response's `data`. Raise
        AssertionError if the server answers with errors."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]


LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _location_loaded(dagster: Dagster) -> list[str] | None:
    for service in dagster.services:
        if service.proc.poll() is not None:
            raise AssertionError(f"{service.name} exited early\n{service.tail()}")
    try:
        entries = dagster.graphql(LOCATIONS, timeout=10)["workspaceOrError"]["locationEntries"]
    except (urllib.error.URLError, OSError, json.JSONDecodeError, AssertionError):
        return None
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return None
    errors = [e["locationOrLoadError"] for e in entries
              if e["locationOrLoadError"]["__typename"] == "PythonError"]
    if errors:
        raise AssertionError(f"the code location failed to load: {errors}")
    return [e["name"] for e in entries]


def _spawn(name: str, argv: list[str], env: Mapping[str, str], logs: Path) -> Service:
    log = logs / f"{name}.log"
    out = log.open("wb")
    # A session of its own, so stopping the test also ends the code servers and run
    # processes this service spawned.
    proc = subprocess.Popen(argv, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    return Service(name, proc, log)


@contextmanager
def running_dagster(home: Path, env: Mapping[str, str], logs: Path, *, daemon: bool = True,
                    ready_timeout: float = 180) -> Iterator[Dagster]:
    """Given a DAGSTER_HOME, the environment (AXE_CONFIG, secrets' variables) and a folder for
    logs, start `dagster-webserver` (and `dagster-daemon`) with `-w workspace.yaml`, yield
    once the code location is loaded, and stop both with SIGTERM afterwards. Raise
    AssertionError if the location does not load within `ready_timeout` seconds."""
    logs.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    dagster = Dagster(free_port())
    with ExitStack() as stack:
        web = _spawn("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p",
                                   str(dagster.port), "-w", str(WORKSPACE)], full_env, logs)
        stack.callback(web.stop)
        dagster.services.append(web)
        if daemon:
            demon = _spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)],
                           full_env, logs)
            stack.callback(demon.stop)
            dagster.services.append(demon)
        wait_for(lambda: _location_loaded(dagster), timeout=ready_timeout, interval=1,
                 what="the webserver to load workspace.yaml", on_timeout=dagster.logs)
        yield dagster


def artifacts_dir(name: str) -> Path:
    """Given a test's name, return its folder for screenshots: under $AXE_TEST_ARTIFACTS, or
    tests/artifacts/ (which keeps itself out of git with a `*` .gitignore)."""
    root = Path(os.environ.get("AXE_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# screenshots and logs of the browser tests\n*\n")
    path = root / name
    path.mkdir(exist_ok=True)
    return path
