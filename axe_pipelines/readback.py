"""Reading a tier-A dump back out of the repository: the `restorable` check when the dump was
not verified while it was written (a check run on its own from the UI, an archive version
the verifier does not read). Complete archive, and every table counted at dump time in it
with exactly that many rows. A dump made by a backup run was proved so while restic stored
it (dump_proof.py); damage to the stored packs later is what `axe check` and the drill meet."""

from __future__ import annotations

from dataclasses import dataclass

from axe_pipelines.damage import explain_damage
from axe_pipelines.postgres.archive_stream import compare_counts
from axe_pipelines.postgres.client import PostgresError
from axe_pipelines.postgres.dump import read_dump
from axe_pipelines.restic import RepositoryDamaged, Restic

PROVED_WHILE_WRITING = "while writing"
PROVED_READ_BACK = "read back from the repository"


@dataclass
class DumpCheck:
    """What checking a dump found: tables and rows in it, bytes checked, every problem (a
    counted table missing, or with another number of rows) and how it was proved (read back,
    or while writing)."""

    ok: bool
    tables_in_dump: int
    rows_in_dump: int
    bytes: int
    problems: list[str]
    proved: str = PROVED_READ_BACK


def verify_dump(restic: Restic, snapshot_id: str, path: str, *, fmt: str,
                expected_counts: dict[str, int]) -> DumpCheck:
    """Given a dump's snapshot and the row counts taken when it was made, read the dump out
    of the repository and return the DumpCheck: complete, and every counted table with
    exactly the counted number of rows. Raise the mapped ResticError or PostgresError when
    the dump cannot be read at all: RepositoryDamaged (naming the pack and the older
    snapshots clear of it, and recorded for `axe status`) when restic met a damaged pack."""
    unreadable: PostgresError | None = None
    try:
        with restic.dump(snapshot_id, "/" + path.lstrip("/")) as stream:
            try:
                contents = read_dump(stream, fmt=fmt)
            except PostgresError as exc:
                # A stream cut short by restic: restic's own reason (a damaged pack) is the
                # one to tell, so let restic finish and say it before this one.
                unreadable = exc
    except RepositoryDamaged as exc:
        raise RepositoryDamaged(explain_damage(restic, exc, snapshot_id, "the restorable "
                                               f"check of {path.lstrip('/')}"),
                                pack=exc.pack, cause=exc.cause, detail=exc.detail) from None
    if unreadable is not None:
        raise unreadable
    problems = compare_counts(contents.tables, expected_counts)
    return DumpCheck(ok=not problems, tables_in_dump=len(contents.tables),
                     rows_in_dump=sum(contents.tables.values()), bytes=contents.bytes,
                     problems=problems)
