"""The backup scenarios: tier A on one server (first and incremental, against raw restic and
borgmatic), two servers, the incremental after 1% of rows changed, the runbook's size and
axe's fixed cost. Each returns its report (groups of side-by-side tables, targets)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Run, Side, compare, run_timed
from bench.site import Bench, LocalCluster

Pairs = list[tuple[LocalCluster, str]]


@dataclass
class Scale:
    """How big and how often: the bench data and the rounds per comparison."""

    name: str
    rows: int  # frame's journal_line rows
    blob_repeat: int  # index's evidence_blob: 64 rows of blob_repeat x 16 bytes
    rounds: int
    runbook_rows: int  # at the runbook's size: frame's journal_line rows
    runbook_blob_rows: int  # index's 32000-byte incompressible blobs


@dataclass
class Ctx:
    """What every scenario gets: the bench, the scale, the main server with the four
    databases (and their sizes), and whether borgmatic takes part."""

    bench: Bench
    scale: Scale
    main: LocalCluster
    sizes: dict[str, int]
    borg: bool


def _repo(b: Bench, name: str, fresh: bool) -> Callable[[int], Path]:
    return (lambda i: b.work / f"repo-{name}-{i}") if fresh else (lambda i: b.work / f"repo-{name}")


def _done(repo: Path, fresh: bool, run: Run) -> Run:
    if fresh:  # the runbook's size x sides x rounds would fill the disk
        shutil.rmtree(repo, ignore_errors=True)
    return run


def raw_side(b: Bench, pairs: Pairs, repo_for: Callable[[int], Path], fresh: bool,
             argv_for: Callable[[Path], list[str]] | None = None, *, sample: bool = False
             ) -> Side:
    """The raw pipeline over `pairs` (default: one database after another) into repo_for(i),
    initialised first (untimed) when `fresh`."""
    argv_for = argv_for or (lambda repo: b.raw_sequential(pairs, repo))

    def run(i: int) -> Run:
        repo = repo_for(i)
        if fresh:
            b.restic_init(repo)
        return _done(repo, fresh, run_timed(argv_for(repo), b.env, log=b.log, sample_rss=sample))
    return Side(b.show(argv_for(repo_for(0))), run)


def axe_side(b: Bench, name: str, servers: dict[str, LocalCluster], databases: dict[str, str],
             repo_for: Callable[[int], Path], fresh: bool, *flags: str, parallel: int = 1,
             sample: bool = False) -> Side:
    """`axe backup --local --plain [flags]` into repo_for(i) (a new config and `axe init`
    per round when `fresh`; one Dagster instance per side)."""
    argv = [b.axe, "backup", "--local", "--plain", *flags]

    def run(i: int) -> Run:
        repo = repo_for(i)
        env = b.axe_site(f"{name}-{i}" if fresh else name, servers, databases, repo,
                         parallel=parallel, home=name)
        if fresh:
            b.axe_init(env)
        return _done(repo, fresh, run_timed(argv, env, log=b.log, sample_rss=sample))
    return Side(f"AXE_CONFIG=$WORK/{name}{'-<round>' if fresh else ''}.yaml {b.show(argv)}",
                run)


def borg_side(b: Bench, name: str, cluster: LocalCluster, dbs: list[str],
              repo_for: Callable[[int], Path], fresh: bool) -> Side:
    """`borgmatic create` of the databases into repo_for(i) (repo-create first when fresh)."""
    def config(i: int) -> Path:
        return b.borgmatic_config(f"{name}-{i}" if fresh else name, cluster, dbs, repo_for(i))

    def run(i: int) -> Run:
        path = config(i)
        if fresh:
            b.borgmatic_init(path)
        return _done(repo_for(i), fresh, run_timed(
            [b.tools.borgmatic, "--config", str(path), "create"], b.env, log=b.log))
    return Side(b.show([b.tools.borgmatic, "--config", f"$WORK/borgmatic-{name}"
                        f"{'-<round>' if fresh else ''}.yaml", "create"]), run)


def tier_a_groups(ctx: Ctx, tag: str, cluster: LocalCluster, dbs: list[str]) -> list[dict]:
    """First run (fresh repositories each round) and incremental (each side's repository
    already holds one backup of the same data): raw, axe, axe --skip-restore-check and
    borgmatic."""
    b = ctx.bench
    pairs = [(cluster, db) for db in dbs]
    servers, databases = {"pg": cluster}, {db: "pg" for db in dbs}
    groups = []
    for fresh in (True, False):
        kind = "first" if fresh else "incr"
        sides = {
            "raw": raw_side(b, pairs, _repo(b, f"{tag}-raw-{kind}", fresh), fresh),
            "axe": axe_side(b, f"{tag}-axe-{kind}", servers, databases,
                            _repo(b, f"{tag}-axe-{kind}", fresh), fresh),
            "axe_skip_restore_check": axe_side(
                b, f"{tag}-skip-{kind}", servers, databases,
                _repo(b, f"{tag}-skip-{kind}", fresh), fresh, "--skip-restore-check"),
        }
        if ctx.borg:
            sides["borgmatic"] = borg_side(b, f"{tag}-borg-{kind}", cluster, dbs,
                                           _repo(b, f"{tag}-borg-{kind}", fresh), fresh)
        if not fresh:
            _seed(b, tag, sides, servers, databases, cluster, dbs, ctx.borg)
        targets = [("axe ≤ 1.0× raw sequential", "axe", "raw", 1.0)]
        if ctx.borg:
            targets.append(("axe faster than borgmatic", "axe", "borgmatic", 1.0))
        groups.append(compare(
            f"{tag}: first backup" if fresh else f"{tag}: incremental (same data again)",
            sides, ctx.scale.rounds, "raw", targets=targets,
            notes="fresh repositories every round (init untimed)" if fresh else
            "each side's repository got one untimed backup of the same data first"))
    return groups


def _seed(b: Bench, tag: str, sides: dict[str, Side], servers: dict, databases: dict,
          cluster: LocalCluster, dbs: list[str], borg: bool) -> None:
    """Give each incremental side's repository its first (untimed) backup."""
    b.restic_init(b.work / f"repo-{tag}-raw-incr")
    for name in ("axe", "skip"):
        env = b.axe_site(f"{tag}-{name}-incr", servers, databases,
                         b.work / f"repo-{tag}-{name}-incr", home=f"{tag}-{name}-incr")
        b.axe_init(env)
    if borg:
        b.borgmatic_init(b.borgmatic_config(f"{tag}-borg-incr", cluster, dbs,
                                            b.work / f"repo-{tag}-borg-incr"))
    for side in sides.values():
        side.run(-1)


def tier_a(ctx: Ctx) -> dict:
    """Scenario 1: tier A, one server, the four databases."""
    return {"groups": tier_a_groups(ctx, "tier_a", ctx.main, list(ctx.sizes)),
            "data": {"databases": ctx.sizes, "bytes": sum(ctx.sizes.values())}}


def two_servers(ctx: Ctx, second: LocalCluster) -> dict:
    """Scenario 2: frame + hive on the main server, blueprint + index on a second one:
    raw one after another, raw with one `&` loop per server, axe with parallel_servers: 2."""
    b = ctx.bench
    pairs = [(ctx.main, "frame"), (ctx.main, "hive"), (second, "blueprint"), (second, "index")]
    servers = {"pg1": ctx.main, "pg2": second}
    databases = {"frame": "pg1", "hive": "pg1", "blueprint": "pg2", "index": "pg2"}

    def loops(repo: Path) -> list[str]:
        one = " && ".join(b.raw_backup(c, db, repo) for c, db in pairs[:2])
        two = " && ".join(b.raw_backup(c, db, repo) for c, db in pairs[2:])
        return ["sh", "-c", f"( {one} ) & p1=$!; ( {two} ) & p2=$!; "
                            "wait $p1; a=$?; wait $p2; [ $a = 0 ] && [ $? = 0 ]"]

    sides = {
        "raw": raw_side(b, pairs, _repo(b, "two-raw", True), True),
        "raw_two_loops": raw_side(b, pairs, _repo(b, "two-loops", True), True, loops),
        "axe_parallel_servers_2": axe_side(b, "two-axe", servers, databases,
                                           _repo(b, "two-axe", True), True, parallel=2),
    }
    group = compare("two servers, fresh repositories", sides, ctx.scale.rounds, "raw",
                    targets=[("axe parallel_servers: 2 ≤ 0.75× raw sequential",
                              "axe_parallel_servers_2", "raw", 0.75),
                             ("axe ≤ raw with two & loops", "axe_parallel_servers_2",
                              "raw_two_loops", 1.0)])
    return {"groups": [group], "data": {"servers": {"pg1": ["frame", "hive"],
                                                    "pg2": ["blueprint", "index"]}}}


def incremental_changes(ctx: Ctx) -> dict:
    """Scenario 3: each round changes another 1% of journal_line's rows (scattered: every
    100th id; contiguous: one run of ids), then raw and axe back up into repositories that
    hold the previous state (made with the same chunker parameters); restic's own
    data_added of the new snapshots is reported."""
    b, rows = ctx.bench, ctx.scale.rows
    dbs = list(ctx.sizes)
    pairs = [(ctx.main, db) for db in dbs]
    databases = {db: "pg" for db in dbs}
    seen: dict[str, set[str]] = {"raw": set(), "axe": set()}

    def added(side: str, repo: Path, run: Run) -> Run:
        new = [s for s in b.snapshots(repo) if s["id"] not in seen[side]]
        seen[side].update(s["id"] for s in new)
        run.extra["data_added"] = sum(s.get("summary", {}).get("data_added", 0) for s in new)
        run.extra["data_added_packed"] = sum(s.get("summary", {}).get("data_added_packed", 0)
                                             for s in new)
        return run

    raw_repo, axe_repo = b.work / "repo-inc-raw", b.work / "repo-inc-axe"
    raw = raw_side(b, pairs, lambda i: raw_repo, False)
    axe = axe_side(b, "inc-axe", {"pg": ctx.main}, databases, lambda i: axe_repo, False)
    sides = {"raw": Side(raw.command, lambda i: added("raw", raw_repo, raw.run(i))),
             "axe": Side(axe.command, lambda i: added("axe", axe_repo, axe.run(i)))}
    b.restic_init(raw_repo)
    # The same chunker parameters on both sides (axe init keeps a repository that exists):
    # with each repository's own random polynomial the same change cuts different chunks,
    # and data_added would differ by chance, not by what each side does.
    b.restic_init(axe_repo, "--from-repo", str(raw_repo), "--copy-chunker-params")
    b.axe_init(b.axe_site("inc-axe", {"pg": ctx.main}, databases, axe_repo))
    for side in sides.values():
        side.run(-1)
    step = max(rows // 100, 1)
    changes = {
        "scattered": lambda i: f"UPDATE journal_line SET amount = amount + 1 "
                               f"WHERE id % 100 = {i % 100};",
        "contiguous": lambda i: f"UPDATE journal_line SET amount = amount + 1 WHERE id > "
                                f"{(i * step) % rows} AND id <= {(i * step) % rows + step};",
    }
    groups = []
    for kind, sql in changes.items():
        groups.append(compare(
            f"1% of journal_line changed, {kind}", sides, ctx.scale.rounds, "raw",
            targets=[("axe ≤ 1.0× raw", "axe", "raw", 1.0),
                     ("axe bytes added ≤ raw's", "axe", "raw", 1.0, "data_added")],
            before_round=lambda i, sql=sql: ctx.main.psql(sql(i), dbname="frame"),
            notes=f"{step} rows updated per round before both sides run; data_added is "
                  "restic's own summary of the new snapshots (uncompressed), "
                  "data_added_packed what the repository stored"))
    return {"groups": groups, "data": {"rows": rows, "rows_changed_per_round": step}}


def runbook_size(ctx: Ctx) -> dict:
    """Scenario 4: tier A at the runbook's size (five databases, index mostly incompressible
    bytea) on a server of its own, first and incremental."""
    b = ctx.bench
    cluster = b.cluster("pg-runbook")
    try:
        sizes = b.create_runbook_data(cluster, rows=ctx.scale.runbook_rows,
                                      blob_rows=ctx.scale.runbook_blob_rows)
        groups = tier_a_groups(ctx, "runbook", cluster, list(sizes))
    finally:
        cluster.stop()
    return {"groups": groups, "data": {"databases": sizes, "bytes": sum(sizes.values())}}


def fixed_cost(ctx: Ctx) -> dict:
    """Scenario 5: what a run costs with (almost) nothing to back up: axe with zero
    databases and no folder, axe with one small folder, against raw restic on that folder,
    one repository open (`restic cat config`: the key derivation), `restic version` and
    `axe config validate` (Python start and config only)."""
    b = ctx.bench
    folder = b.work / "small-folder"
    folder.mkdir(exist_ok=True)
    (folder / "note.txt").write_text("a small folder\n" * 100)
    raw_repo = b.work / "repo-fixed-raw"
    b.restic_init(raw_repo)
    envs = {}
    for name, extra in (("fixed-nothing", {}),
                        ("fixed-folder", {"folders": {"files": {"path": str(folder)}}})):
        envs[name] = b.axe_site(name, {}, {}, b.work / f"repo-{name}", extra=extra)
        b.axe_init(envs[name])

    def cmd(argv: list[str], env: dict[str, str], label: str | None = None) -> Side:
        prefix = f"AXE_CONFIG=$WORK/{label}.yaml " if label else ""
        return Side(prefix + b.show(argv), lambda i: run_timed(argv, env, log=b.log))

    backup = [b.axe, "backup", "--local", "--plain"]
    sides = {
        "raw_folder": cmd([b.tools.restic, "-r", str(raw_repo), "backup", "-q", str(folder)],
                          b.env),
        "restic_cat_config": cmd([b.tools.restic, "-r", str(raw_repo), "cat", "config"], b.env),
        "restic_version": cmd([b.tools.restic, "version"], b.env),
        "axe_config_validate": cmd([b.axe, "config", "validate"], envs["fixed-nothing"],
                                   "fixed-nothing"),
        "axe_zero_databases": cmd(backup, envs["fixed-nothing"], "fixed-nothing"),
        "axe_one_folder": cmd(backup, envs["fixed-folder"], "fixed-folder"),
    }
    group = compare("fixed cost", sides, max(ctx.scale.rounds, 3), "raw_folder",
                    notes="at least 3 rounds at every scale: these are short")
    zero = group["sides"]["axe_zero_databases"]["median_s"]
    group["targets"].append({"label": "axe with zero databases under 2 s", "value": zero,
                             "limit": 2.0, "met": zero < 2.0, "unit": "s"})
    return {"groups": [group], "data": {"folder_bytes": (folder / "note.txt").stat().st_size}}
