"""Repository care (issue 10), plain Python for the weekly Dagster jobs and `axe prune` /
`axe check` alike:

    policy.py   RetentionPolicy (a tier's `retention:` in customers.yaml), restic durations
    planner.py  plan_retention: which snapshots a policy keeps (and why) or forgets; pure
    forget.py   plan_forget / apply_forget on a repository (forget <ids>, prune), and the guard
                that never prunes a ring peer's copy of its own backups
    check.py    restic check with a rotating read-data subset, read into a CheckOutcome
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from axe_pipelines.care.check import CheckOutcome, check_plan, rotation_week, run_check
    from axe_pipelines.care.forget import (
        ForgetResult,
        ProtectedRepository,
        apply_forget,
        parse_prune,
        plan_forget,
        refuse_peer_copy,
    )
    from axe_pipelines.care.planner import Decision, ForgetPlan, SetDecision, plan_retention
    from axe_pipelines.care.policy import (
        TIERS,
        Duration,
        RetentionPolicy,
        Tier,
        parse_duration,
        tier_policy,
    )

# Loaded on first use: config.py imports care.policy (the tiers' `retention:`), and the
# planner imports backup.py, which imports config.py; eager imports here would be a cycle.
_HOME = {
    "check": ("CheckOutcome", "check_plan", "rotation_week", "run_check"),
    "forget": ("ForgetResult", "ProtectedRepository", "apply_forget", "parse_prune",
               "plan_forget", "refuse_peer_copy"),
    "planner": ("Decision", "ForgetPlan", "SetDecision", "plan_retention"),
    "policy": ("TIERS", "Duration", "RetentionPolicy", "Tier", "parse_duration", "tier_policy"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}


def __getattr__(name: str) -> Any:
    """Given a name this package exports (or one of its modules), import and return it."""
    if name in _HOME:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TIERS",
    "CheckOutcome",
    "Decision",
    "Duration",
    "ForgetPlan",
    "ForgetResult",
    "ProtectedRepository",
    "RetentionPolicy",
    "SetDecision",
    "Tier",
    "apply_forget",
    "check_plan",
    "parse_duration",
    "parse_prune",
    "plan_forget",
    "plan_retention",
    "refuse_peer_copy",
    "rotation_week",
    "run_check",
    "tier_policy",
]
