"""A real OpenSSH server on 127.0.0.1 for the ring tests: own port, own host key, own user key,
sftp subsystem, key auth only. It stands in for the ring peer's machine (the tests' and the
benchmark's tier-B copy: bench/ imports this module).

`SshServer.pause()` stops the listener and every session it serves (SIGSTOP): the TCP
connection stays open but nothing answers, which is what a dropped Tailscale link looks like to
ssh. `resume()` lets them run again; `stop()` ends them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    """Creates an ed25519 key pair at `path` (no passphrase); returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "axe-test",
                    "-f", str(path)], check=True)
    return Path(str(path) + ".pub").read_text().strip()


def _children(pid: int) -> list[int]:
    """All descendants of `pid` (from /proc)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                found.append(int(entry.name))
                todo.append(int(entry.name))
    return found


@dataclass
class SshServer:
    root: Path
    port: int
    user: str
    user_key: Path  # private key the client uses
    known_hosts: Path  # pinned host key, for the host names the tests use
    host_key: Path
    proc: subprocess.Popen | None = None

    def start(self) -> SshServer:
        """Starts sshd -D on the port and waits until it answers."""
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        log = (self.root / "sshd.log").open("ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: " + (self.root / "sshd.log").read_text())
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def _signal_all(self, sig: int) -> None:
        assert self.proc is not None
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def pause(self) -> None:
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.resume()
        children = _children(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None

    def ssh_argv(self) -> list[str]:
        """Return the ssh command (without the remote command) that reaches this server
        non-interactively with the pinned host key (the benchmark's raw `restic copy`)."""
        return ["ssh", "-p", str(self.port), "-i", str(self.user_key), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", f"{self.user}@localhost"]

    def rotate_host_key(self) -> None:
        """Gives the server a new host key (the pinned known_hosts no longer matches)."""
        self.stop()
        self.host_key.unlink()
        Path(str(self.host_key) + ".pub").unlink()
        keygen(self.host_key)
        self.start()


def make_server(root: Path, *, names: tuple[str, ...] = ("localhost", "127.0.0.1"),
                alias: str | None = None) -> SshServer:
    """Writes host key, user key, authorized_keys, sshd_config and a pinned known_hosts under
    `root` (not started). `alias` is pinned too (the ring code pins under the peer's fqdn)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    port = free_port()
    host_key = root / "ssh_host_ed25519_key"
    keygen(host_key)
    user_key = root / "id_ed25519"
    user_pub = keygen(user_key)
    (root / "authorized_keys").write_text(user_pub + "\n")
    (root / "authorized_keys").chmod(0o600)
    sftp = "/usr/lib/openssh/sftp-server"
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nLogLevel VERBOSE\n"
        f"Subsystem sftp {sftp if Path(sftp).exists() else 'internal-sftp'}\n")
    server = SshServer(root=root, port=port, user=pwd.getpwuid(os.getuid()).pw_name,
                       user_key=user_key, known_hosts=root / "known_hosts", host_key=host_key)
    pin_host_key(server, (*names, *((alias,) if alias else ())))
    return server


def pin_host_key(server: SshServer, names: tuple[str, ...]) -> None:
    """Writes known_hosts with the server's current host key under `names` (plain and with
    the port, so it matches with and without HostKeyAlias)."""
    pub = Path(str(server.host_key) + ".pub").read_text().split()
    lines = []
    for name in names:
        lines.append(f"{name} {pub[0]} {pub[1]}")
        lines.append(f"[{name}]:{server.port} {pub[0]} {pub[1]}")
    server.known_hosts.write_text("\n".join(lines) + "\n")


def have_sshd() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh") is not None
