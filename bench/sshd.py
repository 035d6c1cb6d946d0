"""A real OpenSSH server on 127.0.0.1 for the tier-B copy benchmark: own port, own host key,
own user key, sftp subsystem, key auth only. It stands in for the ring peer's machine.

A trimmed copy of tests/sshd.py (the bench does not import the tests)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    """Given a path, create an ed25519 key pair there (no passphrase); return the public
    key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "axe-bench",
                    "-f", str(path)], check=True)
    return Path(str(path) + ".pub").read_text().strip()


@dataclass
class SshServer:
    """A configured sshd under `root`; `start()` runs it, `stop()` ends it."""

    root: Path
    port: int
    user: str
    user_key: Path  # private key the client uses
    known_hosts: Path  # the host key pinned for localhost and 127.0.0.1
    proc: subprocess.Popen | None = None

    def start(self) -> SshServer:
        """Start sshd -D on the port and return self once it answers. Raise RuntimeError if
        it exits or does not listen within 5 s."""
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

    def stop(self) -> None:
        """Stop the sshd this object started (its sessions end with it)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def ssh_argv(self) -> list[str]:
        """Return the ssh command (without the remote command) that reaches this server
        non-interactively with the pinned host key."""
        return ["ssh", "-p", str(self.port), "-i", str(self.user_key), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", f"{self.user}@localhost"]


def make_server(root: Path) -> SshServer:
    """Given a folder, write a host key, a user key, authorized_keys, sshd_config and a pinned
    known_hosts into it and return the (not started) server."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    port = free_port()
    host_key = root / "ssh_host_ed25519_key"
    keygen(host_key)
    user_key = root / "id_ed25519"
    (root / "authorized_keys").write_text(keygen(user_key) + "\n")
    (root / "authorized_keys").chmod(0o600)
    sftp = SFTP_SERVER if Path(SFTP_SERVER).exists() else "internal-sftp"
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nLogLevel ERROR\n"
        f"Subsystem sftp {sftp}\n")
    pub = Path(str(host_key) + ".pub").read_text().split()
    known = root / "known_hosts"
    known.write_text("".join(f"{name} {pub[0]} {pub[1]}\n[{name}]:{port} {pub[0]} {pub[1]}\n"
                             for name in ("localhost", "127.0.0.1")))
    return SshServer(root=root, port=port, user=pwd.getpwuid(os.getuid()).pw_name,
                     user_key=user_key, known_hosts=known)


def have_sshd() -> bool:
    """Return whether sshd and ssh are installed."""
    return Path(SSHD).exists() and shutil.which("ssh") is not None
