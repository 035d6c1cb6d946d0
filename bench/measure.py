"""Timing one command (wall, CPU of its whole tree, largest process's RSS, optionally the peak
RSS of the process tree sampled from /proc, and the restic/borg processes it started), and
running the sides of a comparison in interleaved rounds with medians and ratios."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.tools import count_calls, read_calls

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class CommandFailed(RuntimeError):
    """A benchmarked command exited non-zero; the message carries its log's tail."""


@dataclass
class Run:
    """One timed command."""

    wall_s: float
    cpu_s: float  # user + system of the command and every descendant it waited for
    maxrss_kib: int  # the largest single process of the tree
    tree_rss_kib: int | None = None  # peak of the tree's summed RSS (sampled), when asked
    tree_rss_by_tool: dict[str, int] = field(default_factory=dict)  # at that peak, by name
    calls: list[list[str]] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


def _tree_rss_kib(root: int, by_tool: dict[str, int] | None = None) -> int:
    """The summed RSS of `root` and all its descendants right now (from /proc); with
    `by_tool`, also each process name's share (restic, python, pg_restore, ...) into it."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                kib = int(f.read().split()[1]) * PAGE_KIB
            total += kib
            if by_tool is not None:
                with open(f"/proc/{pid}/comm", "rb") as f:
                    name = f.read().decode(errors="replace").strip()
                by_tool[name] = by_tool.get(name, 0) + kib
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(children.get(pid, []))
    return total


def run_timed(argv: list[str], env: dict[str, str], *, log: Path, sample_rss: bool = False,
              timeout_s: float = 3600) -> Run:
    """Given argv and its environment, run it with output into `log` and return its Run
    (restic/borg invocations read from $AXE_BENCH_CALLS, which is emptied first). Raise
    CommandFailed if it exits non-zero or outlasts `timeout_s`."""
    calls_log = Path(env["AXE_BENCH_CALLS"])
    calls_log.write_text("")
    peak, peak_by_tool = 0, {}
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        # wait4 (not Popen.wait) gives the tree's rusage; polling it every 5 ms keeps the
        # wall time within 5 ms and lets us sample the tree's memory every 50 ms meanwhile.
        next_sample = start
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                now = time.perf_counter()
                if pid:
                    break
                if sample_rss and now >= next_sample:
                    shares: dict[str, int] = {}
                    sampled = _tree_rss_kib(proc.pid, shares)
                    if sampled > peak:
                        peak, peak_by_tool = sampled, shares
                    next_sample = now + 0.05
                if now - start > timeout_s:
                    proc.kill()
                time.sleep(0.005)
        except BaseException:  # ^C or SIGTERM: the command must not outlive the bench
            proc.terminate()
            proc.wait(30)
            raise
        wall = now - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise CommandFailed(f"exit {code}: {' '.join(argv)[:300]}\n--- log tail ---\n{tail}")
    return Run(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, maxrss_kib=usage.ru_maxrss,
               tree_rss_kib=peak if sample_rss else None, tree_rss_by_tool=peak_by_tool,
               calls=read_calls(calls_log))


@dataclass
class Side:
    """One side of a comparison: its command line as shown in the report, and how to run
    round i (setup outside the timing happens inside `run` before it calls run_timed)."""

    command: str
    run: Callable[[int], Run]


# When the scenario now running must end (time.monotonic()), set by run_all from the run's
# time budget: rounds after the first are run only while they fit before it.
DEADLINE: list[float | None] = [None]


def _fits(runs: dict[str, list[Run]]) -> bool:
    """Whether one more round, as long as the slowest round so far, ends before DEADLINE."""
    deadline = DEADLINE[0]
    if deadline is None:
        return True
    per_round = sum(max(r.wall_s for r in rs) for rs in runs.values() if rs) * 1.3
    return time.monotonic() + per_round <= deadline


def interleave(sides: dict[str, Side], rounds: int, *,
               before_round: Callable[[int], None] = lambda i: None,
               before_each: Callable[[], None] = lambda: None,
               label: str = "") -> dict[str, list[Run]]:
    """Given the sides, run each once per round, rotating which goes first, and return
    every side's Runs. `before_round` runs once before each round (a change all sides then
    back up), `before_each` before every run. Rounds after the first stop when the next
    would end after DEADLINE (the run's time budget)."""
    names = list(sides)
    runs: dict[str, list[Run]] = {n: [] for n in names}
    for i in range(rounds):
        if i and not _fits(runs):
            print(f"  {label}: {i} of {rounds} round(s), the time budget is spent", flush=True)
            break
        before_round(i)
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            before_each()
            runs[name].append(sides[name].run(i))
        print(f"  {label} round {i + 1}/{rounds}: "
              + ", ".join(f"{n} {r[-1].wall_s:.2f} s" for n, r in runs.items()), flush=True)
    return runs


def _calls_summary(runs: list[Run]) -> dict[str, object]:
    """restic and borg counts of the last round (the same every round unless a side
    retries), with the median of the repository-opening counts over all rounds."""
    out: dict[str, object] = {}
    for tool in ("restic", "borg"):
        per_round = [count_calls(r.calls, tool) for r in runs]
        if any(c["processes"] for c in per_round):
            last = dict(per_round[-1])
            last["opening_repo_median"] = statistics.median(
                c["opening_repo"] for c in per_round)
            out[tool] = last
    return out


def summarize(runs: dict[str, list[Run]], sides: dict[str, Side], baseline: str
              ) -> dict[str, dict[str, object]]:
    """Given every side's Runs, return per side: command, wall times, median, min, max,
    ratio of medians over `baseline`, CPU median, RSS, tool invocations and each extra's
    median."""
    base = statistics.median(r.wall_s for r in runs[baseline])
    base_cpu = statistics.median(r.cpu_s for r in runs[baseline])
    out: dict[str, dict[str, object]] = {}
    for name, rs in runs.items():
        walls = [r.wall_s for r in rs]
        med = statistics.median(walls)
        entry: dict[str, object] = {
            "command": sides[name].command,
            "wall_s": [round(w, 3) for w in walls],
            "median_s": round(med, 3), "min_s": round(min(walls), 3),
            "max_s": round(max(walls), 3), "ratio": round(med / base, 3) if base else None,
            "cpu_median_s": round(statistics.median(r.cpu_s for r in rs), 3),
            "cpu_ratio": round(statistics.median(r.cpu_s for r in rs) / base_cpu, 3)
            if base_cpu else None,
            "maxrss_kib": max(r.maxrss_kib for r in rs),
            "calls": _calls_summary(rs),
        }
        if any(r.tree_rss_kib is not None for r in rs):
            entry["tree_rss_peak_kib"] = [r.tree_rss_kib for r in rs]
            entry["tree_rss_median_kib"] = int(statistics.median(
                r.tree_rss_kib or 0 for r in rs))
            # restic's own share of the tree at its peak, and everything else (axe's Python,
            # pg_dump, pg_restore, sh): what grows with the data is told apart.
            entry["tree_rss_restic_median_kib"] = int(statistics.median(
                r.tree_rss_by_tool.get("restic", 0) for r in rs))
            entry["tree_rss_by_tool_last"] = rs[-1].tree_rss_by_tool
        keys = sorted({k for r in rs for k in r.extra})
        for key in keys:
            entry[key] = statistics.median(r.extra.get(key, 0) for r in rs)
        out[name] = entry
    return out


def ratio_target(label: str, side: str, over: str, limit: float, *,
                 summary: dict[str, dict[str, object]], key: str = "median_s"
                 ) -> dict[str, object]:
    """Given summarized sides, return the target `side`'s `key` / `over`'s `key` <= limit
    with its measured value and whether it was met."""
    num, den = summary[side].get(key), summary[over].get(key)
    value = round(float(num) / float(den), 3) if num is not None and den else None
    return {"label": label, "value": value, "limit": limit,
            "met": value is not None and value <= limit}


def compare(title: str, sides: dict[str, Side], rounds: int, baseline: str, *,
            targets: Sequence[tuple] = (), notes: str = "",
            before_round: Callable[[int], None] = lambda i: None,
            before_each: Callable[[], None] = lambda: None) -> dict[str, object]:
    """Given a group's sides, run them interleaved and return the group's report: title,
    baseline, every side's summary, and each (label, side, over, limit[, key]) ratio
    target (key: the summary field compared, default the median wall time)."""
    runs = interleave(sides, rounds, before_round=before_round, before_each=before_each,
                      label=title)
    summary = summarize(runs, sides, baseline)
    done = len(runs[baseline])
    return {"title": title, "baseline": baseline, "rounds": done,
            "rounds_planned": rounds, "sides": summary,
            "targets": [ratio_target(*t[:4], summary=summary, key=(t[4:] or ["median_s"])[0])
                        for t in targets],
            "notes": notes}
