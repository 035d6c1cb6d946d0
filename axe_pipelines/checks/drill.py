"""Asset check of the restore drill: *restorable_everywhere* on `<customer>/drill/restore_drill`.

The evaluation is the plain DrillReport (actions/drill.py); this module only turns it into a
check spec and result.
"""

from __future__ import annotations

import dagster as dg

from axe_pipelines.actions.drill_report import DrillReport
from axe_pipelines.names import RESTORABLE_EVERYWHERE


def restorable_everywhere_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    """Return the spec of `restorable_everywhere` on the drill asset."""
    return dg.AssetCheckSpec(
        RESTORABLE_EVERYWHERE, asset=key,
        description="Every configured database and required folder was restored by the drill "
                    "and passed its checks, from tier A or, falling back, from tier C or B.")


def restorable_everywhere_result(key: dg.AssetKey,
                                 report: DrillReport) -> dg.AssetCheckResult:
    """Given a drill's report, return `restorable_everywhere` (ERROR when the drill could not
    run, or any database or required folder was proven by no tier)."""
    unproven = report.unproven
    if report.fatal:
        description = f"the drill could not run: {report.fatal}"
    elif unproven:
        description = "not proven by any tier: " + "; ".join(
            f"{i.label} ({'; '.join(f'{a.tier}: {a.reason}' for a in i.attempts)})"
            for i in unproven)
    else:
        served = sorted({i.served.tier for i in report.items if i.served})
        description = (f"{len(report.items)} item(s) proven (served by "
                       f"{', '.join(served) or '-'})")
    return dg.AssetCheckResult(
        asset_key=key, check_name=RESTORABLE_EVERYWHERE, passed=report.ok,
        severity=dg.AssetCheckSeverity.ERROR, description=description[:2000],
        metadata={"unproven": [i.label for i in unproven],
                  "fallbacks": report.fallback_lines(),
                  "evidence_snapshot": report.evidence_snapshot or ""})
