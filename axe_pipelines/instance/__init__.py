"""Dagster instance templates shipped with the package (see README "Deployment")."""

from __future__ import annotations

import os
from pathlib import Path

EMBEDDED = Path(__file__).with_name("dagster.embedded.yaml")
DEFAULT_HOME = Path("~/.axe/dagster")


def ensure_dagster_home(home: str | Path | None = None) -> Path:
    """Makes sure $DAGSTER_HOME exists and has a dagster.yaml (the embedded SQLite default when
    none is there); sets $DAGSTER_HOME and returns it. An existing dagster.yaml is kept."""
    path = Path(home or os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    target = path / "dagster.yaml"
    if not target.exists():
        target.write_text(EMBEDDED.read_text())
    os.environ["DAGSTER_HOME"] = str(path)
    return path
