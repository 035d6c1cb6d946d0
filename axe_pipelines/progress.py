"""Progress of a tier-A run: a live table on a terminal, plain lines elsewhere, Dagster's log
inside a run. All reporters collect the finished results for the summary table."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from axe_pipelines.backup import Item, ItemResult


class Reporter(Protocol):
    """What a tier-A run tells as it goes: an item started, bytes so far, an item's result.
    Called from the parallel lanes' threads."""

    def start(self, item: Item) -> None:
        """Given an item, say that its backup started."""

    def progress(self, item: Item, bytes_done: int) -> None:
        """Given an item and the bytes restic has read of it so far, say so (or not)."""

    def finish(self, result: ItemResult) -> None:
        """Given an item's result, say how it ended."""


class NullReporter:
    """Says nothing (run_tier_a without a reporter)."""

    def start(self, item: Item) -> None:
        pass

    def progress(self, item: Item, bytes_done: int) -> None:
        pass

    def finish(self, result: ItemResult) -> None:
        pass


def human_bytes(n: float) -> str:
    """Given a byte count, return it for people: `958 B`, `1.3 MiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


class _Collecting:
    """Keeps every finished item's result, in the order they finished."""

    def __init__(self) -> None:
        self.results: list[ItemResult] = []
        self._lock = threading.Lock()

    def _record(self, result: ItemResult) -> None:
        with self._lock:
            self.results.append(result)


class PlainReporter(_Collecting):
    """One line when an item starts and one when it ends (logs, pipes, cron mail)."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        self.stream = stream or sys.stderr

    def _say(self, text: str) -> None:
        # One write per line under the lock: parallel lanes must not splice their lines.
        line = f"{time.strftime('%H:%M:%S')} {text}\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()

    def start(self, item: Item) -> None:
        self._say(f"{item.label}: running")

    def progress(self, item: Item, bytes_done: int) -> None:
        pass

    def finish(self, result: ItemResult) -> None:
        self._record(result)
        label = result.item.label
        if result.ok:
            self._say(f"{label}: done, snapshot {result.snapshot_id[:8]}, "
                      f"{human_bytes(result.bytes_read)} read, "
                      f"{human_bytes(result.bytes_added)} added, {result.duration_s:.1f} s")
        elif result.skipped:
            self._say(f"{label}: skipped ({result.error})")
        else:
            self._say(f"{label}: FAILED: {result.error}")


class TerminalReporter(_Collecting):
    """A live block, one line per item (state and bytes so far), redrawn at most 5 times/s."""

    def __init__(self, items: list[Item], stream: TextIO | None = None):
        super().__init__()
        self.stream = stream or sys.stderr
        self.items = items
        self.state = {i: "waiting" for i in items}
        self.bytes = {i: 0 for i in items}
        self._drawn = 0
        self._last = 0.0
        self._draw_lock = threading.Lock()

    def _draw(self, force: bool = False) -> None:
        with self._draw_lock:
            now = time.monotonic()
            if not force and now - self._last < 0.2:
                return
            self._last = now
            out = []
            if self._drawn:
                out.append(f"\x1b[{self._drawn}F")
            width = max(len(i.label) for i in self.items)
            for item in self.items:
                out.append(f"\x1b[2K  {item.label:<{width}}  {self.state[item]:<10} "
                           f"{human_bytes(self.bytes[item])}\n")
            self.stream.write("".join(out))
            self.stream.flush()
            self._drawn = len(self.items)

    def start(self, item: Item) -> None:
        self.state[item] = "running"
        self._draw(force=True)

    def progress(self, item: Item, bytes_done: int) -> None:
        self.bytes[item] = bytes_done
        self._draw()

    def finish(self, result: ItemResult) -> None:
        self._record(result)
        item = result.item
        self.state[item] = "done" if result.ok else ("skipped" if result.skipped else "FAILED")
        self.bytes[item] = result.bytes_read or self.bytes[item]
        self._draw(force=True)


class LogReporter(_Collecting):
    """Reports through a Dagster run's logger (progress at most every 15 s per item)."""

    def __init__(self, log: object):
        super().__init__()
        self.log = log
        self._last: dict[Item, float] = {}

    def start(self, item: Item) -> None:
        self.log.info(f"{item.label}: started")  # type: ignore[attr-defined]

    def progress(self, item: Item, bytes_done: int) -> None:
        now = time.monotonic()
        if now - self._last.get(item, 0) >= 15:
            self._last[item] = now
            self.log.info(f"{item.label}: {human_bytes(bytes_done)} so far")  # type: ignore

    def finish(self, result: ItemResult) -> None:
        self._record(result)
        if result.ok:
            self.log.info(f"{result.item.label}: snapshot {result.snapshot_id[:8]}, "  # type: ignore
                          f"{human_bytes(result.bytes_read)} read in {result.duration_s:.1f} s")
        elif result.skipped:
            self.log.warning(f"{result.item.label}: skipped: {result.error}")  # type: ignore
        else:
            self.log.error(f"{result.item.label}: {result.error}")  # type: ignore


class Streamed:
    """Runs `work(reporter)` (a tier-A run) in a thread of its own, reporting to `reporter`
    as well: iterating yields each ItemResult as its item finishes, so the caller can record
    it while the other items still run; `value` is what `work` returned (its exception is
    raised there). Leaving the iteration early waits for the work to end, as a thread pool
    would."""

    _DONE = object()

    def __init__(self, work: Callable[[Reporter], Any], reporter: Reporter):
        self._inner = reporter
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._box: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(work,), name="axe-tier-a")
        self._thread.start()

    def _run(self, work: Callable[[Reporter], Any]) -> None:
        try:
            self._box["value"] = work(self)
        except BaseException as exc:  # handed to the caller's thread by `value`
            self._box["error"] = exc
        finally:
            self._queue.put(self._DONE)

    def start(self, item: Item) -> None:
        self._inner.start(item)

    def progress(self, item: Item, bytes_done: int) -> None:
        self._inner.progress(item, bytes_done)

    def finish(self, result: ItemResult) -> None:
        self._inner.finish(result)
        self._queue.put(result)

    def __iter__(self) -> Iterator[ItemResult]:
        try:
            while (result := self._queue.get()) is not self._DONE:
                yield result
        finally:
            self._thread.join()

    @property
    def value(self) -> Any:
        """Return what the work returned, once it has ended; raise what it raised."""
        self._thread.join()
        if "error" in self._box:
            raise self._box["error"]
        return self._box["value"]


def summarize(results: Sequence[ItemResult], wall_s: float) -> list[dict[str, object]]:
    """Given the items' results and the run's wall time, return the rows of the result table:
    one per item plus a total (bytes as numbers; the caller formats them)."""
    rows: list[dict[str, object]] = []
    for r in results:
        rows.append({"item": r.item.label, "status": "ok" if r.ok else
                     ("skipped" if r.skipped else "FAILED"),
                     "snapshot": (r.snapshot_id or "")[:8], "read": r.bytes_read,
                     "added": r.bytes_added, "seconds": round(r.duration_s, 2)})
    failed = sum(1 for r in results if not r.ok and not r.skipped)
    rows.append({"item": "total", "status": f"{failed} failed" if failed else "ok",
                 "snapshot": "", "read": sum(r.bytes_read for r in results),
                 "added": sum(r.bytes_added for r in results), "seconds": round(wall_s, 2)})
    return rows
