"""peer.py without a peer: how ssh failures are read, the ssh options, df and version
parsing, and which peers a customer pushes to."""

from __future__ import annotations

import pytest

from axe_pipelines.config import ConfigError, parse_config
from axe_pipelines.peer import (
    RepositoryFacts,
    RingError,
    _df_free,
    _reason,
    _repository_facts,
    _version,
    link,
)
from axe_pipelines.ring import ring_peers

PEER = {"ssh_user": "realchoice", "ssh_fqdn": "realchoice.invalid", "ssh_ip": "192.0.2.10",
        "receive_dir_at_peer": "/Users/realchoice/peer-backups/axe/",
        "receive_dir_at_self": "/srv/in", "ssh_port": 2222, "known_hosts": "/etc/axe/known"}
LOCAL = {"repository": "/r", "password": {"env": "X"}}


def site(ring: dict | None = None, **peers: dict):
    tiers = {"local": LOCAL, **({"ring": ring} if ring is not None else {})}
    return parse_config({"axe": {"tiers": tiers},
                         **{name: {"ring_backup": block} for name, block in peers.items()}})


@pytest.mark.parametrize(("stderr", "kind"), [
    ("ssh: Could not resolve hostname realchoice.invalid: Name or service not known", "resolve"),
    ("ssh: connect to host 127.0.0.1 port 2222: Connection refused", "connect"),
    ("Connection timed out during banner exchange", "connect"),
    ("@@@@@@@\n@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nHost key verification "
     "failed.", "hostkey"),
    ("realchoice@127.0.0.1: Permission denied (publickey).", "auth"),
    ("something else entirely\n", "other"),
])
def test_ssh_failures_are_classified(stderr, kind):
    got, line = _reason(stderr)
    assert got == kind and "\n" not in line and line


def test_ssh_is_non_interactive_pinned_and_bounded():
    pl = link(site(ring={"connect_timeout_s": 7}, realchoice=PEER), "axe", "realchoice")
    argv = pl.ssh_argv("192.0.2.10")
    for option in ("BatchMode=yes", "IdentitiesOnly=yes", "StrictHostKeyChecking=yes",
                   "UserKnownHostsFile=/etc/axe/known", "HostKeyAlias=realchoice.invalid",
                   "ConnectTimeout=7", "ServerAliveInterval=10"):
        assert option in argv
    # ssh disconnects after CountMax+1 silent intervals: 10 s x 3 (README's ~30 s) is CountMax=2.
    assert "ServerAliveCountMax=2" in argv and pl.silent_s == 30
    assert argv[:3] == ["ssh", "-p", "2222"] and argv[-1] == "192.0.2.10"
    assert pl.hosts() == ["realchoice.invalid", "192.0.2.10"]
    assert pl.location("192.0.2.10") == ("sftp:realchoice@192.0.2.10:/Users/realchoice/"
                                         "peer-backups/axe/")
    assert "sftp.command=ssh -p 2222" in pl.repository("192.0.2.10").extra_args[1]


def test_a_key_path_sftp_command_cannot_carry_is_refused():
    with pytest.raises(RingError, match="contains a quote or backslash"):
        link(site(ring={}, realchoice={**PEER, "ssh_key": "/keys/it's"}), "axe", "realchoice")


def test_df_and_restic_version_from_the_peers_output():
    df = ("Filesystem 1024-blocks Used Available Capacity Mounted on\n"
          "/dev/disk3s5 971350180 877023632 45088540 96% /System/Volumes/Data\n")
    assert _df_free(df) == 45088540 * 1024 and _df_free("garbage") is None
    assert _version("restic 0.18.1 compiled with go1.24.2 on darwin/arm64") == "0.18.1"
    assert _version("restic not found") is None


def test_what_the_probe_saw_of_the_peer_repository():
    seen = "\nconfig\nlocks \nsnapshots " + "a" * 64 + "\nsnapshots " + "b" * 64 + \
        "\n::axe-end::\n"
    assert _repository_facts(seen) == RepositoryFacts(
        locks=False, snapshot_files=frozenset({"a" * 64, "b" * 64}))
    assert _repository_facts("\nconfig\nlocks 1f2e\nsnapshots \n::axe-end::\n") == \
        RepositoryFacts(locks=True, snapshot_files=frozenset())
    # A folder `ls` could not read counts as holding locks, and as unknown snapshots.
    assert _repository_facts("\nconfig\nlocks ?\nsnapshots ?\n::axe-end::\n") == \
        RepositoryFacts(locks=True, snapshot_files=None)
    # No `config` (no repository yet), or output cut short: the probe cannot tell.
    assert _repository_facts("\n::axe-end::\n") is None
    assert _repository_facts("\nconfig\nlocks \n") is None


def test_which_peers_a_customer_pushes_to():
    both = site(ring={}, realchoice=PEER, other=PEER)
    assert ring_peers(both, "axe") == ["other", "realchoice"]
    assert ring_peers(site(ring={"peers": ["realchoice"]}, realchoice=PEER, other=PEER),
                      "axe") == ["realchoice"]
    # A peer without a ring_backup block is refused when customers.yaml is read.
    with pytest.raises(ConfigError, match=r"axe.tiers.ring.peers: unknown peer\(s\) 'gone' "
                                          r"\(ring peers: realchoice\)"):
        site(ring={"peers": ["gone"]}, realchoice=PEER)
    with pytest.raises(RingError, match="nope has no ring_backup block"):
        link(both, "axe", "nope")
