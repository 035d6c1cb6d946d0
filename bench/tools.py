"""The tools the benchmark drives and what it records about them: restic and borg behind
counting shims, borgmatic in its own venv (bench/.venv-borg), Debian's borgbackup installed by
apt when missing, versions, the axe commit and the machine's load.

A shim is a two-line `sh` script that appends its argv (one line, fields separated by 0x1f) to
$AXE_BENCH_CALLS and `exec`s the real binary: same process, same signals, ~1 ms. Both sides of
every comparison go through it, so the counts are symmetric.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BORG_VENV = BENCH / ".venv-borg"
BORGMATIC_VERSION = "2.1.10"
SEP = "\x1f"

# restic global options that take a value (the next word is not the subcommand).
_RESTIC_VALUE_OPTS = {"-r", "--repo", "-o", "--option", "--password-file", "--password-command",
                      "--repository-file", "--cache-dir", "--cacert", "--tls-client-cert",
                      "--limit-upload", "--limit-download", "--pack-size", "--compression",
                      "--retry-lock", "--key-hint"}
# Invocations that never open a repository (no key derivation).
_NO_REPO = {"version", "--version", "help", "generate", "self-update"}


def _shim(path: Path, real: str, name: str) -> str:
    path.write_text("#!/bin/sh\n"
                    # A literal 0x1f between words: no subshell per argument.
                    f"line=\"{name}\"; for a in \"$@\"; do line=\"$line{SEP}$a\"; done\n"
                    "[ -n \"$AXE_BENCH_CALLS\" ] && printf '%s\\n' \"$line\" >> "
                    "\"$AXE_BENCH_CALLS\"\n"
                    f"exec {real} \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def subcommand(argv: list[str]) -> str:
    """Given one logged invocation's argv (tool name first), return its subcommand
    (`backup`, `cat config`, `create`, …), or `?` when there is none."""
    words = argv[1:]
    i = 0
    while i < len(words):
        word = words[i]
        if word in _RESTIC_VALUE_OPTS:
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        if word in ("cat", "list") and i + 1 < len(words):
            return f"{word} {words[i + 1]}"
        return word
    return "--version" if "--version" in words else "?"


def read_calls(log: Path) -> list[list[str]]:
    """Given a shim log, return the logged invocations (each an argv, tool name first)."""
    if not log.exists():
        return []
    return [line.split(SEP) for line in log.read_text().splitlines() if line]


def count_calls(calls: list[list[str]], tool: str) -> dict[str, object]:
    """Given logged invocations, return for `tool`: all processes, those that open a
    repository (every one but `version`/`help`: each derives the key) and a count per
    subcommand."""
    mine = [c for c in calls if c and c[0] == tool]
    by_sub = Counter(subcommand(c) for c in mine)
    opening = sum(n for sub, n in by_sub.items() if sub not in _NO_REPO)
    return {"processes": len(mine), "opening_repo": opening, "by_subcommand": dict(by_sub)}


@dataclass
class Tools:
    """Paths of the real tools and of their shims."""

    restic_real: str
    restic: str  # the shim
    pg_bin: Path
    borg_real: str | None = None
    borg: str | None = None  # the shim
    borgmatic: str | None = None
    ssh_ok: bool = False


def find_tools(shim_dir: Path, pg_bin: Path, *, want_borg: bool) -> Tools:
    """Given a folder for the shims and PostgreSQL's bin folder, find restic (as axe does),
    set up borg/borgmatic when wanted and return the Tools. Raise SystemExit if restic is
    missing."""
    sys.path.insert(0, str(ROOT))
    from axe_pipelines.restic import find_restic

    shim_dir.mkdir(parents=True, exist_ok=True)
    real = find_restic()
    tools = Tools(restic_real=real, restic=_shim(shim_dir / "restic", real, "restic"),
                  pg_bin=pg_bin)
    if want_borg:
        borg_real, borgmatic = ensure_borg()
        tools.borg_real = borg_real
        tools.borg = _shim(shim_dir / "borg", borg_real, "borg")
        tools.borgmatic = borgmatic
    from tests.sshd import have_sshd

    tools.ssh_ok = have_sshd()
    return tools


def ensure_borg() -> tuple[str, str]:
    """Return (borg, borgmatic) paths, installing Debian's borgbackup with apt-get when borg is
    missing and borgmatic into bench/.venv-borg when that venv lacks it. Raise SystemExit
    saying what to do if either install fails."""
    borg = shutil.which("borg")
    if borg is None:
        print("bench: borg missing, installing Debian's borgbackup (apt-get)", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        apt = ["apt-get", "install", "-y", "-q", "borgbackup"]
        if subprocess.run(apt, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env)
            if subprocess.run(apt, env=env).returncode != 0:
                raise SystemExit("bench: cannot install borgbackup; install it (apt-get install "
                                 "borgbackup) or run without borgmatic (--no-borg)")
        borg = shutil.which("borg") or "/usr/bin/borg"
    borgmatic = BORG_VENV / "bin" / "borgmatic"
    if not borgmatic.exists():
        print(f"bench: installing borgmatic {BORGMATIC_VERSION} into {BORG_VENV}", flush=True)
        # The base interpreter, not the project's venv: nothing goes into .venv.
        base = Path(sys.base_prefix) / "bin" / "python3"
        subprocess.run([str(base), "-m", "venv", str(BORG_VENV)], check=True)
        subprocess.run([str(BORG_VENV / "bin" / "pip"), "install", "-q",
                        f"borgmatic=={BORGMATIC_VERSION}"], check=True)
    return borg, str(borgmatic)


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def versions(tools: Tools, server_version: str) -> dict[str, str | None]:
    """Given the tools and the PostgreSQL server's version, return every version the report
    names, with the axe commit and whether axe_pipelines/ had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                              text=True).stdout.strip()

    import dagster

    dirty = git("status", "--porcelain", "--", "axe_pipelines")
    return {
        "restic": _first_line([tools.restic_real, "version"]),
        "borg": _first_line([tools.borg_real, "--version"]) if tools.borg_real else None,
        "borgmatic": _first_line([tools.borgmatic, "--version"]) if tools.borgmatic else None,
        "pg_dump": _first_line([str(tools.pg_bin / "pg_dump"), "--version"]),
        "postgresql_server": server_version,
        "python": sys.version.split()[0],
        "dagster": dagster.__version__,
        "axe_commit": git("rev-parse", "HEAD"),
        "axe_pipelines_uncommitted_files": str(len(dirty.splitlines())) if dirty else "0",
    }


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]
