"""The one error type an operator sees, and the exit code each kind of failure gives.

Every failure an operator can cause (a bad customers.yaml, a wrong password, a missing
repository, an unreachable peer, a failed restore) is an `AxeError` or a subclass; `axe`'s
`main` catches `AxeError` once, prints its one line and exits with its `exit_code`. Anything
else is a bug and keeps its traceback (shown with `--debug` / `AXE_DEBUG=1`).

Exit codes (documented in the README):
  0 success
  1 an item or check failed (`ItemFailed`): the other items still ran
  2 bad configuration or usage (`ConfigError` in config.py, `UsageError`)
  3 a tool, repository or instance is unusable before anything started (`Unusable`)
  130 / 143 interrupted by SIGINT / SIGTERM
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_UNUSABLE = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class AxeError(Exception):
    """A failure with an operator's message: what failed, where, and what to do next.

    Given the message (one line, or a headline and indented detail lines), `exit_code` is the
    process exit status `axe` ends with when this error reaches `main`.
    """

    exit_code: int = EXIT_FAILED


class UsageError(AxeError):
    """The command line asks for something that cannot be (unknown target, bad --as-of)."""

    exit_code = EXIT_CONFIG


class Unusable(AxeError):
    """A tool, repository or the Dagster instance cannot be used: nothing was started."""

    exit_code = EXIT_UNUSABLE


class ItemFailed(AxeError):
    """One item (a dump, a copy, a restore, a check) failed; the others may have gone on."""

    exit_code = EXIT_FAILED
