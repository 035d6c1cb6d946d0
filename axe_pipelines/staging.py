"""A throwaway staging PostgreSQL for integrity checks and last-valid searches: started by the
tool on a free loopback port (the embedded default), removed afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from axe_pipelines.config import Server
from axe_pipelines.postgres import Connection, LocalCluster


class Staging:
    """A LocalCluster in a fresh folder under the system temp dir. Use as a context manager;
    `connection(db)` reaches a database on it. Nothing of it survives the block."""

    SERVER_NAME = "staging"

    def __init__(self, bin_dir: Path | None = None):
        self.bin_dir = bin_dir
        self.root: Path | None = None
        self.cluster: LocalCluster | None = None

    def __enter__(self) -> Staging:
        # Not a 0700 folder: as root the server runs as the postgres user, which must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="axe-staging-"))
        self.root.chmod(0o755)
        self.cluster = LocalCluster(self.root / "pg", bin_dir=self.bin_dir)
        try:
            self.cluster.start()
        except Exception:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        return self

    @property
    def server(self) -> Server:
        assert self.cluster is not None
        return Server(host="127.0.0.1", port=self.cluster.port, user=self.cluster.user,
                      bin_dir=self.cluster.bin_dir, roles=False)

    def connection(self, dbname: str) -> Connection:
        return Connection(self.SERVER_NAME, self.server, dbname)

    def __exit__(self, *exc: object) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
