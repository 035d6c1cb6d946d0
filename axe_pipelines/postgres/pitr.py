"""Replaying WAL in a restored copy up to a moment (issue 13): the copy (postgres/physical.py,
archive_mode off) starts in archive recovery with our restore_command, stops at
`recovery_target_time` and promotes; this waits for that, bounded.

PostgreSQL stops at the first commit after the target. When the WAL holds none after it (the
server was idle since), recovery ends before the target and PostgreSQL refuses to go on
("recovery ended before configured recovery target was reached"); every commit in the WAL
is then at or before the target, so the copy is started once more without a target and
replays all of it — after proving its redo reached the last segment handed to it, so that a
missing segment never passes for "idle".
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from axe_pipelines.postgres.client import Connection, PostgresError, first_line
from axe_pipelines.postgres.cluster import LocalCluster
from axe_pipelines.postgres.physical import copy_connection, start_staging_cluster

_NOT_REACHED = "recovery ended before configured recovery target was reached"
_LOG_IN_MESSAGE = re.compile(r"\(log: (.+)\)$")
_REDO_DONE = re.compile(r"redo done at ([0-9A-F]+/[0-9A-F]+)")


@dataclass
class Replayed:
    """A copy recovered to the target and promoted: the cluster, how it got there (`to_end`:
    every commit in the WAL was at or before the target) and the seconds it took."""

    copy: LocalCluster
    to_end: bool
    seconds: float


def restore_command(wal_dir: Path) -> str:
    """Given the folder the WAL was restored into, return the restore_command copying a
    file from there (PostgreSQL runs it through the shell)."""
    return f"cp {shlex.quote(str(wal_dir))}/%f %p"


def _log_of(error: PostgresError) -> str:
    m = _LOG_IN_MESSAGE.search(str(error))
    try:
        return Path(m.group(1)).read_text(errors="replace") if m else ""
    except OSError:
        return ""


def _wait_promoted(copy: LocalCluster, conn: Connection, deadline: float) -> str:
    """Wait until the copy left recovery; return "" then, else the log's reason it died."""
    while time.monotonic() < deadline:
        try:
            if conn.psql("SELECT pg_is_in_recovery();", timeout=30) == [["f"]]:
                return ""
        except PostgresError:
            log = copy.log.read_text(errors="replace") if copy.log.exists() else ""
            if "database system is shut down" in log or _NOT_REACHED in log:
                return log
        time.sleep(0.5)
    raise PostgresError(f"the restored copy ({copy.data}) has not finished replaying WAL "
                        f"within the bound; stopped (log: {copy.log})")


def replay_to(datadir: Path, wal_dir: Path, target: datetime, template: Connection, *,
              last_segment_lsn_floor: int, timeout_s: float) -> Replayed:
    """Given an unpacked base backup, the restored WAL, the target moment, a connection to
    the live server (the copy's roles and password) and the start LSN of the last segment
    handed over, replay to the target and promote; return the Replayed copy (stop it when
    done). Raise PostgresError naming the log if the copy fails, does not finish within
    `timeout_s`, or ended early without having read all the WAL."""
    started = time.monotonic()
    deadline = started + timeout_s
    settings = {"restore_command": restore_command(wal_dir),
                "recovery_target_time": target.isoformat(sep=" "),
                "recovery_target_action": "promote", "recovery_target_timeline": "latest"}
    reason = ""
    copy: LocalCluster | None = None
    try:
        copy = start_staging_cluster(datadir, recovery=settings,
                                     start_timeout_s=max(60, int(timeout_s)))
        reason = _wait_promoted(copy, copy_connection(copy, template, "postgres"), deadline)
    except PostgresError as exc:
        reason = _log_of(exc)
        if _NOT_REACHED not in reason:
            raise PostgresError(f"replaying WAL to {target:%Y-%m-%d %H:%M:%S %Z}: "
                                f"{first_line(exc)}") from None
    if not reason:
        assert copy is not None
        return Replayed(copy, False, time.monotonic() - started)
    if copy is not None:
        copy.stop()
    done = _REDO_DONE.findall(reason)
    position = _lsn(done[-1]) if done else 0
    if position < last_segment_lsn_floor:
        raise PostgresError(f"replaying WAL to {target:%Y-%m-%d %H:%M:%S %Z}: recovery ended "
                            f"at {done[-1] if done else 'an unknown point'}, before the last "
                            f"WAL segment restored for it (a segment is missing or damaged)")
    settings["recovery_target_time"] = ""  # all of the WAL is at or before the target
    copy = start_staging_cluster(datadir, recovery=settings,
                                 start_timeout_s=max(60, int(deadline - time.monotonic())))
    if _wait_promoted(copy, copy_connection(copy, template, "postgres"), deadline):
        copy.stop()
        raise PostgresError(f"the restored copy ({datadir}) stopped while replaying its WAL "
                            f"(log: {copy.log})")
    return Replayed(copy, True, time.monotonic() - started)


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)
