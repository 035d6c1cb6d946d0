"""What makes `axe` start and end quickly (issue 12: the fixed cost of every command).

Once Dagster is imported the interpreter holds ~200 000 objects; at exit CPython's last
garbage collection walks them all, which took 0.6 s of CPU (1-2 s of wall time on a loaded
machine) after the last line was printed. Freezing them first (gc.freeze: moved to the
permanent generation, which no collection visits) skips that walk; atexit handlers, buffer
flushing and the joining of threads still run as usual.
"""

from __future__ import annotations

import gc


def skip_final_collection() -> None:
    """Given a process that is about to exit, leave the objects it holds out of the last
    garbage collection (gc.freeze); atexit handlers and flushing still run."""
    gc.freeze()
