"""Everything that talks to PostgreSQL, dump and restore side by side.

    client.py   Connection, the one place that spawns the client tools, quoting, libpq env
    dump.py     the exported-snapshot session, pg_dump/pg_dumpall argv, counting rows
    sql.py      reading pg_dump scripts: statements, a database's own statements
    restore.py  the archive's table of contents, database restore into a new database, swap,
                undo
    table.py    transactional single-table restore
    roles.py    the missing-roles script of a globals dump
    cluster.py  throwaway local clusters and the staging server
"""
