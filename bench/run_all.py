"""Every benchmark scenario in one command: axe side by side with the raw restic pipeline,
borgmatic and restic copy on the same data; writes bench/results/<date>-<scale>.json and
docs/benchmarks.md.

    .venv/bin/python -m bench [--scale quick|medium|full] [--runbook] [--only a,b] [--rounds N]
                              [--budget-min 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench import measure
from bench.report import render
from bench.tools import BENCH, ROOT, find_tools, load_average, versions

SCALES = {
    # name: rows, blob_repeat, rounds, runbook rows, runbook blob rows
    "quick": (20_000, 500, 1, 40_000, 100),
    "medium": (300_000, 5_000, 2, 650_000, 2_500),
    # The bench data of issue 12 (215 MB) and the runbook's ~700 MB over five databases.
    "full": (1_500_000, 20_000, 5, 2_600_000, 10_000),
}


# Each scenario's share of the time budget (roughly what it takes at full scale).
WEIGHTS = {"fixed_cost": 1.0, "tier_a": 3.0, "two_servers": 2.0, "tier_b_copy": 1.5,
           "restore": 1.5, "incremental": 2.0, "runbook": 4.0, "memory": 3.0}


def _scenarios() -> list[tuple[int, str, str, Callable]]:
    """(number, id, title, function) in the order they run: memory last, since it re-creates
    the main server's data; the incremental one after those that read frame as made."""
    from bench import scenarios_backup as sb
    from bench import scenarios_other as so

    return [
        (5, "fixed_cost", "Fixed cost", sb.fixed_cost),
        (1, "tier_a", "Tier A, one server, four databases", sb.tier_a),
        (2, "two_servers", "Two servers", None),  # needs the second server: see _run
        (7, "tier_b_copy", "Tier-B copy over loopback sftp", so.tier_b_copy),
        (6, "restore", "Restore", so.restore),
        (3, "incremental", "Incremental after 1% of rows changed", sb.incremental_changes),
        (4, "runbook", "The runbook's size", sb.runbook_size),
        (8, "memory", "Peak RSS at 1× and 4× the data", so.memory),
    ]


def _what(fn: Callable) -> str:
    text = " ".join((fn.__doc__ or "").split())
    return text.split(": ", 1)[1] if text.startswith("Scenario") else text


def _two_servers(ctx) -> dict:
    from bench.scenarios_backup import two_servers

    second = ctx.bench.cluster("pg-second")
    ctx.bench.create_data(second, ["blueprint", "index"], rows=ctx.scale.rows,
                          blob_repeat=ctx.scale.blob_repeat)
    try:
        return two_servers(ctx, second)
    finally:
        second.stop()


def _two_servers_doc() -> Callable:
    from bench.scenarios_backup import two_servers

    return two_servers


def _run(number: int, ident: str, title: str, fn: Callable | None, ctx) -> dict:
    if fn is None:
        fn, what = _two_servers, _what(_two_servers_doc())
    else:
        what = _what(fn)
    print(f"== {number}. {title}", flush=True)
    sc: dict = {"number": number, "id": ident, "title": title, "what": what,
                "load_before": load_average()}
    start = time.perf_counter()
    try:
        sc.update(fn(ctx))
    except Exception as exc:  # one scenario's failure must not lose the others' numbers
        traceback.print_exc()
        sc["error"] = f"{type(exc).__name__}: {exc}"[:3000]
    sc["seconds"] = time.perf_counter() - start
    sc["load_after"] = load_average()
    return sc


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="full",
                        help="quick: tiny data, 1 round; medium; full (default): issue 12's data")
    parser.add_argument("--quick", action="store_const", const="quick", dest="scale",
                        help="same as --scale quick")
    parser.add_argument("--rounds", type=int, help="rounds per comparison (default: the scale's)")
    parser.add_argument("--runbook", action=argparse.BooleanOptionalAction, default=False,
                        help="scenario 4, the runbook's size (~700 MB at full scale; off by "
                             "default: it alone takes longer than the budget)")
    parser.add_argument("--budget-min", type=float, default=15.0,
                        help="time budget of the whole run in minutes (default 15; 0: none): "
                             "each scenario gets its share, and rounds after the first are "
                             "left out when they would not fit")
    parser.add_argument("--no-borg", action="store_true", help="leave borgmatic out")
    parser.add_argument("--only", help="comma-separated scenario ids (fixed_cost, tier_a, "
                                       "two_servers, tier_b_copy, restore, incremental, runbook, "
                                       "memory)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Given the command line, run the chosen scenarios and write the JSON and the page;
    return 0, or 1 when a scenario failed (its error is in both)."""
    args = _parse(argv)
    from axe_pipelines.postgres.client import find_bin_dir
    from bench.scenarios_backup import Ctx, Scale
    from bench.site import DATABASES, Bench, server_version

    rows, blob, rounds, rb_rows, rb_blobs = SCALES[args.scale]
    scale = Scale(args.scale, rows, blob, args.rounds or rounds, rb_rows, rb_blobs)
    runbook = bool(args.runbook)
    only = set(args.only.split(",")) if args.only else None
    chosen = [s for s in _scenarios() if (only is None or s[1] in only)
              and (s[1] != "runbook" or runbook or (only and "runbook" in only))]
    started, load_before, clock = time.time(), load_average(), time.monotonic()
    # axe as installed: its bytecode written (scripts/setup does too), so no side compiles
    # its modules from source on each start where PYTHONDONTWRITEBYTECODE is set.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                    str(ROOT / "axe_pipelines")], check=True, stdout=subprocess.DEVNULL)
    tools = find_tools(Path(os.environ.get("TMPDIR", "/tmp")) / f"axe-bench-shims-{os.getpid()}",
                       find_bin_dir(None), want_borg=not args.no_borg)
    bench = Bench(tools)
    print(f"bench: work folder {bench.work}, scale {scale}", flush=True)
    # SIGTERM (a timeout, a stop from outside) unwinds like ^C: servers stopped, the
    # scenarios measured so far written.
    signal.signal(signal.SIGTERM, _interrupt)
    results: list[dict] = []
    interrupted, tool_versions = None, {}
    try:
        main_server = bench.cluster("pg-main")
        tool_versions = versions(tools, server_version(main_server))
        sizes = bench.create_data(main_server, DATABASES, rows=rows, blob_repeat=blob)
        ctx = Ctx(bench, scale, main_server, sizes, borg=not args.no_borg)
        # From the run's start: tools, servers and the bench data count against it too.
        end = clock + args.budget_min * 60 - 30 if args.budget_min else None
        for index, spec in enumerate(chosen):
            if end is not None:  # this scenario's share of what is left of the budget
                weights = [WEIGHTS.get(s[1], 1.0) for s in chosen[index:]]
                measure.DEADLINE[0] = time.monotonic() + max(
                    0.0, end - time.monotonic()) * weights[0] / sum(weights)
            results.append(_run(*spec, ctx))
    except KeyboardInterrupt:
        interrupted = f"interrupted after {len(results)} of {len(chosen)} scenario(s)"
        print(f"bench: {interrupted}", flush=True)
    finally:
        bench.stop_all()
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
        shutil.rmtree(Path(tools.restic).parent, ignore_errors=True)
    done = {s["id"] for s in results}
    results += [{"number": n, "id": i, "title": t, "what": _what(f or _two_servers_doc()),
                 "skipped": "interrupted before it ran" if interrupted and (n, i, t, f) in chosen
                 else "not run this time (scenario 4 needs --runbook; --only picks "
                      "scenarios)"}
                for n, i, t, f in _scenarios() if i not in done]
    result = _result(args, scale, runbook, started, load_before, tool_versions,
                     sorted(results, key=lambda s: s["number"]))
    if interrupted:
        result["label"] += f"; {interrupted}"
    out = BENCH / "results" / f"{time.strftime('%Y-%m-%dT%H%M%S')}-{args.scale}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(render(result))
    print(f"bench: wrote {out} and {args.doc}", flush=True)
    if interrupted:
        return 130
    return 1 if any("error" in s for s in results) else 0


def _result(args, scale, runbook: bool, started: float, load_before: list[float],
            tool_versions: dict, scenarios: list[dict]) -> dict:
    load_after = load_average()
    cpus = os.cpu_count() or 1
    loaded = max(load_before[0], load_after[0]) > cpus
    label = {"quick": "QUICK run (tiny data, 1 round): checks the harness, not the targets",
             "medium": "MEDIUM run (reduced data): indicative only, not the targets",
             "full": "full run"}[args.scale]
    if loaded:
        label += f", on a loaded machine (load average above {cpus}: wall times are inflated)"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
            "scale": args.scale, "label": label, "runbook": runbook,
            "budget_min": args.budget_min,
            "params": ", ".join(f"{k} {v}" for k, v in asdict(scale).items() if k != "name"),
            "argv": sys.argv[1:], "seconds": time.time() - started,
            "machine": {"cpus": cpus, "mem_gib": round(mem), "load_before": load_before,
                        "load_after": load_after},
            "versions": tool_versions, "scenarios": scenarios}


if __name__ == "__main__":
    sys.exit(main())
