"""Tier B, the ring: `restic copy` of the night's tier-A set to a peer's machine over restic's
`sftp:` backend, as plain functions (the Dagster layer is assets/tier_b.py).

The peer is a customer with the runbook's `ring_backup:` block. ssh runs with key auth only
(`BatchMode`, `IdentitiesOnly`), a pinned known_hosts (`StrictHostKeyChecking=yes`; the key is
pinned under the peer's fqdn via `HostKeyAlias`, so the `ssh_ip` fallback checks the same
key), a connect timeout and keepalives: a link that stops answering fails after
`alive_interval_s x alive_count_max` seconds instead of hanging for tens of minutes. Every
ssh and restic call is bounded by a timeout. `ssh_fqdn` is tried first, `ssh_ip` when the name
does not resolve or does not connect; a changed host key never falls back.

What the peer pushes to us is inbound.py; the copy-and-confirm core shared with tier C is
copying.py.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from axe_pipelines.backup import local_repository
from axe_pipelines.config import Customer, RingBackup, RingTier, Site
from axe_pipelines.copying import NoSetToCopy, copy_set, newest_finished_set
from axe_pipelines.errors import ItemFailed
from axe_pipelines.restic import (
    Repository,
    RepositoryMissing,
    Restic,
    ResticError,
    ResticFatal,
    ResticTimeout,
    Snapshot,
    WrongPassword,
)
from axe_pipelines.secrets import SecretError, SecretSource
from axe_pipelines.sets import BackupSet

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
class PeerStatus:
    """What one ssh call to the peer found."""

    host: str  # the address that worked (fqdn or ssh_ip)
    via_fallback: bool
    free_bytes: int | None
    restic_version: str | None
    seconds: float


@dataclass
class PushResult:
    customer: str
    peer: str
    host: str
    run_id: str
    set_time: datetime
    set_ids: list[str]
    copied: list[str] = field(default_factory=list)  # tier-A ids copied in this run
    already_present: list[str] = field(default_factory=list)
    bytes: int = 0  # bytes of the copied snapshots' source data
    duration_s: float = 0.0
    created_repository: bool = False
    cleared_locks: int = 0
    status: PeerStatus | None = None
    the_set: BackupSet | None = None
    at_peer: list[Snapshot] = field(default_factory=list)  # read back after the copy


def ring_settings(customer: Customer) -> RingTier:
    """The customer's tier-B settings (defaults when `tiers.ring` is absent)."""
    return (customer.tiers.ring if customer.tiers and customer.tiers.ring else None) or \
        RingTier()


def ring_peers(config: Site, customer_name: str) -> list[str]:
    """The peers `customer_name` pushes to: `tiers.ring.peers`, else every ring peer."""
    customer = config.customer(customer_name)
    peers = config.peers()
    wanted = ring_settings(customer).peers
    if wanted is None:
        return sorted(p for p in peers if p != customer_name)
    unknown = [p for p in wanted if p not in peers]
    if unknown:
        raise RingError(f"tier B of {customer_name}: tiers.ring.peers names {unknown}, which "
                        f"have no ring_backup block (peers: {', '.join(sorted(peers)) or '-'})",
                        retryable=False)
    return list(wanted)


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

    def __init__(self, customer_name: str, customer: Customer, peer: str, block: RingBackup,
                 *, binary: str | None = None):
        self.customer_name = customer_name
        self.customer = customer
        self.peer = peer
        self.block = block
        self.settings = ring_settings(customer)
        self.binary = binary
        for path in (self.key, self.known_hosts):
            if any(c in str(path) for c in "'\"\\"):
                raise RingError(f"tier B: path {path} contains a quote or backslash, which "
                                f"restic's sftp.command cannot carry; move the file",
                                retryable=False)

    @property
    def key(self) -> Path:
        return self.block.ssh_key.expanduser()

    @property
    def known_hosts(self) -> Path:
        return (self.block.known_hosts or Path("~/.ssh/known_hosts")).expanduser()

    def hosts(self) -> list[str]:
        """fqdn first, then the fallback address."""
        return [h for h in (self.block.ssh_fqdn, self.block.ssh_ip) if h]

    def ssh_argv(self, host: str) -> list[str]:
        """ssh to `host` with every option that keeps it non-interactive and bounded."""
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
                "-o", f"ServerAliveCountMax={s.alive_count_max}",
                "-o", "LogLevel=ERROR", "-l", self.block.ssh_user, host]

    def where(self) -> str:
        hosts = " then ".join(self.hosts())
        return f"{self.peer} ({hosts}, port {self.block.ssh_port})"

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
        """One ssh call: reachability, free disk under receive_dir_at_peer, restic version.
        Tries the fqdn, then ssh_ip when the name does not resolve or connect. Raises
        RingError naming the host, ssh's exit status and what to do next."""
        target = self.block.receive_dir_at_peer.rstrip("/") or "/"
        parent = str(Path(target).parent)
        remote = (f"df -Pk -- {shlex.quote(target)} 2>/dev/null || "
                  f"df -Pk -- {shlex.quote(parent)}; echo ::axe::; "
                  'PATH="$PATH:/opt/homebrew/bin:/usr/local/bin"; '
                  "restic version 2>/dev/null || echo 'restic not found'")
        failures: list[str] = []
        hosts = self.hosts()
        for index, host in enumerate(hosts):
            started = time.monotonic()
            proc = self._ssh(host, remote)
            if proc.returncode == 0 and "::axe::" in proc.stdout:
                disk, _, version = proc.stdout.partition("::axe::")
                return PeerStatus(host=host, via_fallback=index > 0,
                                  free_bytes=_df_free(disk), restic_version=_version(version),
                                  seconds=time.monotonic() - started)
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

    # --- repository --------------------------------------------------------------------------

    def location(self, host: str) -> str:
        return f"sftp:{self.block.ssh_user}@{host}:{self.block.receive_dir_at_peer}"

    def repository(self, host: str) -> Repository:
        sftp_command = shlex.join([*self.ssh_argv(host), "-s", "sftp"])
        return Repository(location=self.location(host),
                          password=peer_password(self.customer, self.block),
                          label=f"tier B repository of {self.customer_name} at {self.peer} "
                                f"({self.location(host)})",
                          extra_args=("-o", f"sftp.command={sftp_command}"))

    def restic(self, host: str) -> Restic:
        return Restic(self.repository(host), binary=self.binary,
                      timeout=self.settings.timeout_s)


def _df_free(text: str) -> int | None:
    """Available bytes from `df -Pk` output (macOS and Linux print the same columns)."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[3].isdigit():
            return int(parts[3]) * 1024
    return None


def _version(text: str) -> str | None:
    m = re.search(r"restic (\d+\.\d+\.\d+)", text)
    return m[1] if m else None


def link(config: Site, customer_name: str, peer: str, *,
         binary: str | None = None) -> PeerLink:
    """The PeerLink from `customer_name` to `peer`; RingError when `peer` has no ring block."""
    peers = config.peers()
    if peer not in peers:
        raise RingError(f"tier B: {peer} has no ring_backup block in customers.yaml (peers: "
                        f"{', '.join(sorted(peers)) or '-'})", retryable=False)
    return PeerLink(customer_name, config.customer(customer_name), peer, peers[peer],
                    binary=binary)


def _classify(exc: ResticError, where: str, host: str) -> RingError:
    """Turns a restic failure at the peer into a RingError with the right retry decision."""
    text = f"{exc}\n{exc.detail}".lower()
    if isinstance(exc, ResticTimeout):
        return RingError(f"tier B: {where}: {exc}. The link dropped or is too slow; a lock "
                         f"left at the peer is cleared on the next run (it is provably stale); "
                         f"local tier unaffected; {NEXT_STEP}", retryable=True, host=host)
    if isinstance(exc, WrongPassword):
        return RingError(f"tier B: {where}: {exc}; not retried (a password does not fix "
                         f"itself); local tier unaffected", retryable=False, host=host)
    link_words = ("ssh command exited", "connection lost", "connection closed",
                  "server not responding", "broken pipe", "connection reset",
                  "unable to start the sftp session", "eof")
    if isinstance(exc, ResticFatal) and any(w in text for w in link_words):
        return RingError(f"tier B: {where}: the ssh link failed during restic ({exc}); local "
                         f"tier unaffected; {NEXT_STEP}", retryable=True, host=host)
    if isinstance(exc, ResticFatal) and exc.restic_exit == 1:
        return RingError(f"tier B: {where}: {exc}. The repository at the peer may be damaged: "
                         f"run `restic check` on it (or move it away so the next run starts a "
                         f"new one); not retried; local tier unaffected", retryable=False,
                         host=host)
    return RingError(f"tier B: {where}: {exc}; local tier unaffected; {NEXT_STEP}",
                     retryable=not isinstance(exc, ResticFatal), host=host)


def latest_set(customer_name: str, customer: Customer, *, binary: str | None = None,
               in_progress: Callable[[str], bool] | None = None,
               log: Callable[[str], None] | None = None) -> BackupSet:
    """Given a customer, return the newest tier-A set whose run has finished (a set still
    being written by a running tier-A run is never copied). Raise RingError when there is
    none (retryable while the only set is still being written)."""
    try:
        return newest_finished_set(customer_name, customer, tier="tier B",
                                   in_progress=in_progress, say=log, binary=binary)
    except NoSetToCopy as exc:
        raise RingError(str(exc) + ("; nothing copied, retried later" if exc.waiting else ""),
                        retryable=exc.waiting) from None


def push_set(config: Site, customer_name: str, peer: str, *,
             binary: str | None = None, log: Callable[[str], None] | None = None,
             in_progress: Callable[[str], bool] | None = None) -> PushResult:
    """Given a customer and a peer, copy every snapshot of the latest finished tier-A set to
    our repository at the peer and return the PushResult.

    Initialises the peer repository on first use (`--copy-chunker-params` from tier A), never
    re-initialises one that exists, clears locks at the peer only when provably stale, copies
    what is missing and reads the peer back to confirm the whole set is there (copy_set).
    Raise RingError (with `retryable`).
    """
    say = log or (lambda _msg: None)
    started = time.monotonic()
    pl = link(config, customer_name, peer, binary=binary)
    source = local_repository(customer_name, pl.customer)
    the_set = latest_set(customer_name, pl.customer, binary=binary, in_progress=in_progress,
                         log=say)
    status = pl.probe()
    say(f"tier B: {peer} reachable at {status.host}"
        + (" (ssh_ip fallback)" if status.via_fallback else ""))
    restic = pl.restic(status.host)
    where = f"{peer} at {status.host}"
    result = PushResult(customer=customer_name, peer=peer, host=status.host,
                        run_id=the_set.run_id, set_time=the_set.time, set_ids=the_set.ids,
                        status=status, the_set=the_set)
    try:
        try:
            # Before anything else: a lock left by an earlier run whose process is gone (the
            # link dropped, restic could not remove it) is cleared; a live one is kept.
            result.cleared_locks = len(restic.clear_stale_locks())
            exists = True
        except RepositoryMissing:
            exists = False
        if result.cleared_locks:
            say(f"tier B: removed {result.cleared_locks} stale lock(s) at {peer}")
        if not exists:
            result.created_repository = restic.init(copy_chunker_params_from=source)
            say(f"tier B: created the repository at {pl.location(status.host)} with tier A's "
                f"chunker parameters")
        copied = copy_set(restic, source, the_set, customer_name, tier="tier B", to=peer,
                          say=say)
    except ResticError as exc:
        raise _classify(exc, where, status.host) from None
    except SecretError as exc:
        raise RingError(f"tier B: {where}: {exc}", retryable=False) from None
    if copied.still_missing:
        ids = ", ".join(s.short_id for s in copied.still_missing)
        raise RingError(f"tier B: {where}: {len(copied.still_missing)} snapshot(s) of set "
                        f"{the_set.run_id[:8]} are still missing after the copy ({ids}); local "
                        f"tier unaffected; {NEXT_STEP}", retryable=True, host=status.host)
    result.at_peer, result.copied = copied.after, copied.copied
    result.already_present, result.bytes = copied.already_present, copied.bytes
    result.duration_s = time.monotonic() - started
    return result


def peer_snapshots(config: Site, customer_name: str, peer: str, *,
                   binary: str | None = None) -> tuple[PeerStatus, list[Snapshot]]:
    """The customer's snapshots at the peer (for the set-present check and restores)."""
    pl = link(config, customer_name, peer, binary=binary)
    status = pl.probe()
    try:
        return status, pl.restic(status.host).snapshots(tags=[f"customer={customer_name}"])
    except ResticError as exc:
        raise _classify(exc, f"{peer} at {status.host}", status.host) from None


def open_ring(config: Site, customer_name: str, peer: str, *,
              binary: str | None = None) -> Restic:
    """A Restic for our repository at the peer, at the first address that answers."""
    pl = link(config, customer_name, peer, binary=binary)
    return pl.restic(pl.probe().host)
