"""Password sources: where a secret comes from, and how to hand it to a child process.

A secret is never put in a process argument, a log line or Dagster metadata. Every source has
one value, `resolve()`: for a Keychain item, a command or a file it is the first line, without
surrounding whitespace (for a one-line source exactly what restic itself would read). restic
gets that same value as `RESTIC_PASSWORD` in its own environment, never
`RESTIC_PASSWORD_COMMAND`/`_FILE`: restic reads a command's or file's *whole* trimmed output, so a
two-line file would be one password for axe (and PostgreSQL) and another for restic. PostgreSQL
clients get it as `PGPASSWORD` in theirs. (Only processes of the same user, or root, can read
another process's environment; restic's own children, such as the command of
`--stdin-from-command`, inherit it.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from axe_pipelines.errors import Unusable


class SecretError(Unusable):
    """A password source could not produce its value (the message never contains the value)."""


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def describe(self) -> str:  # pragma: no cover - overridden
        """Return where the password comes from, for messages (never the value)."""
        raise NotImplementedError

    def resolve(self) -> str:  # pragma: no cover - overridden
        """Return the password. Raise SecretError (without the value) when the source fails."""
        raise NotImplementedError

    def restic_env(self) -> dict[str, str]:
        """Return the environment that hands restic exactly `resolve()`'s value (never in
        argv). Raise SecretError (without the value) when the source fails."""
        return {"RESTIC_PASSWORD": self.resolve()}


class KeychainSource(_Source):
    """macOS Keychain: `security find-generic-password -w -s SERVICE [-a ACCOUNT]`."""

    keychain: str = Field(description="the Keychain item's service name")
    account: str | None = None

    def _argv(self) -> list[str]:
        argv = ["security", "find-generic-password", "-w", "-s", self.keychain]
        if self.account:
            argv += ["-a", self.account]
        return argv

    def describe(self) -> str:
        return f"macOS Keychain item {self.keychain!r}"

    def resolve(self) -> str:
        return _run_password_command(self._argv(), self.describe())


class CommandSource(_Source):
    """A command whose standard output's first line is the password."""

    command: list[str] = Field(min_length=1)

    def describe(self) -> str:
        return f"password command {self.command[0]!r}"

    def resolve(self) -> str:
        return _run_password_command(self.command, self.describe())


class EnvSource(_Source):
    """An environment variable of the process running axe (or the Dagster run worker)."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    def describe(self) -> str:
        return f"environment variable {self.env}"

    def resolve(self) -> str:
        value = os.environ.get(self.env)
        if not value:
            raise SecretError(f"{self.describe()} is not set (or empty); export it before running")
        return value


class FileSource(_Source):
    """A file holding the password on its first line (keep it mode 0600)."""

    file: Path

    def describe(self) -> str:
        return f"password file {self.file}"

    def resolve(self) -> str:
        path = self.file.expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise SecretError(f"cannot read {self.describe()}: {exc.strerror}") from None
        value = first_line(text)
        if not value:
            raise SecretError(f"{self.describe()} is empty (its first line holds the password)")
        return value


SOURCE_KINDS: tuple[Literal["keychain", "command", "env", "file"], ...] = (
    "keychain",
    "command",
    "env",
    "file",
)
_CLASSES = {"keychain": KeychainSource, "command": CommandSource, "env": EnvSource,
            "file": FileSource}


def _source_kind(value: Any) -> str | None:
    """Which kind of source a YAML mapping (or model) is: the one kind key it has."""
    if isinstance(value, dict):
        kinds = [k for k in SOURCE_KINDS if k in value]
        return kinds[0] if len(kinds) == 1 else None
    for kind, cls in _CLASSES.items():
        if isinstance(value, cls):
            return kind
    return None


SecretSource = Annotated[
    Annotated[KeychainSource, Tag("keychain")]
    | Annotated[CommandSource, Tag("command")]
    | Annotated[EnvSource, Tag("env")]
    | Annotated[FileSource, Tag("file")],
    Discriminator(
        _source_kind,
        custom_error_type="password_source",
        custom_error_message="a password source has exactly one of: keychain, command, env, file",
    ),
]


def first_line(text: str) -> str:
    """Given a password file's or command's output, return its first line without surrounding
    whitespace (the password; what follows it is not part of it)."""
    lines = text.splitlines()
    return lines[0].strip() if lines else ""


def _run_password_command(argv: list[str], what: str) -> str:
    """Runs a password command and returns the first line of its output; never logs the value."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise SecretError(f"{what}: command {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise SecretError(f"{what}: command timed out after 30 s") from None
    if proc.returncode != 0:
        raise SecretError(f"{what}: command exited {proc.returncode}: {proc.stderr.strip()[:200]}")
    value = first_line(proc.stdout)
    if not value:
        raise SecretError(f"{what}: command printed nothing on its first line")
    return value
