"""Metadata as the asset pages show it to people: sizes beside byte counts, one row-count table
per dump, short snapshot ids (the full id in the table beside it), times in the customer's
zone. The machine-read fields keep their names and types (byte counts stay ints, times stay
ISO 8601 with their offset), so the CLI and the history readers read them as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from axe_pipelines.progress import human_bytes

SHORT_ID = 8  # as `restic snapshots` prints them
ROWS_SCHEMA = dg.TableSchema(columns=[dg.TableColumn("table", "string"),
                                      dg.TableColumn("rows", "int")])


def short_id(snapshot_id: str | None) -> str:
    """Given a restic snapshot id, return its short form (the first 8 hex digits)."""
    return (snapshot_id or "")[:SHORT_ID]


def sizes(**byte_counts: int) -> dict[str, object]:
    """Given byte counts by name (`bytes_read=...`), return each as its int and, beside it, as
    a size people read (`size_read: "11.8 MiB"`)."""
    out: dict[str, object] = {}
    for name, count in byte_counts.items():
        out[name] = dg.MetadataValue.int(int(count))
        out[name.replace("bytes_", "size_", 1)] = dg.MetadataValue.text(human_bytes(count))
    return out


def in_zone(when: datetime, zone: str) -> str:
    """Given an aware time and the customer's zone, return it as ISO 8601 in that zone
    (`2026-05-20T03:00:00+09:00`), which both people and `datetime.fromisoformat` read."""
    return when.astimezone(ZoneInfo(zone)).isoformat()


def row_count_table(counts: Mapping[str, int]) -> dg.TableMetadataValue:
    """Given a dump's row counts, return them as the one table the dump's page shows."""
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"table": t, "rows": int(n)}) for t, n in sorted(counts.items())],
        schema=ROWS_SCHEMA)


def row_counts_from(value: object) -> dict[str, int]:
    """Given a dump materialization's `row_counts` entry — the table written since issue 11,
    or the JSON mapping written before — return {table: rows}. Raise ValueError if it is
    neither."""
    if isinstance(value, dg.TableMetadataValue):
        return {str(r.data["table"]): int(r.data["rows"]) for r in value.records}
    if isinstance(value, dg.JsonMetadataValue):
        value = value.value
    if isinstance(value, Mapping):
        return {str(k): int(v) for k, v in value.items()}
    raise ValueError(f"row_counts is neither a table nor a mapping: {type(value).__name__}")
