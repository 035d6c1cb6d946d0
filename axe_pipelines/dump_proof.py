"""Verify while writing: a tier-A dump goes into restic through the verifier
(postgres/verify_stream.py), which checks the stream on its way and fails the command, so
restic stores no snapshot, when the dump is incomplete or its rows disagree with the counts
taken in its exported snapshot. This module builds that command and reads back what the
verifier proved (the `restorable` check reports it) or why it stopped the dump.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from axe_pipelines.postgres.verify_stream import (
    ENV_SPEC,
    ENV_STDERR,
    command,
    read_result,
    write_spec,
)
from axe_pipelines.readback import PROVED_WHILE_WRITING, DumpCheck


@dataclass(frozen=True)
class VerifiedDump:
    """The verifier's command for one dump, its environment and its files (in the run's own
    folder, so a killed run's files are swept with it)."""

    argv: list[str]
    env: dict[str, str]
    spec: Path
    result: Path

    def proof(self) -> DumpCheck | None:
        """Return what the verifier proved about the stored dump, or None when it did not
        verify it (an archive version it does not read: the check reads it back instead)."""
        data = read_result(self.result)
        if not data or not data.get("ok") or not data.get("verified"):
            return None
        tables = {str(k): int(v) for k, v in (data.get("tables") or {}).items()}
        return DumpCheck(ok=True, tables_in_dump=len(tables), rows_in_dump=sum(tables.values()),
                         bytes=int(data.get("bytes") or 0), problems=[],
                         proved=PROVED_WHILE_WRITING)

    def reason(self) -> str | None:
        """Return why the verifier stopped the dump (None when it did not, or pg_dump's own
        failure, which pg_dump's stderr tells better)."""
        data = read_result(self.result)
        if not data or data.get("ok") or data.get("pg_dump_failed"):
            return None
        return str(data.get("reason") or "") or None

    def remove(self) -> None:
        """Remove the spec and result files."""
        for path in (self.spec, self.result):
            path.unlink(missing_ok=True)


def verified_dump(dump_argv: list[str], env: dict[str, str], *, fmt: str,
                  counts: dict[str, int], errfile: Path) -> VerifiedDump:
    """Given pg_dump's command line and environment, the dump's format, the row counts of
    its snapshot and the file collecting the tools' stderr, write the verifier's spec (0600,
    beside `errfile`) and return the VerifiedDump restic runs. Raise OSError if the spec
    cannot be written."""
    spec = errfile.with_suffix(".verify.json")
    result = errfile.with_suffix(".proof.json")
    result.unlink(missing_ok=True)
    write_spec(spec, fmt=fmt, counts=counts, result=result)
    return VerifiedDump(command(dump_argv),
                        {**env, ENV_SPEC: str(spec), ENV_STDERR: str(errfile)}, spec, result)


def failure_line(exc: BaseException, label: str, tool: str, child_stderr: str = "") -> str:
    """Given why a dump item failed, its label (`db/frame`), its dump tool and that tool's
    stderr, return the item's one-line error: restic's first line, with the tool's own reason
    when restic only says "command failed"."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = "\n".join(filter(None, [child_stderr, getattr(exc, "detail", "")]))
    if "command failed" in text and detail:
        # restic says only "command failed: exit status N"; the dump tool's own message went
        # to its stderr file and restic's stderr ("subprocess pg_dump: pg_dump: error: …").
        said = [ln.split(f"{tool}: error:", 1)[1].strip() for ln in detail.splitlines()
                if f"{tool}: error:" in ln]
        reason = f": {said[0]}" if said else "; see the server log or run `axe doctor`"
        text = f"{text} ({tool} for {label} failed{reason})"
    return text
