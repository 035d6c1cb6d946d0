"""A notification as data (`Message`) and its rendering into a Slack payload.

The payload has `text` (what notifications and old clients show) and `blocks`: a header with
the status and the summary, the table as a monospace code block with aligned columns, the
bullet lines and the link. Slack rejects a section longer than 3000 characters and a header
longer than 150, so every piece is cut to fit with a "… N more rows" line rather than sent
whole and refused.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SECTION_LIMIT = 3000  # Slack: a section's text, in characters
HEADER_LIMIT = 150  # Slack: a header block's plain text
CELL_WIDTH = 40  # a longer cell is cut: one long snapshot path must not push the table apart
LINE_WIDTH = 250  # a table line, before escaping (which at most quintuples it)
BULLET_WIDTH = 500  # a bullet, before escaping
STATUS_OK = ":large_green_circle:"
STATUS_FAILED = ":red_circle:"


@dataclass(frozen=True)
class Message:
    """One notification: a summary line with its status, then optional table, bullets and link.

    `columns` names the table's columns and `rows` holds its cells (shorter rows are padded);
    `bullets` are one-line remarks under an optional `bullets_title`; `link` is an http(s) URL
    shown as `link_text`.
    """

    summary: str
    ok: bool
    columns: Sequence[str] = ()
    rows: Sequence[Sequence[str]] = ()
    bullets: Sequence[str] = ()
    bullets_title: str = ""
    link: str | None = None
    link_text: str = "Open in Dagster"

    def __post_init__(self) -> None:
        # Tuples: a Message is hashable and cannot change after it is built.
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        object.__setattr__(self, "rows", tuple(tuple(str(c) for c in r) for r in self.rows))
        object.__setattr__(self, "bullets", tuple(str(b) for b in self.bullets))


def slack_payload(message: Message) -> dict[str, Any]:
    """Given a message, return the JSON body for a Slack webhook or chat.postMessage (`text`
    and `blocks`; the caller adds `channel`), every block within Slack's size limits."""
    status = STATUS_OK if message.ok else STATUS_FAILED
    headline = " ".join(f"{status} {message.summary}".split())
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _cut(headline, HEADER_LIMIT), "emoji": True}},
    ]
    if message.rows or message.columns:
        blocks.append(_section(table_text(message.columns, message.rows)))
    if message.bullets:
        blocks.append(_section(bullets_text(message.bullets, message.bullets_title)))
    if message.link:
        blocks.append(_section(f"<{_link_target(message.link)}|{escape(message.link_text)}>"))
    return {"text": escape(_cut(headline, SECTION_LIMIT // 5)), "blocks": blocks}


def table_text(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Given column names and rows of cells, return a mrkdwn code block with the columns
    aligned (wide characters count double) that fits a Slack section: rows that do not fit
    are replaced by a line "… N more rows"."""
    width = max([len(columns)] + [len(r) for r in rows])
    grid = [_pad_row(columns, width)] if columns else []
    body = [_pad_row(r, width) for r in rows]
    widths = [max([_display_width(r[i]) for r in grid + body] + [0]) for i in range(width)]
    head = [_line(r, widths) for r in grid]
    if head:
        head.append(_cut("-" * _display_width(head[0]), LINE_WIDTH))
    lines = [_line(r, widths) for r in body]
    fence_open, fence_close = "```\n", "\n```"
    budget = SECTION_LIMIT - len(fence_open) - len(fence_close)
    kept = [escape(h) for h in head]  # two lines of at most 5 x LINE_WIDTH: always fit
    used = sum(len(k) + 1 for k in kept)
    for index, text in enumerate(lines):
        more = _more_line(len(lines) - index - 1, "row")
        room = budget - used - (len(more) + 1 if index < len(lines) - 1 else 0)
        piece = escape(text)
        if len(piece) + 1 > room:
            kept.append(_more_line(len(lines) - index, "row"))
            break
        kept.append(piece)
        used += len(piece) + 1
    return fence_open + "\n".join(kept) + fence_close


def bullets_text(bullets: Sequence[str], title: str = "") -> str:
    """Given one-line remarks (and a title), return mrkdwn bullet lines that fit a Slack
    section: the ones that do not fit become "… N more"."""
    kept = [f"*{escape(title)}*"] if title else []
    used = sum(len(k) + 1 for k in kept)
    for index, bullet in enumerate(bullets):
        piece = "• " + escape(_cut(" ".join(bullet.split()), BULLET_WIDTH))
        reserve = len(_more_line(len(bullets), "")) + 1 if index < len(bullets) - 1 else 0
        if used + len(piece) + 1 + reserve > SECTION_LIMIT:
            kept.append(_more_line(len(bullets) - index, ""))
            break
        kept.append(piece)
        used += len(piece) + 1
    return "\n".join(kept)


def escape(text: str) -> str:
    """Given text, return it with the three characters Slack's mrkdwn treats as control
    characters (&, <, >) escaped, as Slack asks for all message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, SECTION_LIMIT)}}


def _more_line(count: int, what: str) -> str:
    plural = "s" if what and count != 1 else ""
    return f"… {count} more {what}{plural}".rstrip()


def _link_target(url: str) -> str:
    # "<url|label>" is Slack's link syntax: these three would end it early.
    return url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")


def _pad_row(row: Sequence[str], width: int) -> list[str]:
    cells = [_cell(c) for c in row]
    return cells + [""] * (width - len(cells))


def _cell(value: str) -> str:
    # A backtick would close the code block; a newline would break the row.
    text = " ".join(str(value).replace("`", "'").split())
    return _cut_display(text, CELL_WIDTH)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = [c + " " * (w - _display_width(c)) for c, w in zip(cells, widths, strict=True)]
    return _cut("  ".join(padded).rstrip(), LINE_WIDTH)


def _display_width(text: str) -> int:
    """Columns a monospace font gives the text: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cut_display(text: str, width: int) -> str:
    if _display_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        used += _display_width(ch)
        if used > width - 1:
            break
        out.append(ch)
    return "".join(out) + "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
