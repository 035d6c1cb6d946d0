"""Asset checks of tier A: *coverage* of the night's set and *restorable* per dump.

The evaluation is plain Python (backup.coverage, backup.verify_dump); these functions only turn
it into Dagster check specs and results.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from axe_pipelines.backup import Gap
from axe_pipelines.readback import DumpCheck

COVERAGE = "coverage"
RESTORABLE = "restorable"


def coverage_spec(set_key: dg.AssetKey) -> dg.AssetCheckSpec:
    """Return the spec of `coverage` on the night's set."""
    return dg.AssetCheckSpec(
        COVERAGE, asset=set_key,
        description="Every configured database, server's roles and required folder has a "
                    "complete snapshot in the night's set (the runbook's index-postgres and "
                    ".local/files pitfalls).")


def restorable_spec(dump_key: dg.AssetKey) -> dg.AssetCheckSpec:
    """Return the spec of `restorable` on one dump."""
    return dg.AssetCheckSpec(
        RESTORABLE, asset=dump_key,
        description="The dump is complete and every table counted in its exported snapshot "
                    "is in it with exactly that many rows: proved while restic stored it (a "
                    "dump that fails this is never stored), or, run on its own, by reading "
                    "the dump back out of the repository through pg_restore.")


def coverage_result(set_key: dg.AssetKey, gaps: Iterable[Gap], members: int) -> dg.AssetCheckResult:
    """Given what the set lacks and how many members it has, return `coverage` (ERROR)."""
    gaps = list(gaps)
    return dg.AssetCheckResult(
        asset_key=set_key, check_name=COVERAGE, passed=not gaps,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("complete" if not gaps else "missing: " + "; ".join(g.reason for g in gaps)),
        metadata={"members": members, "missing": [g.item.label for g in gaps],
                  "reasons": [g.reason for g in gaps]})


def restorable_result(dump_key: dg.AssetKey, snapshot_id: str | None,
                      check: DumpCheck | None, error: str | None = None) -> dg.AssetCheckResult:
    """Given what reading the dump back found (or, without `check`, why it could not be
    read), return `restorable` (ERROR)."""
    if check is None:
        return dg.AssetCheckResult(
            asset_key=dump_key, check_name=RESTORABLE, passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=error or "no dump to check", metadata={"snapshot_id": snapshot_id or ""})
    return dg.AssetCheckResult(
        asset_key=dump_key, check_name=RESTORABLE, passed=check.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"restorable (proved {check.proved})" if check.ok
        else "; ".join(check.problems[:10]),
        metadata={"snapshot_id": snapshot_id or "", "tables_in_dump": check.tables_in_dump,
                  "rows_in_dump": check.rows_in_dump, "bytes_checked": check.bytes,
                  "proved": check.proved, "problems": check.problems})
