"""The command restic runs for a database dump: verify while writing.

    restic backup --stdin-from-command -- python -m axe_pipelines.postgres.verify_stream -- \\
        pg_dump ... --snapshot=...

It runs pg_dump, copies its stdout to its own stdout (restic's stdin) unchanged, and checks
the stream on the way (archive_stream.py): a custom-format archive is structurally complete,
a plain script has every COPY section ended and pg_dump's closing line, and every table
counted in the dump's exported snapshot has exactly that many COPY rows. When pg_dump fails
or anything disagrees it exits non-zero, so restic stores no snapshot at all: a dump that is
not restorable is never stored as a good one.

What it is told comes through the environment, never argv: AXE_VERIFY_SPEC names a 0600 JSON
file ({"format": "custom" | "plain", "counts": {table: rows}, "result": path}), where it
writes what it found (`result`: ok, tables, rows, bytes, or the one-line reason);
AXE_DUMP_STDERR names the file pg_dump's stderr and the reason line are appended to.

Standard library only (plus archive_stream.py): it starts in milliseconds, no Dagster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from axe_pipelines.postgres.archive_stream import (
    ArchiveChecker,
    ScriptChecker,
    StreamError,
    Unsupported,
    compare_counts,
)

ENV_SPEC = "AXE_VERIFY_SPEC"
ENV_STDERR = "AXE_DUMP_STDERR"
MODULE = "axe_pipelines.postgres.verify_stream"
BLOCK = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux: bigger pipes, fewer wake-ups per MiB


def command(dump_argv: list[str]) -> list[str]:
    """Given pg_dump's command line, return the verifier's (this interpreter, this module)."""
    return [sys.executable, "-m", MODULE, "--", *dump_argv]


def write_spec(path: Path, *, fmt: str, counts: dict[str, int], result: Path) -> None:
    """Given where, the dump's format, its snapshot's row counts and where the verifier's
    result goes, write the spec file (0600, made anew). Raise OSError if it cannot."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"format": fmt, "counts": counts, "result": str(result)}, fh)


def read_result(path: Path) -> dict[str, Any] | None:
    """Given the result file a verifier wrote, return its content, or None when there is none
    (the verifier never ran, or died before it ended)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _grow(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, BLOCK)
    except (OSError, ImportError):
        pass  # not a pipe, not Linux, or above pipe-max-size: the default size works too


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_result(path: str, content: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(content, fh)
    os.replace(tmp, path)


def _copy(proc: subprocess.Popen, checker: ArchiveChecker | ScriptChecker | None
          ) -> tuple[ArchiveChecker | ScriptChecker | None, str]:
    """Copy pg_dump's stdout to ours, feeding `checker`; return it (None once the archive
    turned out to be of a version it does not read) and why it stopped early ("" if not)."""
    assert proc.stdout is not None
    src = proc.stdout.fileno()
    _grow(src)
    _grow(1)
    while data := os.read(src, BLOCK):
        try:
            _write_all(1, data)
        except BrokenPipeError:
            return checker, "restic stopped reading the dump"
        if checker is not None:
            try:
                checker.feed(data)
            except Unsupported as exc:
                checker = None  # stored as is; the restorable check reads it back instead
                _note(f"{exc}: not verified while writing")
            except StreamError as exc:
                return checker, str(exc)
    return checker, ""


def _note(line: str) -> None:
    sys.stderr.write(f"axe-verify: {line}\n")


def run(argv: list[str], spec: dict[str, Any], err: IO[bytes]) -> int:
    """Given pg_dump's argv, the spec and the stderr file, run the dump through the check;
    write the result file and return the exit status (0: every check passed)."""
    fmt, counts = spec["format"], {str(k): int(v) for k, v in spec["counts"].items()}
    checker: ArchiveChecker | ScriptChecker | None = (
        ArchiveChecker() if fmt == "custom" else ScriptChecker())
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    try:
        checker, stopped = _copy(proc, checker)
    except OSError as exc:
        stopped = f"reading pg_dump's output failed: {exc}"
    if stopped:
        proc.kill()  # the stream is already known bad: no need to dump the rest
    code = proc.wait()
    result: dict[str, Any] = {"ok": False, "format": fmt, "verified": checker is not None}
    try:
        if stopped:
            raise StreamError(stopped)
        if code != 0:
            result["pg_dump_failed"] = True
            raise StreamError(f"pg_dump exited with status {code}")
        if checker is not None:
            facts = checker.finish()
            problems = compare_counts(facts.tables, counts)
            result.update(tables=facts.tables, bytes=facts.bytes, version=facts.version,
                          entries=facts.entries, blocks=facts.blocks, problems=problems)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise StreamError(f"{problems[0]}{more}")
        result["ok"] = True
    except StreamError as exc:
        result["reason"] = str(exc)
    _write_result(spec["result"], result)
    if not result["ok"]:
        err.write(f"axe-verify: error: {result['reason']}; the dump was not stored\n".encode())
        err.flush()
        return code or 1
    return 0


def main(args: list[str]) -> int:
    """`python -m axe_pipelines.postgres.verify_stream -- pg_dump ...`: return the exit
    status (2 when called without a spec or a command)."""
    # Ctrl-C / SIGTERM reach restic's whole group: end at once, non-zero, no traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    argv = args[1:] if args[:1] == ["--"] else args
    spec_path = os.environ.get(ENV_SPEC)
    if not argv or not spec_path:
        _note(f"usage: {ENV_SPEC}=<spec file> python -m {MODULE} -- pg_dump ...")
        return 2
    spec = json.loads(Path(spec_path).read_text())
    errname = os.environ.get(ENV_STDERR)
    if not errname:
        return run(argv, spec, sys.stderr.buffer)
    with open(errname, "ab") as err:
        return run(argv, spec, err)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
