"""The CLI's InProcessRunner (runs.py), made in a background thread (issue 12).

Importing Dagster and opening the instance take one to two seconds of CPU; `axe backup` spends
about as long before its first run waiting on restic (the repository probe, the lock check)
and ssh. Made in a thread, the runner is ready when the first run starts; every attribute
waits for it. The thread opens the instance first and imports runs.py after it; runs.py
loads the code location's definitions only where a run is built, once it holds its slot.
The Dagster home is still checked first, in the caller's thread, so an
unusable home fails before anything is started, as before. Plain: Dagster is imported only
inside the thread, by runs.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from axe_pipelines.instance import ensure_dagster_home


class RunnerSoon:
    """Stands in for runs.InProcessRunner(say=..., verbose=...), built in a thread. Raise
    Unusable (now) when the Dagster home is not usable; a failure to open the instance is
    raised by the first attribute used."""

    def __init__(self, *, say: Callable[[str], None] | None = None,
                 verbose: bool = False) -> None:
        home = ensure_dagster_home()
        self._box: dict[str, Any] = {}

        def make() -> None:
            try:
                from axe_pipelines.instance.guard import cli_instance

                instance = cli_instance(home)
                from axe_pipelines.runs import InProcessRunner

                self._box["runner"] = InProcessRunner(say=say, verbose=verbose,
                                                      instance=instance)
            except BaseException as exc:  # handed to the caller's thread as it is
                self._box["error"] = exc

        self._thread = threading.Thread(target=make, name="axe-dagster", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Wait for the thread to end. A command that needed no run (nothing mounted, a
        config error) must not exit — or start another runner — while the thread may still
        be creating the instance's SQLite storage: a half-created one, or two creators at
        once, breaks the next run's schema migration."""
        self._thread.join()

    def __getattr__(self, name: str) -> Any:
        self._thread.join()
        if "error" in self._box:
            raise self._box["error"]
        return getattr(self._box["runner"], name)
