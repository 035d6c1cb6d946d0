"""What the CLI says about a Dagster run it launched in-process: the failure of its last
failed step, and its asset checks (each with its own severity)."""

from __future__ import annotations

from collections.abc import Callable


def run_failure(result: object) -> str:
    """The last step failure's message of a Dagster run."""
    fails = [e for e in result.all_events  # type: ignore[attr-defined]
             if e.event_type_value == "STEP_FAILURE"]
    if not fails:
        return "the run failed; see the Dagster run log"
    err = fails[-1].step_failure_data.error
    return (err.message if err else "step failed").strip().removeprefix(
        "dagster._core.definitions.events.Failure: ")


def print_checks(result: object, *, say: Callable[[str], None] = print,
                 failed_only: bool = False) -> bool:
    """Says each asset check of a Dagster run (only those that did not pass with
    `failed_only`); True when none failed with ERROR severity (a WARN keeps it True)."""
    ok = True
    for e in result.all_events:  # type: ignore[attr-defined]
        if e.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        check = e.asset_check_evaluation_data
        if check.passed and failed_only:
            continue
        sev = check.severity.value if not check.passed else ""
        mark = "ok" if check.passed else ("WARN" if sev == "WARN" else "FAILED")
        ok = ok and (check.passed or sev == "WARN")
        say(f"check {check.asset_key.to_user_string()}:{check.check_name}: {mark}"
            + (f" ({check.description})" if not check.passed and check.description else ""))
    return ok
