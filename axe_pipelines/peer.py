"""How to reach one ring peer: ssh with every option that keeps it non-interactive and
bounded, the fqdn-then-ssh_ip probe, and our repository there over restic's `sftp:` backend.

ssh runs with key auth only (`BatchMode`, `IdentitiesOnly`), a pinned known_hosts
(`StrictHostKeyChecking=yes`; the key is pinned under the peer's fqdn via `HostKeyAlias`, so
the `ssh_ip` fallback checks the same key), a connect timeout and keepalives: a link that stops
answering fails after `alive_interval_s x alive_count_max` seconds instead of hanging for tens
of minutes. `ssh_fqdn` is tried first, `ssh_ip` when the name does not resolve or does not
connect; a changed host key never falls back.

restic's own sftp sessions run ssh through a small `sh` wrapper (`sftp.command`) that writes
each session's exit status into an SshRecord, with ssh's own log beside it: whether ssh failed
(exit 255) is then known, not guessed from restic's words.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from axe_pipelines.config import Customer, RingBackup, Site
from axe_pipelines.config_tiers import RingTier
from axe_pipelines.errors import ItemFailed
from axe_pipelines.restic import Repository, Restic
from axe_pipelines.safe_paths import remove_tree
from axe_pipelines.secrets import SecretSource

NEXT_STEP = "retry at the next scheduled run or run `axe backup --ring`; `axe doctor` checks ssh"

class RingError(ItemFailed):
    """Tier B failed. `retryable` says whether trying again later can help (a link or a peer
    that is down) or not (wrong password, damaged repository, changed host key)."""

    def __init__(self, message: str, *, retryable: bool, ssh_exit: int | None = None,
                 host: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.ssh_exit = ssh_exit
        self.host = host


@dataclass(frozen=True)
class RepositoryFacts:
    """What the probe's ssh call saw of our repository at the peer, by file names only
    (nothing is decrypted, no restic process opens it): `locks` is True when `locks/` holds
    any file or cannot be read; `snapshot_files` holds the names in `snapshots/` (each one a
    snapshot's id there), None when that folder cannot be read."""

    locks: bool
    snapshot_files: frozenset[str] | None


@dataclass(frozen=True)
class PeerStatus:
    """What one ssh call to the peer found. `repository` is None when the peer holds no
    repository of ours there (no `config`) or the probe could not tell."""

    host: str  # the address that worked (fqdn or ssh_ip)
    via_fallback: bool
    free_bytes: int | None
    restic_version: str | None
    seconds: float
    repository: RepositoryFacts | None = None


def ring_settings(customer: Customer) -> RingTier:
    """The customer's tier-B settings (defaults when `tiers.ring` is absent)."""
    return (customer.tiers.ring if customer.tiers and customer.tiers.ring else None) or \
        RingTier()


def peer_password(customer: Customer, block: RingBackup) -> SecretSource:
    """Password of our repository at the peer: tiers.ring.password, the peer block's
    password, else tier A's (the copy is as secret as the original)."""
    assert customer.tiers is not None
    ring = customer.tiers.ring
    return (ring.password if ring and ring.password else None) or block.password or \
        customer.tiers.local.password


_RESOLVE = ("could not resolve hostname", "name or service not known",
            "temporary failure in name resolution", "nodename nor servname")
_CONNECT = ("connection refused", "connection timed out", "no route to host",
            "network is unreachable", "timed out during banner exchange",
            "operation timed out", "connection reset", "connection closed by")
_HOSTKEY = ("host key verification failed", "remote host identification has changed",
            "no ed25519 host key is known", "host key for", "no matching host key")
_AUTH = ("permission denied",)


def _reason(stderr: str) -> tuple[str, str]:
    """(kind, one-line reason) of an ssh failure; kind is resolve/connect/hostkey/auth/other."""
    low = stderr.lower()
    for kind, needles in (("hostkey", _HOSTKEY), ("resolve", _RESOLVE), ("auth", _AUTH),
                          ("connect", _CONNECT)):
        for needle in needles:
            if needle in low:
                line = next((ln.strip() for ln in stderr.splitlines() if needle in ln.lower()),
                            needle)
                return kind, line
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("@")]
    return "other", (lines[-1] if lines else "no message")


class PeerLink:
    """How to reach one peer: ssh argv, the sftp repository, a probe."""

    def __init__(self, customer_name: str, customer: Customer, peer: str, block: RingBackup):
        self.customer_name = customer_name
        self.customer = customer
        self.peer = peer
        self.block = block
        self.settings = ring_settings(customer)
        for path in (self.key, self.known_hosts):
            if any(c in str(path) for c in "'\"\\"):
                raise RingError(f"tier B: path {path} contains a quote or backslash, which "
                                f"restic's sftp.command cannot carry; move the file",
                                retryable=False)

    @property
    def key(self) -> Path:
        """Return our ssh private key for this peer."""
        return self.block.ssh_key.expanduser()

    @property
    def known_hosts(self) -> Path:
        """Return the known_hosts file holding the peer's pinned host key."""
        return (self.block.known_hosts or Path("~/.ssh/known_hosts")).expanduser()

    def hosts(self) -> list[str]:
        """fqdn first, then the fallback address."""
        return [h for h in (self.block.ssh_fqdn, self.block.ssh_ip) if h]

    @property
    def silent_s(self) -> int:
        """Return how long ssh waits for an answer on an open link before it gives up."""
        return self.settings.alive_interval_s * self.settings.alive_count_max

    def ssh_argv(self, host: str, *options: str, log_level: str = "ERROR") -> list[str]:
        """ssh to `host` with every option that keeps it non-interactive and bounded (and
        `options`); `--` before the host, so no host can be read as an option."""
        s = self.settings
        return ["ssh", "-p", str(self.block.ssh_port), "-i", str(self.key),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no",
                # The key is pinned under the fqdn, so the ip fallback checks the same key.
                "-o", f"HostKeyAlias={self.block.ssh_fqdn}", "-o", "CheckHostIP=no",
                "-o", f"ConnectTimeout={s.connect_timeout_s}",
                "-o", f"ServerAliveInterval={s.alive_interval_s}",
                # ssh gives up on the keepalive *after* ServerAliveCountMax unanswered ones,
                # i.e. after (CountMax + 1) intervals of silence (10 s x 3 took 40 s): one
                # less makes alive_interval_s x alive_count_max the bound.
                "-o", f"ServerAliveCountMax={s.alive_count_max - 1}",
                "-o", f"LogLevel={log_level}", "-l", self.block.ssh_user, *options, "--", host]

    # --- ssh ---------------------------------------------------------------------------------

    def _ssh(self, host: str, remote: str) -> subprocess.CompletedProcess[str]:
        budget = self.settings.connect_timeout_s + \
            self.settings.alive_interval_s * self.settings.alive_count_max + 30
        try:
            return subprocess.run([*self.ssh_argv(host), remote], capture_output=True,
                                  text=True, timeout=budget, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess([], 255, "", f"connection timed out: no answer "
                                               f"within {budget} s")

    def probe(self) -> PeerStatus:
        """One ssh call: reachability, free disk under receive_dir_at_peer, restic version,
        and what the repository's folder holds (RepositoryFacts: whether `config` is there,
        whether `locks/` holds a file, the names in `snapshots/`), so the push needs no
        restic process to learn them. Tries the fqdn, then ssh_ip when the name does not
        resolve or connect. Raises RingError naming the host, ssh's exit status and what to
        do next."""
        target = self.block.receive_dir_at_peer.rstrip("/") or "/"
        parent = str(Path(target).parent)
        # POSIX sh and zsh alike (a macOS peer's login shell); a folder `ls` cannot read is
        # reported as "<folder> ?", not as empty.
        remote = (f"df -Pk -- {shlex.quote(target)} 2>/dev/null || "
                  f"df -Pk -- {shlex.quote(parent)}; echo ::axe::; "
                  'PATH="$PATH:/opt/homebrew/bin:/usr/local/bin"; '
                  "restic version 2>/dev/null || echo 'restic not found'; "
                  f"echo {_REPO_MARK}; if cd -- {shlex.quote(target)} 2>/dev/null && "
                  "[ -f config ]; then echo config; for d in locks snapshots; do "
                  'if n=$(ls -A -- "$d" 2>/dev/null); then printf \'%s\\n\' "$n" | '
                  'sed "s/^/$d /"; else echo "$d ?"; fi; done; fi; '
                  f"echo {_END_MARK}")
        failures: list[str] = []
        hosts = self.hosts()
        for index, host in enumerate(hosts):
            started = time.monotonic()
            proc = self._ssh(host, remote)
            if proc.returncode == 0 and "::axe::" in proc.stdout:
                disk, _, rest = proc.stdout.partition("::axe::")
                version, _, folder = rest.partition(_REPO_MARK)
                return PeerStatus(host=host, via_fallback=index > 0,
                                  free_bytes=_df_free(disk), restic_version=_version(version),
                                  seconds=time.monotonic() - started,
                                  repository=_repository_facts(folder))
            kind, why = _reason(proc.stderr)
            failures.append(f"{host}: ssh exit {proc.returncode}, {why}")
            if kind == "hostkey":
                raise RingError(
                    f"tier B: host key of {self.peer} at {host} does not match the pinned key in "
                    f"{self.known_hosts} (ssh exit {proc.returncode}, {why}); refusing to "
                    f"connect, not retried. If the peer's machine was really reinstalled, "
                    f"confirm its new key with its operator and replace the line for "
                    f"{self.block.ssh_fqdn}; local tier unaffected",
                    retryable=False, ssh_exit=proc.returncode, host=host)
            if kind == "auth":
                raise RingError(
                    f"tier B: {self.peer} at {host} refused our key {self.key} (ssh exit "
                    f"{proc.returncode}, {why}); ask the peer's operator to add its .pub to "
                    f"~{self.block.ssh_user}/.ssh/authorized_keys; local tier unaffected; "
                    f"{NEXT_STEP}", retryable=True, ssh_exit=proc.returncode, host=host)
            if kind not in ("resolve", "connect"):
                break  # only a name that does not resolve or connect moves on to ssh_ip
        raise RingError(f"tier B: cannot reach {self.peer} ({'; '.join(failures)}); local tier "
                        f"unaffected; {NEXT_STEP}", retryable=True,
                        ssh_exit=255, host=hosts[-1] if hosts else None)

    def snapshot_files(self, host: str) -> frozenset[str] | None:
        """One ssh call: the names in our repository's `snapshots/` at the peer (each a
        snapshot's id there), None when ssh or `ls` fails."""
        target = self.block.receive_dir_at_peer.rstrip("/") or "/"
        proc = self._ssh(host, f"ls -A -- {shlex.quote(target + '/snapshots')} && "
                               f"echo {_END_MARK}")
        body, end, _ = proc.stdout.partition(_END_MARK)
        if proc.returncode != 0 or not end:
            return None
        return frozenset(ln.strip() for ln in body.splitlines() if ln.strip())

    # --- repository --------------------------------------------------------------------------

    def location(self, host: str) -> str:
        """Given the address that answered, return our repository's `sftp:` location."""
        return f"sftp:{self.block.ssh_user}@{host}:{self.block.receive_dir_at_peer}"

    def repository(self, host: str, record: SshRecord | None = None) -> Repository:
        """Given the address that answered (and where to record what ssh does), return our
        repository there; the ssh options go through restic's `sftp.command` (no secret in
        argv)."""
        if record is None:
            sftp_command = shlex.join([*self.ssh_argv(host, "-s"), "sftp"])
        else:
            # INFO keeps ssh's "Timeout, server ... not responding"; -E sends it to the record,
            # not into restic's stderr.
            ssh = [*self.ssh_argv(host, "-E", str(record.log), "-s", log_level="INFO"), "sftp"]
            sftp_command = shlex.join(["sh", str(record.wrapper), *ssh])
        return Repository(location=self.location(host),
                          password=peer_password(self.customer, self.block),
                          label=f"tier B repository of {self.customer_name} at {self.peer} "
                                f"({self.location(host)})",
                          extra_args=("-o", f"sftp.command={sftp_command}"))

    def restic(self, host: str, record: SshRecord | None = None) -> Restic:
        """Given the address that answered (and where to record what ssh does), return a
        Restic for our repository there, every call bounded by `tiers.ring.timeout_s`."""
        return Restic(self.repository(host, record), timeout=self.settings.timeout_s)


class SshRecord:
    """What the sftp sessions of one tier-B operation did: each session's ssh exit status and
    ssh's own log, in a private temporary folder (removed on close)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="axe-ssh-"))
        self.sessions_file = self.folder / "sessions"
        self.log = self.folder / "ssh.log"
        # restic runs `sh <wrapper> ssh ...` as sftp.command: one "start" line per session,
        # then ssh's exit status. A file, because restic reads `-o` values as CSV (no `"`).
        self.wrapper = self.folder / "record-ssh.sh"
        sessions = shlex.quote(str(self.sessions_file))
        self.wrapper.write_text(f'echo start >>{sessions}\n"$@"\ns=$?\n'
                                f'echo "exit $s" >>{sessions}\nexit $s\n')

    def __enter__(self) -> SshRecord:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the record's folder."""
        remove_tree(self.folder, inside=Path(tempfile.gettempdir()))

    def sessions(self, settle_s: float = 3.0) -> list[int | None]:
        """Return each session's ssh exit status (None for one still running), after waiting
        up to `settle_s` for sessions to end (ssh ends just after restic closes its pipe)."""
        deadline = time.monotonic() + settle_s
        while True:
            try:
                lines = self.sessions_file.read_text().splitlines()
            except OSError:
                lines = []
            exits: list[int | None] = [int(ln[5:]) for ln in lines
                                       if ln.startswith("exit ") and ln[5:].isdigit()]
            running = lines.count("start") - len(exits)
            if running <= 0 or time.monotonic() > deadline:
                return exits + [None] * max(running, 0)
            time.sleep(0.05)

    def ssh_said(self) -> list[str]:
        """Return ssh's own log lines (its reason when it gave up), without blank lines."""
        try:
            return [ln.strip() for ln in self.log.read_text().splitlines() if ln.strip()]
        except OSError:
            return []


def _df_free(text: str) -> int | None:
    """Available bytes from `df -Pk` output (macOS and Linux print the same columns)."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[3].isdigit():
            return int(parts[3]) * 1024
    return None


_REPO_MARK, _END_MARK = "::axe-repo::", "::axe-end::"


def _repository_facts(text: str) -> RepositoryFacts | None:
    """Given the probe's output after its repository mark, return what it saw of the
    repository's folder; None when there is no `config` or the output did not end (the
    probe could not tell)."""
    body, end, _ = text.partition(_END_MARK)
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if not end or "config" not in lines:
        return None
    names: dict[str, set[str]] = {"locks": set(), "snapshots": set()}
    unreadable = set()
    for line in lines:
        folder, _, name = line.partition(" ")
        if folder in names and name:
            (unreadable.add(folder) if name == "?" else names[folder].add(name))
    return RepositoryFacts(locks=bool(names["locks"]) or "locks" in unreadable,
                           snapshot_files=None if "snapshots" in unreadable
                           else frozenset(names["snapshots"]))


def _version(text: str) -> str | None:
    m = re.search(r"restic (\d+\.\d+\.\d+)", text)
    return m[1] if m else None


def link(config: Site, customer_name: str, peer: str) -> PeerLink:
    """Given a customer and a peer, return the PeerLink between them. Raise RingError when the
    peer has no ring_backup block, or a key path restic's sftp.command cannot carry."""
    peers = config.peers()
    if peer not in peers:
        raise RingError(f"tier B: {peer} has no ring_backup block in customers.yaml (peers: "
                        f"{', '.join(sorted(peers)) or '-'})", retryable=False)
    return PeerLink(customer_name, config.customer(customer_name), peer, peers[peer])
