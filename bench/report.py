"""docs/benchmarks.md from one run's JSON: how to run, the run's scale, load and versions,
every target met or missed, restic processes per run, then a table per scenario with its
command lines."""

from __future__ import annotations

HOW = """\
One command runs every scenario side by side and writes `bench/results/<date>.json`
(git-ignored) and this page:

```bash
.venv/bin/python -m bench                  # --scale full: the targets' measurement, 15 min
.venv/bin/python -m bench --scale quick    # tiny data, 1 round: checks the harness works
.venv/bin/python -m bench --runbook --budget-min 40  # also scenario 4, the runbook's size
.venv/bin/python -m bench --only tier_a,restore      # some scenarios
```

The run keeps to a time budget (`--budget-min`, default 15; 0 for none): each scenario gets
a share of what is left, and rounds after the first are left out when the next would not
fit (its table then says "Rounds: 2 of 5").

Method: every comparison runs its sides once per round, rotating which goes first; the
tables give the median wall time, min–max, the ratio of medians over the first side (the
by-hand way), the median CPU time (user + system of the whole process tree, less sensitive
to a loaded machine than wall time) and its ratio, and the largest single process's peak
RSS. Every restic
(and borg) process is counted through a shim on PATH (`bench/tools.py`: a two-line `sh`
script that logs its argv and `exec`s the real binary, used by both sides); each one that
opens a repository derives its key first (see `restic_cat_config` in the fixed cost).
Set-up (repositories, `axe init`, seeding backups) is never timed. Commands show the work
folder as `$WORK`; `AXE_CONFIG=…` names the customers.yaml the run used (one customer, roles
off on both sides, `parallel_servers: 1` unless said). borgmatic (PyPI, in
`bench/.venv-borg`) and Debian's `borgbackup` are installed by the bench when missing.
"""


def _mib(kib: float | None) -> str:
    return "" if kib is None else f"{kib / 1024:.0f}"


def _calls(entry: dict) -> str:
    parts = []
    for tool, c in entry.get("calls", {}).items():
        parts.append(f"{tool} {c['processes']} / {c['opening_repo']}")
    return ", ".join(parts) or "0"


def _side_table(group: dict) -> list[str]:
    sides = group["sides"]
    tree = any("tree_rss_median_kib" in s for s in sides.values())
    added = any("data_added" in s for s in sides.values())
    head = ["side", "median s", "min–max s", f"× {group['baseline']}", "CPU s", "CPU ×",
            "processes / opening repo", "largest process RSS MiB"]
    head += ["tree peak RSS MiB", "of it restic MiB"] if tree else []
    head += ["data_added MiB", "stored MiB"] if added else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in sides.items():
        row = [f"`{name}`", f"{s['median_s']:.2f}", f"{s['min_s']:.2f}–{s['max_s']:.2f}",
               f"{s['ratio']:.2f}" if s["ratio"] is not None else "", f"{s['cpu_median_s']:.2f}",
               f"{s['cpu_ratio']:.2f}" if s.get("cpu_ratio") is not None else "",
               _calls(s), _mib(s["maxrss_kib"])]
        row += [_mib(s.get("tree_rss_median_kib")),
                _mib(s.get("tree_rss_restic_median_kib"))] if tree else []
        if added:
            row += [f"{s.get('data_added', 0) / 2**20:.2f}",
                    f"{s.get('data_added_packed', 0) / 2**20:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _target_text(t: dict) -> str:
    if t.get("value") is None:
        return "not measured"
    unit = t.get("unit", "×")
    limit = "" if t.get("limit") is None else f" (limit {t['limit']}{unit})"
    verdict = {True: "met", False: "**missed**", None: "reference"}[t.get("met")]
    return f"{t['value']}{unit}{limit}: {verdict}"


_BYTES = {"databases", "bytes", "database_bytes", "folder_bytes"}


def _data(value: object, as_bytes: bool = False) -> str:
    """A scenario's data description, sizes in MiB."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_data(v, as_bytes or k in _BYTES)}" for k, v in value.items())
    if isinstance(value, list):
        return "+".join(map(str, value))
    if as_bytes and isinstance(value, int):
        return f"{value / 2**20:.1f} MiB" if value >= 2**20 else f"{value / 1024:.1f} KiB"
    return str(value)


def _group(group: dict) -> list[str]:
    planned = group.get("rounds_planned", group["rounds"])
    rounds = f"{group['rounds']}" + (f" of {planned} (the time budget left out the rest)"
                                     if planned != group["rounds"] else "")
    out = [f"### {group['title']}", "", f"Rounds: {rounds}. {group['notes']}".strip(),
           "", *_side_table(group), ""]
    for t in group["targets"]:
        out.append(f"- Target: {t['label']} — {_target_text(t)}")
    out += ["", "Command lines:", "", "```sh"]
    out += [f"# {name}\n{s['command']}" for name, s in group["sides"].items()]
    out += ["```", ""]
    return out


def _scenario(sc: dict) -> list[str]:
    out = [f"## {sc['number']}. {sc['title']}", "", sc["what"], ""]
    if "error" in sc:
        return out + ["**Failed in this run:**", "", "```text", sc["error"], "```", ""]
    if "skipped" in sc:
        return out + [f"Skipped: {sc['skipped']}.", ""]
    out += [f"Load average before / after: {sc['load_before']} / {sc['load_after']}; "
            f"{sc['seconds']:.0f} s in all. Data: {_data(sc.get('data', {}))}.", ""]
    for group in sc.get("groups", []):
        out += _group(group)
    return out


def _targets_table(result: dict) -> list[str]:
    lines = ["| scenario | target | measured |", "|---|---|---|"]
    for sc in result["scenarios"]:
        for group in sc.get("groups", []):
            for t in group["targets"]:
                lines.append(f"| {sc['number']}. {group['title']} | {t['label']} | "
                             f"{_target_text(t)} |")
    return lines


def _calls_table(result: dict) -> list[str]:
    lines = ["| scenario | side | restic processes | opening the repository | by subcommand |",
             "|---|---|---|---|---|"]
    for sc in result["scenarios"]:
        for group in sc.get("groups", []):
            for name, s in group["sides"].items():
                c = s.get("calls", {}).get("restic")
                if c:
                    subs = ", ".join(f"{k} {v}" for k, v in sorted(c["by_subcommand"].items()))
                    lines.append(f"| {sc['number']}. {group['title']} | `{name}` | "
                                 f"{c['processes']} | {c['opening_repo']} | {subs} |")
    return lines


def _open_cost(result: dict) -> list[str]:
    """The extra repository opens of axe over raw in scenario 1, priced at one open's median
    (`restic cat config`) in this run."""
    fixed = next((sc for sc in result["scenarios"] if sc["id"] == "fixed_cost"
                  and sc.get("groups")), None)
    tier = next((sc for sc in result["scenarios"] if sc["id"] == "tier_a"
                 and sc.get("groups")), None)
    if not fixed or not tier:
        return []
    one = fixed["groups"][0]["sides"]["restic_cat_config"]["median_s"]
    out = [f"One repository open (`restic cat config`, key derivation included) took "
           f"{one:.2f} s (median) in this run.", ""]
    for group in tier["groups"]:
        raw = group["sides"]["raw"]["calls"]["restic"]["opening_repo"]
        for name in ("axe", "axe_skip_restore_check"):
            opens = group["sides"][name]["calls"]["restic"]["opening_repo"]
            out.append(f"- {group['title']}, `{name}`: {opens} opens against raw's {raw}: "
                       f"~{(opens - raw) * one:.1f} s of extra opens if run one after another.")
    return out + [""]


def render(result: dict) -> str:
    """Given one run's result, return docs/benchmarks.md."""
    v = result["versions"]
    out = ["# Benchmarks", "", HOW,
           f"## This run: {result['label']}", "",
           f"{result['date']}, scale `{result['scale']}` ({result['params']}), "
           f"{result['machine']['cpus']} CPUs, {result['machine']['mem_gib']} GiB; load average "
           f"(1/5/15 min) {result['machine']['load_before']} before, "
           f"{result['machine']['load_after']} after; {result['seconds'] / 60:.1f} min.", "",
           "| tool | version |", "|---|---|"]
    out += [f"| {k} | {val} |" for k, val in v.items()]
    out += ["", "## Targets (issue 12)", "", *_targets_table(result), "",
            "## restic processes per run", "",
            "Counted per run of each side (the last round's; borg's are in the scenario "
            "tables). `opening the repository`: every process but `restic version`.", "",
            *_calls_table(result), "", *_open_cost(result)]
    for sc in result["scenarios"]:
        out += _scenario(sc)
    return "\n".join(out).rstrip() + "\n"
