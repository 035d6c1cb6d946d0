"""The result table `axe backup --local` prints, as plain text.

It used to be `pandas.DataFrame(rows).to_string(index=False)`; importing pandas cost the CLI
about 0.3-0.8 s of every backup for one small table, so this writes the same layout itself:
every column right-aligned to its widest cell or header, one space between columns, and a
float column's cells with the same number of decimals (pandas' trimmed `%.6f`), its header
one character wider (pandas leaves room for a sign).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from axe_pipelines.backup import ItemResult


def _floats(values: Sequence[float]) -> list[str]:
    """Given a column of floats, return them as pandas shows them: `%.6f`, then the trailing
    zeros every value shares trimmed, keeping at least one decimal."""
    cells = [f"{v:.6f}" for v in values]
    while cells and all(c.endswith("0") and not c.endswith(".0") for c in cells):
        cells = [c[:-1] for c in cells]
    return cells


def text_table(rows: Sequence[dict[str, object]]) -> str:
    """Given rows (dicts with the same keys, in column order), return the table as text:
    a header line, then one line per row, laid out as pandas' `to_string(index=False)`."""
    if not rows:
        return ""
    names = list(rows[0])
    columns: list[tuple[int, list[str]]] = []
    for name in names:
        values = [row[name] for row in rows]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numbers and any(isinstance(v, float) for v in values):
            cells = _floats([float(v) for v in values])  # type: ignore[arg-type]
            head = len(name) + 1
        else:
            cells = ["" if v is None else str(v) for v in values]
            head = len(name)
        columns.append((max(head, *(len(c) for c in cells)), cells))
    lines = [" ".join(name.rjust(width) for name, (width, _) in zip(names, columns,
                                                                     strict=True))]
    for i in range(len(rows)):
        lines.append(" ".join(cells[i].rjust(width) for width, cells in columns))
    return "\n".join(lines)


def result_table(results: Sequence[ItemResult], wall_s: float) -> str:
    """Given tier A's item results and the run's wall time, return the table `axe backup
    --local` prints (progress.summarize's rows, sizes for people)."""
    from axe_pipelines.progress import human_bytes, summarize

    rows = summarize(results, wall_s)
    for row in rows:
        for col in ("read", "added"):
            row[col] = human_bytes(row[col])  # type: ignore[arg-type]
    return text_table(rows)
