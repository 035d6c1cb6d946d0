"""Dagster instance templates shipped with the package (see README "Deployment"), and the
Dagster home where `axe` records its runs. Plain: nothing here imports Dagster."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from axe_pipelines.errors import Unusable

EMBEDDED = Path(__file__).with_name("dagster.embedded.yaml")
DEFAULT_HOME = Path("~/.axe/dagster")


def ensure_dagster_home(home: str | Path | None = None) -> Path:
    """Given a folder (default: $DAGSTER_HOME, else ~/.axe/dagster), make sure it exists, has
    a dagster.yaml (the embedded SQLite default when none is there; an existing one is kept)
    and is writable; set $DAGSTER_HOME to it and return it. Raise Unusable naming the folder
    and what to do when it cannot be created or written (runs are recorded there)."""
    path = Path(home or os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).expanduser().resolve()
    target = path / "dagster.yaml"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_text(EMBEDDED.read_text())
        # The instance writes its run and event storage here: find out now, not mid-run.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise Unusable(f"Dagster home {path} is not usable ({exc.strerror or exc}); axe records "
                       f"every run there: make it writable, or point DAGSTER_HOME at a "
                       f"writable folder") from None
    os.environ["DAGSTER_HOME"] = str(path)
    return path
