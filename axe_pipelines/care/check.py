"""`restic check` with a rotating read-data subset, read into one outcome an operator acts on.

A weekly check reads part k of n of the repository's pack files (`--read-data-subset k/n`,
k = week mod n + 1), so every pack is read once every n weeks while one check stays short.
restic 0.18 prints its verdict with `--json` (a `summary` on stdout: num_errors, broken_packs,
suggest_repair_index, suggest_prune) and its findings and advice as `error` messages on
stderr ("pack 37db… contains 2 errors: … ciphertext verification failed", "restic repair
packs 37db…", "You must run `restic repair index'"); it exits 1 with "Fatal: repository
contains errors" when it found damage. A structure-only check (no read-data) does not read
pack contents, so it misses a flipped byte inside a pack; only reading the data finds that.
restic 0.18's check takes an exclusive lock: it must not overlap a backup of the repository.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from axe_pipelines.errors import UsageError
from axe_pipelines.restic import Restic
from axe_pipelines.restic.errors import raise_for

_SUBSET = re.compile(r"^(\d+)/(\d+)$|^\d+(\.\d+)?%$|^\d+[kKmMgGtT]?$")
_FIRST_MONDAY = date(1970, 1, 5)
# Lines of restic's messages that tell the operator what to do (not what is wrong).
_ADVICE = re.compile(r"^restic \w|repair|troubleshooting|must be|you can run|`restic", re.I)
_NOISE = re.compile(r"open an issue|can be caused by", re.I)


@dataclass(frozen=True)
class CheckOutcome:
    """What one `restic check` found. `ok`: no errors; `damaged`: restic found errors in the
    repository (ERROR for the asset check); `advice`: restic's own next steps ("restic repair
    packs <id>", "You must run `restic repair index'"), also when ok (e.g. prune)."""

    where: str
    ok: bool
    damaged: bool
    summary: str
    read: str
    advice: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    broken_packs: tuple[str, ...] = ()
    duration_s: float = 0.0
    restic_summary: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the outcome as JSON-ready data (asset check metadata, `axe check --json`)."""
        return {"where": self.where, "ok": self.ok, "damaged": self.damaged,
                "summary": self.summary, "read": self.read, "advice": list(self.advice),
                "errors": list(self.errors), "broken_packs": list(self.broken_packs),
                "duration_s": round(self.duration_s, 1)}


def check_plan(week_index: int, n: int) -> str:
    """Given the index of this week (any integer that grows by one a week, see
    `rotation_week`) and n, return the read-data subset `k/n` with k = week_index mod n + 1,
    so n consecutive weeks read the whole repository. Raise UsageError if n < 1."""
    if n < 1:
        raise UsageError(f"read-data rotation needs n >= 1 parts, got {n}")
    return f"{week_index % n + 1}/{n}"


def rotation_week(at: datetime, timezone: str) -> int:
    """Given a time and the customer's zone, return the number of whole weeks (Monday to
    Sunday, local) since 1970-01-05: the week index `check_plan` rotates on."""
    local = at.astimezone(ZoneInfo(timezone)).date() if at.tzinfo else at.date()
    return (local - _FIRST_MONDAY).days // 7


def _check_args(subset: str | None, read_data: bool) -> tuple[list[str], str]:
    if read_data:
        return ["check", "--json", "--read-data"], "all data"
    if subset is None:
        return ["check", "--json"], "structure only"
    m = _SUBSET.match(subset)
    if not m or (m.group(1) and not 1 <= int(m.group(1)) <= int(m.group(2))):
        raise UsageError(f"cannot read the read-data subset {subset!r}; use k/n with "
                         f"1 <= k <= n (e.g. 2/4), a percentage (10%) or a size (500M)")
    return ["check", "--json", "--read-data-subset", subset], f"read-data subset {subset}"


def _messages(stdout: list[str], stderr: str) -> tuple[dict[str, Any], list[str], str]:
    """Return restic's summary, the lines of its error messages, and its exit_error text."""
    summary: dict[str, Any] = {}
    lines: list[str] = []
    fatal = ""
    for raw in [*stdout, *stderr.splitlines()]:
        try:
            msg = json.loads(raw) if raw.startswith("{") else {"message": raw}
        except ValueError:
            msg = {"message": raw}
        kind = msg.get("message_type")
        if kind == "summary":
            summary = msg
        elif kind == "exit_error":
            fatal = str(msg.get("message", ""))
        else:
            lines += [ln.strip() for ln in str(msg.get("message", "")).splitlines()]
    return summary, [ln for ln in lines if ln and not _NOISE.search(ln)], fatal


def _advice(lines: list[str], summary: dict[str, Any]) -> list[str]:
    advice = [ln for ln in lines if _ADVICE.search(ln)]
    said = " ".join(advice)
    if summary.get("suggest_repair_index") and "repair index" not in said:
        advice.append("run `restic repair index`")
    if summary.get("suggest_prune") and "prune" not in said:
        advice.append("run `restic prune`")
    return advice


def run_check(restic: Restic, subset: str | None = None, read_data: bool = False
              ) -> CheckOutcome:
    """Given a repository and what to read (`read_data`: every pack; else `subset`, e.g.
    "2/4" from check_plan; neither: the structure only), run `restic check --json` and return
    the CheckOutcome with restic's findings and repair advice. Raise UsageError for a bad
    subset, ResticTimeout past the repository's timeout, the mapped ResticError when the
    check could not run at all (missing repository, wrong password, live lock)."""
    args, read = _check_args(subset, read_data)
    what = f"restic check ({read})"
    started = time.monotonic()
    done, stdout = restic.check(args, what=what)
    duration = time.monotonic() - started
    summary, lines, fatal = _messages(stdout, done.stderr)
    errors = int(summary.get("num_errors") or 0)
    damaged = errors > 0 or "contains errors" in fatal
    if done.code != 0 and not damaged:
        raise_for(done.code, done.stderr, restic.repo, what)
    advice = _advice(lines, summary)
    findings = [ln for ln in lines if ln not in advice]
    label = restic.repo.label
    if not damaged:
        note = f"; restic suggests: {advice[0]}" if advice else ""
        text = f"{label}: restic check passed ({read}) in {duration:.1f} s{note}"
    else:
        first = findings[0] if findings else fatal or "errors without detail"
        steps = next((a for a in advice if a.startswith("restic ")), advice[0] if advice
                     else "see https://restic.readthedocs.io/en/stable/077_troubleshooting.html")
        text = (f"{label}: restic check found {max(errors, 1)} error(s) ({read}): "
                f"{first[:200]}; next: {steps}")
    return CheckOutcome(label, ok=not damaged, damaged=damaged, summary=text, read=read,
                        advice=tuple(advice), errors=tuple(findings),
                        broken_packs=tuple(summary.get("broken_packs") or ()),
                        duration_s=duration, restic_summary=summary)
