"""Continuous WAL archiving and point-in-time recovery (issue 13, part 2), plain Python.

    archive.py   the `archive_command` PostgreSQL runs: one segment into the spool (stdlib
                 only, so it starts fast and runs under any python3 as the server's user)
    segments.py  WAL file names: segment arithmetic per timeline, gaps in a sequence
    push.py      the pusher: spool -> tier A in batches, safe against kill -9 at any step
    catalog.py   the WAL snapshots of a repository, what each base backup needs
    pitr.py      `axe restore --as-of <minute>`: base backup + WAL replay in a staging cluster

Nothing here imports Dagster; this file imports nothing (archive.py must start fast).
"""
