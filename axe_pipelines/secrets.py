"""Password sources: where a secret comes from, and how to hand it to a child process.

A secret is never put in a process argument, a log line or Dagster metadata. restic gets it by
`RESTIC_PASSWORD_COMMAND` (Keychain, command) or `RESTIC_PASSWORD_FILE` (file) — restic runs or
reads the source itself, so the value never passes through this process — or, for an environment
variable source, by `RESTIC_PASSWORD` in the child's environment. PostgreSQL clients get
`PGPASSWORD` in their environment.
"""

from __future__ import annotations

import os
import shlex
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
        """Return the environment variables that make restic read this password (no value in
        argv; for a command or Keychain source not even in this process). Raise SecretError
        when the source is unusable."""
        raise NotImplementedError  # pragma: no cover


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

    def restic_env(self) -> dict[str, str]:
        return {"RESTIC_PASSWORD_COMMAND": shlex.join(self._argv())}


class CommandSource(_Source):
    """A command whose standard output (first line) is the password."""

    command: list[str] = Field(min_length=1)

    def describe(self) -> str:
        return f"password command {self.command[0]!r}"

    def resolve(self) -> str:
        return _run_password_command(self.command, self.describe())

    def restic_env(self) -> dict[str, str]:
        return {"RESTIC_PASSWORD_COMMAND": shlex.join(self.command)}


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

    def restic_env(self) -> dict[str, str]:
        return {"RESTIC_PASSWORD": self.resolve()}


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
        value = text.splitlines()[0] if text else ""
        if not value:
            raise SecretError(f"{self.describe()} is empty")
        return value

    def restic_env(self) -> dict[str, str]:
        path = self.file.expanduser()
        if not path.is_file():
            raise SecretError(f"{self.describe()} does not exist")
        return {"RESTIC_PASSWORD_FILE": str(path)}


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
    value = proc.stdout.splitlines()[0] if proc.stdout else ""
    if not value:
        raise SecretError(f"{what}: command printed nothing")
    return value
