"""One message per event across sensor ticks: which events are new, and what to remember.

A sensor sees the same failed run, failed check or stale tier on many ticks. It keeps the keys
of the events it has already sent in its cursor (a JSON list, newest last, bounded), and sends
only what is not in it. A key is stable for one event and different for the next one of the
same kind: the run id and step for a run failure, the check key and evaluation id for a check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")
KEEP_KEYS = 500  # more than any look-back window brings in events, small enough for a cursor


def event_key(kind: str, *parts: object) -> str:
    """Given an event kind ("run", "check", "freshness") and the parts that make the event
    unique (run id and step; check key and evaluation id), return its stable key."""
    return ":".join([kind, *(str(p) for p in parts)])


def dedupe(sent: Iterable[str] | None, events: Iterable[T], key: Callable[[T], str],
           keep: int = KEEP_KEYS) -> tuple[list[T], list[str]]:
    """Given the keys already sent (None: none yet), the events seen now and how to key them,
    return the events to send (not sent before, each key once, in their order) and the keys
    to store: all of them marked sent, the newest `keep`.

    Marking before Slack answered is on purpose: a failed delivery is logged by `send`, and
    re-sending every tick would hammer a Slack that is down. A caller that wants undelivered
    events tried again uses `new_events` and `remember` with the delivered keys only."""
    fresh = new_events(sent, events, key)
    return fresh, remember(sent, [key(e) for e in fresh], keep)


def new_events(sent: Iterable[str] | None, events: Iterable[T],
               key: Callable[[T], str]) -> list[T]:
    """Given the keys already sent and the events seen now, return the events whose key is
    not among them, each key once, in their order."""
    seen = set(sent or ())
    fresh: list[T] = []
    for event in events:
        k = key(event)
        if k not in seen:
            seen.add(k)
            fresh.append(event)
    return fresh


def remember(sent: Iterable[str] | None, keys: Iterable[str], keep: int = KEEP_KEYS) -> list[str]:
    """Given the keys already sent and newly sent keys, return the keys to store: old then new,
    each once (a key sent again moves to the end), at most the newest `keep`. Raise ValueError
    if keep < 1."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    merged = dict.fromkeys(sent or ())
    for k in keys:
        merged.pop(k, None)
        merged[k] = None
    return list(merged)[-keep:]


def load_sent_keys(cursor: str | None) -> list[str]:
    """Given a sensor cursor written by `dump_sent_keys` (or None, or anything unreadable —
    an old cursor format), return the keys in it; unreadable gives [] (at worst one repeat)."""
    if not cursor:
        return []
    try:
        value = json.loads(cursor)
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [k for k in value if isinstance(k, str)]


def dump_sent_keys(keys: Sequence[str]) -> str:
    """Given the keys to store, return the sensor cursor string (compact JSON list)."""
    return json.dumps(list(keys), separators=(",", ":"))
