"""lanes.py: lanes in parallel, a few items of one lane at once, started in plan order."""

from __future__ import annotations

import threading
import time

import pytest

from axe_pipelines.lanes import run_in_lanes


def schedule(items: list[str], *, lanes_at_once: int, per_lane: int):
    """Run items named `<lane>:<n>`, each busy 50 ms; return the start order and the most
    items running at once, per lane and in all."""
    lock = threading.Lock()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    starts: list[str] = []

    def run(item: str) -> None:
        lane = item.split(":")[0]
        with lock:
            starts.append(item)
            running[lane] = running.get(lane, 0) + 1
            running["*"] = running.get("*", 0) + 1
            for key in (lane, "*"):
                peak[key] = max(peak.get(key, 0), running[key])
        time.sleep(0.05)
        with lock:
            running[lane] -= 1
            running["*"] -= 1

    run_in_lanes(items, lambda i: i.split(":")[0], run, lanes_at_once=lanes_at_once,
                 per_lane=per_lane)
    return starts, peak


ITEMS = ["a:1", "a:2", "a:3", "a:4", "b:1", "b:2", "b:3"]


@pytest.mark.parametrize(("lanes_at_once", "per_lane", "lane_peak", "all_peak"), [
    (1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 2), (2, 2, 2, 4)])
def test_at_most_so_many_items_of_a_lane_and_lanes_at_once(lanes_at_once, per_lane, lane_peak,
                                                           all_peak):
    starts, peak = schedule(ITEMS, lanes_at_once=lanes_at_once, per_lane=per_lane)
    assert sorted(starts) == sorted(ITEMS)
    assert (peak["a"], peak["b"], peak["*"]) == (lane_peak, lane_peak, all_peak)
    for lane in "ab":  # within a lane, in plan order
        mine = [s for s in starts if s.startswith(lane)]
        assert mine == [i for i in ITEMS if i.startswith(lane)]


def test_an_exception_is_raised_after_the_others_ran():
    ran: list[str] = []

    def run(item: str) -> None:
        if item == "a:1":
            raise RuntimeError("boom")
        ran.append(item)

    with pytest.raises(RuntimeError, match="boom"):
        run_in_lanes(ITEMS, lambda i: i[0], run, lanes_at_once=2, per_lane=2)
    assert "b:3" in ran


def test_streamed_yields_each_result_as_it_finishes_then_the_value():
    """progress.Streamed: the caller gets a result while the work still runs, every report
    reaches the inner reporter too, and the work's exception is raised by `value`."""
    from axe_pipelines.progress import NullReporter, Streamed

    class Inner(NullReporter):
        def __init__(self):
            self.finished = []

        def finish(self, result):
            self.finished.append(result)

    got_first = threading.Event()

    def work(reporter):
        reporter.finish("first")
        assert got_first.wait(10), "the first result was not handed over while work ran"
        reporter.finish("second")
        return "done"

    inner = Inner()
    stream = Streamed(work, inner)
    seen = []
    for result in stream:
        seen.append(result)
        got_first.set()
    assert seen == ["first", "second"] and inner.finished == seen
    assert stream.value == "done"

    def fails(_reporter):
        raise RuntimeError("boom")

    failing = Streamed(fails, NullReporter())
    assert list(failing) == []
    with pytest.raises(RuntimeError, match="boom"):
        _ = failing.value
