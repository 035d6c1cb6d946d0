"""postgres/archive_stream.py and verify_stream.py without a server, on real pg_dump 15
output saved from a test cluster (tests/unit/data/sample-pg15.*: `pg_dump -Fc -Z0` and
`pg_dump -Fp` of a database holding a table with escaped newlines and tabs, a quoted schema
and table with bytea, an empty table, a table named like a keyword, two partitions, an
unlogged table, rows that look like `\\.`, and a large object)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from axe_pipelines.postgres.archive_stream import (
    ArchiveChecker,
    ScriptChecker,
    StreamError,
    Unsupported,
)

DATA = Path(__file__).parent / "data"
ARCHIVE = (DATA / "sample-pg15.pgdump").read_bytes()
SCRIPT = (DATA / "sample-pg15.sql").read_bytes()
# As `pg_restore -a -f -` of the archive counts them (postgres/dump.read_dump).
EXPECTED = {'"Odd Schema"."Weird Name"': 20, "public.dotline": 3, "public.empty_one": 0,
            "public.parted_a": 100, "public.parted_b": 100, 'public."select"': 2,
            "public.t1": 300, "public.unl": 1}


def fed(checker, data: bytes, size: int):
    for i in range(0, len(data), size):
        checker.feed(data[i:i + size])
    return checker.finish()


@pytest.mark.parametrize("size", [1, 5, 7, 4096, len(ARCHIVE)])
def test_an_archive_in_pieces_of_any_size_counts_every_table(size):
    facts = fed(ArchiveChecker(), ARCHIVE, size)
    assert facts.tables == EXPECTED
    assert (facts.version, facts.entries, facts.blocks, facts.bytes) == ("1.14", 9, 9,
                                                                         len(ARCHIVE))


@pytest.mark.parametrize("size", [1, 13, len(SCRIPT)])
def test_a_script_in_pieces_of_any_size_counts_every_table(size):
    assert fed(ScriptChecker(), SCRIPT, size).tables == EXPECTED


def _passing_prefixes(checker_type, data: bytes, ends) -> list[int]:
    """The prefix lengths of `data` that a fresh checker of `checker_type` accepts as
    complete."""
    passed = []
    for end in ends:
        checker = checker_type()
        checker.feed(data[:end])
        try:
            checker.finish()
            passed.append(end)
        except StreamError:
            pass
    return passed

def test_an_archive_cut_anywhere_is_not_complete():
    """Prefixes from nothing to one byte short (every 29th, and each of the last 600 bytes:
    the last rows, the `\\.` chunk, the end of data and the large object): none passes."""
    ends = sorted({*range(0, len(ARCHIVE), 29), *range(len(ARCHIVE) - 600, len(ARCHIVE))})
    assert _passing_prefixes(ArchiveChecker, ARCHIVE, ends) == []


def test_a_script_cut_before_its_closing_comment_is_not_complete():
    closing = SCRIPT.index(b"-- PostgreSQL database dump complete")
    assert _passing_prefixes(ScriptChecker, SCRIPT, range(0, closing + 30, 7)) == []
    checker = ScriptChecker()
    checker.feed(SCRIPT[:SCRIPT.index(b"\\.\n", SCRIPT.index(b"COPY public.t1")) - 1])
    with pytest.raises(StreamError, match="inside the data of public.t1: it is truncated"):
        checker.finish()


def _block_of(table: bytes) -> int:
    """Where the data block of `table` starts (its type byte)."""
    first_row = ARCHIVE.index(b"1\trow 1") if table == b"t1" else None
    assert first_row is not None
    return first_row - 5 - 6  # the row's length; the block's type byte and dump id


@pytest.mark.parametrize(("damage", "says"), [
    (lambda a: b"XGDMP" + a[5:], "not a pg_dump custom-format archive"),
    (lambda a: a + b"\x00", "stray bytes after the last data block"),
    (lambda a: a[:_block_of(b"t1") + 1] + b"\x00\x99\x99\x00\x00" + a[_block_of(b"t1") + 6:],
     "data of TOC entry"),  # another entry's id where t1's block starts
    (lambda a: a.replace(b"\x00\x05\x00\x00\x00\\.\n\n\n", b"\x00\x05\x00\x00\x00xx\n\n\n", 1),
     "ends without its `\\.` line"),
    (lambda a: a[:_block_of(b"t1") + 6] + b"\x01" + a[_block_of(b"t1") + 7:],
     "negative length"),
])
def test_a_corrupt_archive_says_what_is_wrong(damage, says):
    with pytest.raises(StreamError, match=says.replace("\\", "\\\\").replace("`", "`")):
        fed(ArchiveChecker(), damage(ARCHIVE), 4096)


def test_an_archive_version_it_does_not_know_is_unsupported_not_wrong():
    newer = ARCHIVE[:5] + bytes([1, 17, 0]) + ARCHIVE[8:]
    with pytest.raises(Unsupported, match="archive version 1.17"):
        fed(ArchiveChecker(), newer, len(newer))


# --- the verifier process: a `cat` of the saved dump stands in for pg_dump --------------------

def verify(tmp_path: Path, dump_cmd: list[str], fmt: str, counts: dict[str, int]):
    from axe_pipelines.postgres.verify_stream import ENV_SPEC, ENV_STDERR, command, write_spec

    result, errfile = tmp_path / "proof.json", tmp_path / "err"
    write_spec(tmp_path / "spec.json", fmt=fmt, counts=counts, result=result)
    assert (tmp_path / "spec.json").stat().st_mode & 0o777 == 0o600
    proc = subprocess.run(command(dump_cmd), capture_output=True, timeout=60, env={
        "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]),
        ENV_SPEC: str(tmp_path / "spec.json"), ENV_STDERR: str(errfile)})
    return proc, json.loads(result.read_text()), errfile.read_text() if errfile.exists() else ""


def test_the_verifier_passes_the_dump_through_unchanged_and_proves_it(tmp_path):
    proc, result, err = verify(tmp_path, ["cat", str(DATA / "sample-pg15.pgdump")], "custom",
                               EXPECTED)
    assert proc.returncode == 0, err
    assert proc.stdout == ARCHIVE
    assert result["ok"] and result["verified"] and result["tables"] == EXPECTED
    assert command_argv_has_no_counts(tmp_path)


def command_argv_has_no_counts(tmp_path: Path) -> bool:
    from axe_pipelines.postgres.verify_stream import command

    return "public.t1" not in " ".join(command(["pg_dump"]))


@pytest.mark.parametrize(("fmt", "dump", "counts", "code", "says"), [
    ("custom", ["cat", "ARCHIVE"], {**EXPECTED, "public.t1": 299}, 1,
     "public.t1: 300 rows in the dump, 299 counted at dump time"),
    ("custom", ["cat", "ARCHIVE"], {**EXPECTED, "public.gone": 1}, 1,
     "public.gone: missing from the dump"),
    ("custom", ["sh", "-c", 'head -c 9000 "$0"', "ARCHIVE"], EXPECTED, 1,
     "the archive is truncated"),
    ("plain", ["sh", "-c", 'sed "/^7\trow 7/d" "$0"', "SCRIPT"], EXPECTED, 1,
     "public.t1: 299 rows in the dump, 300 counted at dump time"),
    ("custom", ["sh", "-c", 'cat "$0"; exit 3', "ARCHIVE"], EXPECTED, 3,
     "pg_dump exited with status 3"),
])
def test_the_verifier_fails_the_command_with_one_line(tmp_path, fmt, dump, counts, code, says):
    files = {"ARCHIVE": str(DATA / "sample-pg15.pgdump"), "SCRIPT": str(DATA / "sample-pg15.sql")}
    proc, result, err = verify(tmp_path, [files.get(a, a) for a in dump], fmt, counts)
    assert proc.returncode == code
    assert not result["ok"] and says in result["reason"]
    [line] = [ln for ln in err.splitlines() if ln.startswith("axe-verify: error:")]
    assert says in line and line.endswith("; the dump was not stored")


def test_the_verifier_module_imports_nothing_heavy():
    """It starts once per dump: no Dagster, pandas or pydantic, nothing else of axe."""
    code = ("import sys, axe_pipelines.postgres.verify_stream as v; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dagster', 'pandas', 'pydantic', 'axe_pipelines')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out.replace("'", '"')) == [
        "axe_pipelines", "axe_pipelines.postgres", "axe_pipelines.postgres.archive_stream",
        "axe_pipelines.postgres.verify_stream"]
