"""tiers.resolve_tier: `--tier` and `--from` in the operator's words."""

from __future__ import annotations

import pytest

from axe_pipelines.config import ConfigError, parse_config
from axe_pipelines.tiers import resolve_tier

PEER = {"ssh_user": "u", "ssh_fqdn": "p.invalid", "receive_dir_at_peer": "/in/",
        "receive_dir_at_self": "/srv/in"}
BASE = {"tiers": {"local": {"repository": "/r", "password": {"env": "X"}}}}


def site(*peers: str):
    return parse_config({"axe": BASE, **{p: {"ring_backup": PEER} for p in peers}})


@pytest.mark.parametrize(("tier", "source", "want"), [
    (None, None, ("local", None)),
    ("local", None, ("local", None)),
    ("A", None, ("local", None)),
    (None, "c", ("cold", None)),
    ("cold", "cold", ("cold", None)),
    ("ring", None, ("ring", "realchoice")),  # the only peer
    (None, "realchoice", ("ring", "realchoice")),
    ("ring", "realchoice", ("ring", "realchoice")),
    ("peer", "b", ("ring", "realchoice")),
])
def test_tier_words_and_peer_names(tier, source, want):
    assert resolve_tier(site("realchoice"), tier, source) == want


@pytest.mark.parametrize(("peers", "tier", "source", "problem"), [
    (("realchoice",), "local", "cold", "--tier local and --from cold name different tiers"),
    (("realchoice",), "cold", "realchoice", "--from realchoice is a ring peer, but --tier is "
                                            "cold"),
    (("realchoice",), "tape", None, "unknown tier or peer 'tape' (valid: local, ring, cold, "
                                    "realchoice)"),
    ((), "ring", None, "--tier ring: no customer has a ring_backup block"),
    (("realchoice", "other"), "ring", None, "--tier ring: say which peer with --from (other, "
                                            "realchoice)"),
])
def test_what_cannot_be_resolved_is_a_config_error(peers, tier, source, problem):
    with pytest.raises(ConfigError) as info:
        resolve_tier(site(*peers), tier, source)
    assert info.value.problems == [problem] and info.value.exit_code == 2
