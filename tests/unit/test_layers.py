"""The architecture's one hard rule: plain modules never import Dagster. Only the Dagster
layer does (assets/, checks/, sensors/, schedules.py, jobs.py, definitions.py, resources.py,
names.py, runs.py, instance/recovery.py and instance/guard.py); it reads history and hands it
in."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "axe_pipelines"
DAGSTER_LAYER = {"assets", "checks", "sensors", "schedules.py", "jobs.py", "definitions.py",
                 "resources.py", "names.py", "runs.py",
                 # The instance's housekeeping for the runs the CLI starts (issue 8).
                 "instance/recovery.py", "instance/guard.py"}


def imports_dagster(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n == "dagster" or n.startswith(("dagster.", "dagster_")) for n in names):
            return True
    return False


def test_plain_modules_never_import_dagster():
    plain = [p for p in sorted(PACKAGE.rglob("*.py"))
             if p.relative_to(PACKAGE).parts[0] not in DAGSTER_LAYER
             and p.relative_to(PACKAGE).as_posix() not in DAGSTER_LAYER]
    assert len(plain) > 20
    offenders = [str(p.relative_to(PACKAGE)) for p in plain if imports_dagster(p)]
    assert offenders == [], f"plain modules importing Dagster: {offenders}"
