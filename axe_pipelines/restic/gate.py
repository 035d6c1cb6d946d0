"""The command a warm restic backup runs (`--stdin-from-command`) until its item is ready.

    python -m axe_pipelines.restic.gate <fifo> <owner pid> <timeout s>

restic opens the repository, derives its key (about half a second of CPU) and takes its lock
before it starts its command; a backup started ahead of its item (warm.py) spends that time
while the Dagster run gets ready. The gate first creates `<fifo>.up` (0600): the repository
opened with its password and this backup holds its lock, which is all the probe of a
repository asks (the first warm backup is the night's probe). It then waits on its FIFO for
one JSON line from axe: `{"argv": [...], "env": {...}}` becomes this process (exec, or for
a module of this interpreter such as the dump's verifier, run in place: the item's real
command, restic reads its stdout as the snapshot's content); `{"abort": "..."}`, no line
within the timeout, or axe's own process gone (checked twice a second: a `kill -9` of axe
must not leave restic waiting with its lock) end it with exit 1 and no output, so restic
stores no snapshot.

Standard library only; nothing secret is in its argv (the environment comes through the FIFO,
a 0600 file in the run's 0700 folder).
"""

from __future__ import annotations

import json
import os
import runpy
import select
import sys
import time

_POLL_S = 0.5


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up_path(fifo: str) -> str:
    """Given a gate's FIFO, return the file the gate creates once restic has started it."""
    return f"{fifo}.up"


def _mark_up(fifo: str) -> None:
    try:
        os.close(os.open(up_path(fifo), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass  # axe then learns it from the order's claim, as without the mark


def wait_for_order(fifo: str, owner: int, timeout_s: float) -> dict[str, object] | None:
    """Given the FIFO, axe's pid and the longest wait, return the one order written to the
    FIFO, or None when the owner is gone or the wait ran out (the FIFO and the up mark are
    removed either way)."""
    _mark_up(fifo)
    # O_RDWR: the open never blocks and the FIFO never reads as ended while we wait.
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    buf = b""
    deadline = time.monotonic() + timeout_s
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not _alive(owner):
                return None
            ready, _, _ = select.select([fd], [], [], min(_POLL_S, left))
            if ready:
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                buf += chunk
    finally:
        os.close(fd)
        for path in (fifo, up_path(fifo)):
            try:
                os.unlink(path)
            except OSError:
                pass
    try:
        order = json.loads(buf.split(b"\n", 1)[0])
    except ValueError:
        return None
    return order if isinstance(order, dict) else None


def main(argv: list[str]) -> int:
    """Wait for the order, then become its command; return 1 (no output) without one."""
    fifo, owner, timeout_s = argv[0], int(argv[1]), float(argv[2])
    order = wait_for_order(fifo, owner, timeout_s)
    if not order or "argv" not in order:
        why = (order or {}).get("abort", "axe did not send the item's command")
        print(f"axe gate: {why}; nothing stored", file=sys.stderr)
        return 1
    command = [str(a) for a in order["argv"]]  # type: ignore[union-attr]
    os.environ.update({str(k): str(v) for k, v in order.get("env", {}).items()})  # type: ignore[union-attr]
    if command[0] == sys.executable and command[1:2] == ["-m"] and len(command) > 2:
        # A module of this same interpreter (the dump's verifier): run it here rather than
        # starting the interpreter again (about 0.1 s per item).
        sys.argv = [command[2], *command[3:]]
        runpy.run_module(command[2], run_name="__main__", alter_sys=True)
        return 0
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 1  # pragma: no cover - exec does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
