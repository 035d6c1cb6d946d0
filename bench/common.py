"""What the benchmarks share: timing a command with its peak memory, running the sides
alternately round after round, and the JSON report of medians and ratios over `raw`."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DB_PASSWORD = "bench-db"


def scratch_site(prefix: str):
    """A work folder (reachable by the postgres user), a repository password file in it, and
    a started throwaway PostgreSQL (password DB_PASSWORD); stop the cluster when done."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from axe_pipelines.postgres.cluster import LocalCluster

    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)
    password = work / "pw"
    password.write_text("bench-password\n")
    return work, password, LocalCluster(work / "pg", password=DB_PASSWORD).start()


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Runs argv in a wrapper that reports its wall time and its largest process's RSS."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([code, wall, rss]))\n")
    out = subprocess.run([sys.executable, "-c", wrapper, *argv], env=env, capture_output=True,
                         text=True, check=True).stdout
    code, wall, rss = json.loads(out)
    if code != 0:
        raise SystemExit(f"benchmark command failed ({code}): {' '.join(argv[:4])}…")
    return wall, rss


def side_by_side(sides: dict[str, Callable[[int], tuple[float, int]]], rounds: int, *,
                 before_each: Callable[[], None] = lambda: None) -> dict[str, object]:
    """Runs every side once per round, alternating which goes first; `raw` is the baseline.
    Returns wall times, medians, ratios over raw and peak RSS."""
    times: dict[str, list[float]] = {k: [] for k in sides}
    rss: dict[str, list[int]] = {k: [] for k in sides}
    for i in range(rounds):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for side in order:
            before_each()
            wall, peak = sides[side](i)
            times[side].append(wall)
            rss[side].append(peak)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
              flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "rounds": rounds,
        "wall_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 2) for k, v in med.items()},
        "ratio_over_raw": {k: round(v / med["raw"], 2) for k, v in med.items()},
        "max_rss_kib": {k: max(v) for k, v in rss.items()},
    }


def write_report(name: str, report: dict[str, object]) -> None:
    """bench/results/<name>-<time>.json (git-ignored), and the same on stdout."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(
        json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
