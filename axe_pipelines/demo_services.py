"""The demo's stand-ins for the world outside this machine, each a process of its own under
.demo/ that the demo starts and stops (and `--keep-running` leaves running):

- `PeerSsh`: a real OpenSSH server on 127.0.0.1 standing in for the ring peer's machine — its
  own port, host key and user key, sftp, key auth only. Tier B pushes to it over restic's sftp
  backend exactly as to a real peer.
- the Slack catcher (`python -m axe_pipelines.demo_services catcher`): a small HTTP server on
  loopback that answers like a Slack incoming webhook and appends every post, one JSON line
  each, to a file — where the drill's report and the alerts of the demo go.

Plain: nothing here imports Dagster. (The tests have their own, richer stand-ins in tests/.)
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    """Given nothing, return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Given a port, return True when something accepts connections on 127.0.0.1 there."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stable_port(file: Path, ours_running: bool = False) -> int:
    """Given the file that remembers a service's port and whether our own service still runs
    there, return that port when it is ours or free (so customers.yaml keeps pointing at it
    across demo runs), else a new free one (remembered)."""
    try:
        port = int(file.read_text())
        if ours_running or not listening(port):
            return port
    except (OSError, ValueError):
        pass
    port = free_port()
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(f"{port}\n")
    return port


def spawn(argv: list[str], pid_file: Path, log: Path) -> int:
    """Given a command, start it in a session of its own (it outlives the demo with
    --keep-running), write its pid to `pid_file` and return the pid."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def alive(pid_file: Path) -> bool:
    """Given a pid file written by `spawn`, return True while that process runs."""
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def stop_pid_file(pid_file: Path, timeout: float = 10) -> bool:
    """Given a pid file written by `spawn`, stop that process group (SIGTERM, then SIGKILL
    after `timeout` seconds), remove the file and return True; False when nothing ran."""
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    pid_file.unlink(missing_ok=True)
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break  # exited; its parent has not reaped it
        except (ProcessLookupError, OSError):
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def _wait_listening(port: int, what: str, log: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start listening on port {port}:\n{tail}")
        time.sleep(0.1)


class PeerSsh:
    """The ring peer's machine: sshd on 127.0.0.1 with keys and config under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.user_key = root / "id_ed25519"
        self.host_key = root / "ssh_host_ed25519_key"
        self.known_hosts = root / "known_hosts"
        self.pid_file, self.log = root / "sshd.pid", root / "sshd.log"
        self.port = 0

    def prepare(self) -> PeerSsh:
        """Given nothing, make the keys (once), pick the port, write sshd_config, the
        authorized key and the pinned known_hosts; return self."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        for key in (self.host_key, self.user_key):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                "axe-demo", "-f", str(key)], check=True)
        self.port = stable_port(self.root / "port", alive(self.pid_file))
        (self.root / "authorized_keys").write_text(
            Path(f"{self.user_key}.pub").read_text())
        (self.root / "authorized_keys").chmod(0o600)
        sftp = Path("/usr/lib/openssh/sftp-server")
        (self.root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {self.root / 'sshd.own.pid'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            f"StrictModes no\nSubsystem sftp {sftp if sftp.exists() else 'internal-sftp'}\n")
        kind, key = Path(f"{self.host_key}.pub").read_text().split()[:2]
        self.known_hosts.write_text("".join(f"{name} {kind} {key}\n[{name}]:{self.port} "
                                            f"{kind} {key}\n" for name in ("localhost",
                                                                           "127.0.0.1")))
        return self

    def start(self) -> PeerSsh:
        """Given a prepared peer, start its sshd unless it runs already; return self. Raise
        RuntimeError naming the log when it does not come up."""
        if alive(self.pid_file) and listening(self.port):
            return self
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation
        spawn([str(SSHD), "-D", "-e", "-f", str(self.root / "sshd_config")], self.pid_file,
              self.log)
        _wait_listening(self.port, "the demo peer's sshd", self.log)
        return self

    def stop(self) -> bool:
        """Stop the peer's sshd (and its sessions); True when one ran."""
        return stop_pid_file(self.pid_file)

    def ring_backup(self, receive_dir_at_peer: Path, receive_dir_at_self: Path) -> dict:
        """Given where our copy lives on the peer and where its pushes land here, return its
        customers.yaml `ring_backup:` block (the runbook's keys, plus port, key, known_hosts)."""
        return {"ssh_user": self.user, "ssh_fqdn": "localhost", "ssh_ip": "127.0.0.1",
                "ssh_port": self.port, "ssh_key": str(self.user_key),
                "known_hosts": str(self.known_hosts),
                "receive_dir_at_peer": f"{receive_dir_at_peer}/",
                "receive_dir_at_self": str(receive_dir_at_self),
                "disk_available_gib": 1, "bidirectional_ssh": True}


class Catcher:
    """The demo's Slack: `python -m axe_pipelines.demo_services catcher` under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.posts, self.pid_file, self.log = root / "posts.jsonl", root / "catcher.pid", \
            root / "catcher.log"
        root.mkdir(parents=True, exist_ok=True)
        self.port = stable_port(root / "port", alive(self.pid_file))

    @property
    def webhook(self) -> str:
        """The incoming-webhook URL the demo's customers.yaml reads from a password file."""
        return f"http://127.0.0.1:{self.port}/services/T0DEMO/B0DEMO/demo"

    def start(self) -> Catcher:
        """Start the catcher unless it runs already; return self."""
        if not (alive(self.pid_file) and listening(self.port)):
            spawn([sys.executable, "-m", "axe_pipelines.demo_services", "catcher", "--port",
                   str(self.port), "--out", str(self.posts)], self.pid_file, self.log)
            _wait_listening(self.port, "the demo's Slack catcher", self.log)
        return self

    def stop(self) -> bool:
        """Stop the catcher; True when one ran."""
        return stop_pid_file(self.pid_file)


def serve_catcher(port: int, out: Path) -> None:
    """Given a port and a file, answer every POST on 127.0.0.1 like a Slack webhook ("ok")
    and append {"at", "path", "body"} to the file, until SIGTERM."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1 << 20))
            try:
                payload = json.loads(body)
            except ValueError:
                payload = body.decode(errors="replace")
            with out.open("a") as f:
                f.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                    "path": self.path, "body": payload}) + "\n")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the demo's Slack stand-in")
    parser.add_argument("service", choices=["catcher"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    serve_catcher(args.port, args.out)
