"""`ConfigError`, the one error a bad customers.yaml gives (exit 2), and how pydantic's
validation errors become its problems: one line per bad field, named by its dotted path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from axe_pipelines.errors import EXIT_CONFIG, AxeError


class ConfigError(AxeError):
    """customers.yaml is missing or invalid; `problems` holds one line per bad field."""

    exit_code = EXIT_CONFIG

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{self.path}: {len(problems)} problem(s):\n{lines}")


_SOURCE_TAGS = {"keychain", "command", "env", "file"}


def _format_loc(loc: tuple[Any, ...]) -> str:
    # pydantic puts the chosen union tag after the field (password.env.env); drop the tag.
    raw = [str(p) for p in loc]
    parts = [p for i, p in enumerate(raw)
             if not (p in _SOURCE_TAGS and i > 0 and raw[i - 1] == "password")]
    return ".".join(parts) or "(top level)"


def format_error(err: dict[str, Any]) -> str:
    """Given one pydantic validation error, return its operator line: the field's dotted path
    (a password source's kind tag dropped) and what is wrong with it."""
    loc = _format_loc(tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling; see README 'customers.yaml')"
    if kind == "missing":
        return f"{loc}: required field is missing"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}"
