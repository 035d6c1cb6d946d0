"""The messages axe sends, built from plain values (the Dagster layer reads runs, checks and
freshness and hands the values in): a failed run, a failed asset check, a tier's freshness,
a restore drill. Also `one_line_reason`, which turns a Dagster error or a traceback into the
one line an operator reads first, and the links into the Dagster UI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from urllib.parse import quote

from axe_pipelines.notify.message import Message

REASON_LIMIT = 300
PASSING_STATES = frozenset({"PASS", "PASSED", "PASSING", "OK", "FRESH"})

# Lines that carry no reason of their own: traceback furniture, and Dagster's wrappers whose
# real reason is the exception chained to them.
_NOISE = re.compile(
    r"^(Traceback \(most recent call last\):|Stack Trace:|The above exception |"
    r"During handling of the above exception)")
_WRAPPER = re.compile(
    r"^(?:[A-Z]\w*: )?(Exceeded max_retries of \d+|"
    r"Error occurred while (executing|handling output|loading input)\b|"
    r"Execution of run for .* (failed|canceled)|Steps failed: |Run was canceled|"
    r"(Dagster\w*|RetryRequested)\b:?\s*$)")
_CLASS_PREFIX = re.compile(r"^(?:(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.)?"
                           r"(?P<cls>[A-Z]\w*): ?(?P<text>.*)$")
# Without a module path, "Word: …" is a class only by its name ("Fatal: …" is restic's text).
_CLASS_SUFFIXES = ("Error", "Exception", "Failed", "Unusable", "Requested", "Interrupt", "Exit")
_DAGSTER_FORMAT = re.compile(r"^(Stack Trace:|The above exception was caused by the following "
                             r"exception:|The above exception occurred during handling)", re.M)
_PYTHON_FORMAT = re.compile(r"^Traceback \(most recent call last\):", re.M)


def one_line_reason(text: str | None) -> str:
    """Given an error text (a message, a Python traceback, or Dagster's error with its stack
    and causes), return the one line that says what went wrong: no stack, no "Exceeded
    max_retries" or "Error occurred while executing" wrapper, no module path, at most 300
    characters; "no reason given" for an empty text."""
    if not text or not text.strip():
        return "no reason given"
    candidates = [_strip_class(line.strip()) for line in text.splitlines()
                  if line.strip() and not line[:1].isspace() and not _NOISE.match(line)]
    reasons = [c for c in candidates if c and not _WRAPPER.match(c)]
    if not reasons:
        chosen = candidates[0] if candidates else text.strip().splitlines()[0]
    elif _PYTHON_FORMAT.search(text) and not _DAGSTER_FORMAT.search(text):
        # A Python traceback prints the cause first and the error that escaped last.
        chosen = reasons[-1]
    else:
        # A message's first line; Dagster prints the outer error first, then its cause: the
        # first that is not a wrapper is the one the code raised (an ItemFailed rather than the
        # CalledProcessError chained to it).
        chosen = reasons[0]
    line = " ".join(chosen.split())
    return line if len(line) <= REASON_LIMIT else line[: REASON_LIMIT - 1] + "…"


def _strip_class(line: str) -> str:
    """`axe_pipelines.errors.ItemFailed: tier B: …` → `tier B: …`; `KeyError: 'x'` stays (the
    class says something there); other modules' paths are dropped, their class kept."""
    match = _CLASS_PREFIX.match(line)
    if not match or not (match["module"] or match["cls"].endswith(_CLASS_SUFFIXES)):
        return line
    module, cls, rest = match["module"] or "", match["cls"], match["text"]
    if module.startswith("axe_pipelines") or not rest:
        return rest if rest else cls
    return f"{cls}: {rest}"


def dagster_run_url(webserver_base_url: str | None, run_id: str) -> str | None:
    """Given the Dagster UI's base URL (None when not configured) and a run id, return the
    run's page, or None."""
    if not webserver_base_url:
        return None
    return f"{webserver_base_url.rstrip('/')}/runs/{quote(run_id, safe='')}"


def dagster_asset_url(webserver_base_url: str | None, asset_key_str: str,
                      view: str | None = None) -> str | None:
    """Given the Dagster UI's base URL (None when not configured) and an asset key as
    `a/b/c`, return the asset's page (its `view` tab, e.g. "checks"), or None."""
    if not webserver_base_url:
        return None
    path = "/".join(quote(part, safe="") for part in asset_key_str.split("/"))
    tab = f"?view={quote(view, safe='')}" if view else ""
    return f"{webserver_base_url.rstrip('/')}/assets/{path}{tab}"


def run_failure_message(customer: str, job: str, failed_item: str | None, reason: str | None,
                        run_url: str | None) -> Message:
    """Given a failed run's customer, job, the failed asset or item (None when unknown), its
    error text and its UI link, return the alert: one summary line, the one-line reason."""
    at = f" at {failed_item}" if failed_item else ""
    return Message(
        summary=f"{customer}: {job} failed{at}",
        ok=False,
        bullets=[f"reason: {one_line_reason(reason)}"],
        link=run_url,
        link_text="Open the run in Dagster",
    )


def check_failure_message(customer: str, asset_key_str: str, check_name: str, severity: str,
                          description: str | None, url: str | None) -> Message:
    """Given a failed asset check's customer, asset key (`a/b/c`), check name, severity
    (ERROR, WARN), its description and UI link, return the alert."""
    return Message(
        summary=f"{customer}: check {check_name} {severity.upper()} on {asset_key_str}",
        ok=False,
        bullets=[one_line_reason(description)],
        link=url,
        link_text="Open the check in Dagster",
    )


def freshness_message(customer: str, asset: str, state: str, last_updated: datetime | None,
                      url: str | None, *, now: datetime | None = None) -> Message:
    """Given an asset's customer, key, freshness state (FAIL, WARN, PASS…), when it was last
    updated (aware, in the customer's zone; None: never) and UI link, return the alert; `now`
    adds the age. A passing state makes a green "fresh again" message."""
    ok = state.upper() in PASSING_STATES
    if last_updated is None:
        when = "never updated"
    else:
        when = "last updated " + last_updated.isoformat(sep=" ", timespec="minutes")
        if now is not None:
            when += f" ({format_age((now - last_updated).total_seconds())} ago)"
    verb = "fresh again" if ok else f"freshness {state.upper()}"
    return Message(summary=f"{customer}: {asset} {verb}", ok=ok, bullets=[when], link=url,
                   link_text="Open the asset in Dagster")


def drill_message(customer: str, ok: bool, rows: Sequence[Mapping[str, object]],
                  fallbacks: Sequence[str], url: str | None = None) -> Message:
    """Given a drill's customer, overall result, one row per database or folder (column name
    to value, in the order to show; values are shown with `str`, None as "-", floats with
    one decimal) and the fallback lines ("frame: local failed (…), served by cold"), return
    the drill report."""
    columns: list[str] = []
    for row in rows:
        columns += [str(k) for k in row if str(k) not in columns]
    table = [[_cell(row.get(c)) for c in columns] for row in rows]
    count = f"{len(rows)} item{'s' if len(rows) != 1 else ''}"
    verdict = "passed" if ok else "FAILED"
    return Message(summary=f"{customer}: restore drill {verdict} ({count})", ok=ok,
                   columns=columns, rows=table, bullets=fallbacks,
                   bullets_title="Fallbacks" if fallbacks else "", link=url,
                   link_text="Open the drill in Dagster")


def format_age(seconds: float) -> str:
    """Given an age in seconds, return it as a person says it: "45 s", "12 min", "30 h",
    "9 d"."""
    seconds = max(0.0, seconds)
    for unit, size, up_to in (("s", 1, 120), ("min", 60, 120 * 60), ("h", 3600, 72 * 3600)):
        if seconds < up_to:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds / 86400:.0f} d"


def _cell(value: object) -> str:
    # Keys' look-ups go through Mapping.get, so a missing column shows like a None.
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
