"""Physical base backups of a whole server (issue 13, part 1), plain: the pg_basebackup
command line, unpacking a stored base backup into a data directory, and starting that copy
as a staging cluster. Tier A's item is in physical_item.py; `axe restore --physical` in
actions/restore_physical.py.

Interface the WAL/PITR part builds on (keep it stable):

- `pg_basebackup_argv(conn)`: `pg_basebackup -D - -Ft -X fetch --checkpoint=fast …` — one
  tar on stdout, streamed by restic `--stdin-from-command` into `<server>.base.tar`.
  Why `-X fetch`: `-X stream` opens a second connection and writes the WAL as a second tar
  (`pg_wal.tar`), which cannot go to stdout ("cannot stream write-ahead logs in tar mode to
  stdout"); with `fetch` the WAL the backup needs is read at its end and written into the
  same tar under `pg_wal/` (the backup manifest follows it), so the one stream is a complete,
  self-consistent data directory. What the server must allow: a role with the REPLICATION
  attribute (or superuser); a pg_hba.conf `replication` line for where pg_basebackup
  connects from (initdb's default has `local`/`127.0.0.1` ones; inside a container the
  local socket); `max_wal_senders` >= 1 free (default 10) and `wal_level` replica or logical
  (the default); and, because `fetch` reads the WAL only at the end, enough
  `wal_keep_size` (or WAL archiving) that the segments written during the backup are still
  in pg_wal then — else pg_basebackup fails ("requested WAL segment … has already been
  removed") and, restic seeing a non-zero exit, no snapshot is stored. One tablespace only
  (tar to stdout cannot carry more). `--checkpoint=fast` starts at once instead of waiting
  for a spread checkpoint (up to checkpoint_timeout x checkpoint_completion_target).
- `unpack_base_backup(restic, snapshot_id, dest) -> Path`: `restic dump` of the tar streamed
  into `tar -x` in a fresh 0700 folder, no temporary copy; restic is read to its end, or
  stopped with SIGINT (it then removes its lock) when the extraction fails (Restic.dump).
- `start_staging_cluster(datadir, *, recovery=None) -> LocalCluster` (`.port`, `.data`,
  `.root` — its own socket folder, with the log `.log` —, `.stop()`; `copy_connection`,
  `stop_command` and `stop_staging_cluster` (stop, then remove the socket folder) beside
  it): PostgreSQL of the copy's major version (postgres/cluster.py's
  LocalCluster over the unpacked folder) on a free 127.0.0.1 port; `archive_mode=off` (a
  restored copy must never archive into the live server's spool),
  `listen_addresses=127.0.0.1`, port, socket folder, an hba of its own (password logins on
  127.0.0.1, trust on the socket in its 0700 folder) written into the copy's
  postgresql.auto.conf *and* given on the command line, so a later start by hand keeps
  them.
  `recovery` (restore_command, recovery_target_time, recovery_target_action, …) is written
  there too, with `recovery.signal`. It never touches any other data directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from axe_pipelines.postgres.client import Connection, PostgresError, quote_literal
from axe_pipelines.postgres.cluster import LocalCluster, free_port
from axe_pipelines.restic import Restic
from axe_pipelines.safe_paths import remove_tree

BASE_SUFFIX = ".base.tar"
BLOCK = 1 << 20
# Settings a restored copy always gets, whatever its postgresql.conf says: it must not
# archive into the live spool, nor listen anywhere but loopback, nor need files (TLS keys,
# an hba elsewhere) that only the live machine has.
SAFE_SETTINGS = {"archive_mode": "off", "archive_command": "", "archive_library": "",
                 "listen_addresses": "127.0.0.1", "ssl": "off", "logging_collector": "off",
                 "primary_conninfo": "", "synchronous_standby_names": ""}
AUTO_CONF_MARK = "# axe-pipelines: restored copy (staging), settings below override the live"


def base_filename(server_name: str) -> str:
    """Given a server's config name, return its base backup's file name in the snapshot
    (`frame-postgres.base.tar`)."""
    return f"{server_name}{BASE_SUFFIX}"


def pg_basebackup_argv(conn: Connection, *, label: str = "axe-pipelines") -> list[str]:
    """Given a connection to the server (its exec prefix, host, port, user), return the
    pg_basebackup command line that writes one tar of the whole cluster, WAL included, to
    stdout (module docstring: why `-X fetch`)."""
    return [*conn.tool("pg_basebackup"), *conn.conn_args(with_db=False), "--no-password",
            "-D", "-", "-Ft", "-X", "fetch", "--checkpoint=fast", f"--label={label}"]


# --- unpacking ---------------------------------------------------------------------------------


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root, and wants its data directory owned by its user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def fresh_datadir(dest: Path) -> Path:
    """Given a folder to restore into, create it (or take it when it is an empty folder)
    with mode 0700, owned by `postgres` when running as root, and return it resolved. Raise
    PostgresError if it exists and is not an empty folder."""
    dest = dest.expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise PostgresError(f"{dest} is not an empty folder; a base backup is unpacked only "
                            f"into a new or empty one (choose another --dest)")
    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest.chmod(0o700)
    if os.geteuid() == 0:
        shutil.chown(dest, "postgres", "postgres")
        # The server runs as `postgres`: every folder above its data must let it through.
        if subprocess.run(_as_postgres(["test", "-w", str(dest), "-a", "-x", str(dest)]),
                          check=False).returncode != 0:
            if made:
                dest.rmdir()
            raise PostgresError(f"the postgres user cannot reach {dest} (a folder above it is "
                                f"closed to others, e.g. /root); choose a --dest it can reach")
    return dest.resolve()


def unpack_base_backup(restic: Restic, snapshot_id: str, dest: Path, *,
                       server_name: str | None = None) -> Path:
    """Given a physical snapshot (`<server>.base.tar`) and a new or empty folder, stream the
    tar out of the repository into `tar -x` there (no temporary copy) and return the data
    directory. Raise PostgresError if `dest` is not new/empty, the tar is incomplete or tar
    fails (restic is then stopped and removes its lock), or the mapped ResticError when
    restic fails (a damaged pack, a live lock)."""
    datadir = fresh_datadir(dest)
    name = base_filename(server_name) if server_name else _tar_name(restic, snapshot_id)
    tar = subprocess.Popen(_as_postgres(["tar", "-x", "-f", "-", "-C", str(datadir)]),
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    assert tar.stdin is not None and tar.stderr is not None
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(tar.stderr.read()), daemon=True)
    reader.start()
    try:
        with restic.dump(snapshot_id, "/" + name) as stream:
            while chunk := stream.read(BLOCK):
                try:
                    tar.stdin.write(chunk)
                except BrokenPipeError:
                    # tar gave up: raising here stops restic with SIGINT (it unlocks).
                    raise PostgresError(f"unpacking {name} into {datadir}: tar stopped: "
                                        f"{_tar_error(tar, reader, err)}") from None
        tar.stdin.close()
    finally:
        if tar.poll() is None and not tar.stdin.closed:
            tar.kill()
        tar.wait()
    reader.join(5)
    if tar.returncode != 0:
        raise PostgresError(f"unpacking {name} into {datadir}: tar failed: "
                            f"{_tar_error(tar, reader, err)}")
    if not (datadir / "PG_VERSION").is_file() or not (datadir / "backup_label").is_file():
        raise PostgresError(f"{name} in snapshot {snapshot_id[:8]} holds no base backup "
                            f"(no PG_VERSION/backup_label in {datadir})")
    return datadir


def _tar_name(restic: Restic, snapshot_id: str) -> str:
    snaps = [s for s in restic.snapshots(tags=["kind=physical"]) if s.id.startswith(snapshot_id)]
    if not snaps or not snaps[0].tag("server"):
        raise PostgresError(f"snapshot {snapshot_id[:8]} is not a physical base backup")
    return base_filename(str(snaps[0].tag("server")))


def _tar_error(tar: subprocess.Popen, reader: threading.Thread, err: list[bytes]) -> str:
    tar.wait()
    reader.join(5)
    text = b"".join(err).decode(errors="replace").strip()
    return text.splitlines()[0] if text else f"exit status {tar.returncode}"


# --- starting the copy -------------------------------------------------------------------------


def server_bin_dir(datadir: Path) -> Path:
    """Given a data directory, return the server binaries of its major version (PG_VERSION).
    Raise PostgresError if that version's server is not installed here."""
    major = (datadir / "PG_VERSION").read_text().strip()
    for candidate in (Path(f"/usr/lib/postgresql/{major}/bin"),):
        if (candidate / "postgres").is_file():
            return candidate
    raise PostgresError(f"{datadir} is a PostgreSQL {major} cluster; install the PostgreSQL "
                        f"{major} server (postgresql-{major}) to start it")


def copy_connection(copy: LocalCluster, template: Connection, dbname: str) -> Connection:
    """Given a started copy (start_staging_cluster), a connection to the live server (its
    user: the copy has the same roles) and a database, return the connection to that
    database on the copy through its socket folder (trust: only the copy's owner and root
    can enter that 0700 folder, so no password is needed or sent)."""
    server = template.server.model_copy(update={"host": str(copy.root), "port": copy.port,
                                                 "exec": None, "bin_dir": copy.bin_dir,
                                                 "password": None})
    return Connection(f"{template.server_name} (restored copy)", server, dbname)


def stop_command(copy: LocalCluster) -> list[str]:
    """Given a started copy, return the command line that stops it (for the operator)."""
    return [*copy._as_owner([str(copy.bin_dir / "pg_ctl"), "-D", str(copy.data), "-m",
                             "fast", "-w", "stop"])]


def safe_settings(major: int, port: int, socket_dir: Path, datadir: Path,
                  recovery: dict[str, str] | None = None) -> dict[str, str]:
    """Given the copy's major version, port, socket folder, data directory and recovery
    settings, return every setting the copy starts with (module docstring)."""
    settings = {**SAFE_SETTINGS, "port": str(port), "unix_socket_directories": str(socket_dir),
                "hba_file": str(datadir / "pg_hba.conf"),
                "ident_file": str(datadir / "pg_ident.conf"), **(recovery or {})}
    if major < 15:
        settings.pop("archive_library")  # new in PostgreSQL 15
    return settings


def _write_config(datadir: Path, settings: dict[str, str], *, recovery: bool) -> None:
    """The copy's own pg_hba.conf and the overrides at the end of postgresql.auto.conf (read
    after postgresql.conf, so they win on a later start by hand too)."""
    (datadir / "pg_hba.conf").write_text(
        "# axe-pipelines restored copy: loopback and its own socket only\n"
        "local all all trust\nhost all all 127.0.0.1/32 md5\n")
    if not (datadir / "pg_ident.conf").exists():
        (datadir / "pg_ident.conf").write_text("")
    if not (datadir / "postgresql.conf").exists():
        # A Debian-style server keeps its postgresql.conf in /etc: the backup has none.
        (datadir / "postgresql.conf").write_text("# axe-pipelines: restored copy\n")
    lines = [AUTO_CONF_MARK] + [f"{k} = {quote_literal(v)}" for k, v in settings.items()]
    with open(datadir / "postgresql.auto.conf", "a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")
    if recovery:
        (datadir / "recovery.signal").write_text("")
    if os.geteuid() == 0:
        for name in ("pg_hba.conf", "pg_ident.conf", "postgresql.conf", "postgresql.auto.conf",
                     "recovery.signal"):
            if (datadir / name).exists():
                shutil.chown(datadir / name, "postgres", "postgres")


def start_staging_cluster(datadir: Path, *, recovery: dict[str, str] | None = None,
                          port: int | None = None, start_timeout_s: int = 600) -> LocalCluster:
    """Given an unpacked base backup (unpack_base_backup) and optional recovery settings,
    start it as a staging server on a free 127.0.0.1 port (or `port`) with its own socket
    folder (`.root`), archive_mode off (module docstring), and return it as a LocalCluster
    (`.port`, `.data`, `.stop()`). Raise PostgresError if the folder is no data directory,
    its server version is not installed here, or it does not start (naming its log)."""
    datadir = datadir.resolve()
    if not (datadir / "PG_VERSION").is_file():
        raise PostgresError(f"{datadir} is not a PostgreSQL data directory (no PG_VERSION)")
    bin_dir = server_bin_dir(datadir)
    port = port or free_port()
    socket_dir = Path(tempfile.mkdtemp(prefix="axe-physical-"))  # 0700; the log goes there
    settings = safe_settings(int((datadir / "PG_VERSION").read_text().split(".")[0]), port,
                             socket_dir, datadir, recovery)
    _write_config(datadir, settings, recovery=recovery is not None)
    copy = LocalCluster(socket_dir, bin_dir=bin_dir, port=port, data=datadir,
                        settings=settings, start_timeout_s=start_timeout_s)
    try:
        return copy.start()
    except PostgresError as exc:
        raise PostgresError(f"the restored copy in {datadir} did not start: "
                            f"{_start_failure(copy, datadir) or exc}") from None


def _start_failure(copy: LocalCluster, datadir: Path) -> str:
    """The server's own reason (its log's first FATAL/PANIC line), with the log moved into
    the data directory and the socket folder removed: nothing is left in the temp folder."""
    kept = datadir / "axe-start-failed.log"
    lines = copy.log.read_text(errors="replace").splitlines() if copy.log.exists() else []
    if lines:
        shutil.move(copy.log, kept)
    remove_tree(copy.root, inside=Path(tempfile.gettempdir()))
    said = [ln for ln in lines if "FATAL:" in ln or "PANIC:" in ln] or lines[-1:]
    if not said:
        return ""
    return f"{said[0].split(':  ', 1)[-1].strip()} (log: {kept})"


def stop_staging_cluster(copy: LocalCluster) -> None:
    """Given a copy started by start_staging_cluster, stop it and remove its socket folder
    (with its log) from the temp folder; the data directory stays for its owner to remove.
    Raise PostgresError if it does not stop."""
    copy.stop()
    remove_tree(copy.root, inside=Path(tempfile.gettempdir()))
