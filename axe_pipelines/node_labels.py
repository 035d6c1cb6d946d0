"""What the Dagster UI calls each asset: the last part of its key. The lineage graph and the
sidebar show only that part, so it names the thing itself — the database, the server, the
folder, the peer — and no two nodes of one customer (nor the peers' inbound pushes) share
one. names.py builds the keys from these labels; customers.yaml validation refuses a file
whose names would make two nodes look alike. Plain: nothing here imports Dagster.

    <customer>/dumps/<database>            <database>          pg_dump of one database
    <customer>/roles/<server>              <server>            pg_dumpall --globals-only
    <customer>/dumpall/<server>-dumpall    <server>-dumpall    plain pg_dumpall
    <customer>/folders/<folder>            <folder>            restic backup of a folder
    <customer>/physical/<server>-physical  <server>-physical   pg_basebackup of a server
    <customer>/tier_a/nightly_set          nightly_set         the night's set
    <customer>/tier_b/<peer>               <peer>              our copy at a ring peer
    <customer>/tier_c/cold_volumes         cold_volumes        our copy on the cold SSDs
    <customer>/drill/restore_drill         restore_drill       the quarterly restore drill
    <customer>/wal/<server>-wal            <server>-wal        archived WAL of a server
    peers/inbound/from-<peer>              from-<peer>         what a peer pushes to us
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING

from axe_pipelines.backup import plan_tier_a

if TYPE_CHECKING:
    from axe_pipelines.config import Customer

SET_LABEL = "nightly_set"
COLD_LABEL = "cold_volumes"
DRILL_LABEL = "restore_drill"
# The key's middle part per tier-A item kind (backup.Item.kind).
KIND_FOLDER = {"pgdump": "dumps", "roles": "roles", "dumpall": "dumpall", "files": "folders",
               "physical": "physical"}


def item_label(kind: str, name: str) -> str:
    """Given a tier-A item's kind (pgdump, roles, dumpall, files) and name, return its node
    label: the database, server or folder name; `<server>-dumpall` for a plain pg_dumpall,
    which would otherwise look like the same server's roles."""
    if kind == "physical":  # the server's roles are labelled by the server's name
        return f"{name}-physical"
    return f"{name}-dumpall" if kind == "dumpall" else name


def wal_label(server: str) -> str:
    """Given a server with WAL archiving, return the label of its WAL asset, `<server>-wal`
    (the server alone is its roles' label)."""
    return f"{server}-wal"


def inbound_label(peer: str) -> str:
    """Given a ring peer, return the label of its pushes to us, `from-<peer>` (our push to
    the same peer is labelled `<peer>`)."""
    return f"from-{peer}"


def _what(kind: str, name: str) -> str:
    return {"pgdump": f"database {name}", "roles": f"roles of server {name}",
            "dumpall": f"pg_dumpall of server {name}", "files": f"folder {name}",
            "physical": f"base backup of server {name}"}[kind]


def customer_nodes(customer: Customer, peers: list[str]) -> dict[str, list[str]]:
    """Given a customer this site backs up and the peers it pushes to, return its nodes by
    label: {label: [what carries it, ...]} (tier A's items and set, tier B, tier C, drill)."""
    nodes: dict[str, list[str]] = defaultdict(list)
    for item in plan_tier_a(customer):
        nodes[item_label(item.kind, item.name)].append(_what(item.kind, item.name))
    nodes[SET_LABEL].append("the night's set")
    for server_name, server in customer.servers.items():
        if server.wal is not None:
            nodes[wal_label(server_name)].append(f"WAL of server {server_name}")
    for peer in peers:
        nodes[peer].append(f"tier B copy at {peer}")
    if customer.tiers is not None and customer.tiers.cold is not None:
        nodes[COLD_LABEL].append("tier C")
    nodes[DRILL_LABEL].append("the restore drill")
    return nodes


def label_clashes(customers: Mapping[str, Customer]) -> list[str]:
    """Given every customer of customers.yaml, return one problem line per label that two
    nodes would share in the UI (within one customer, or against a peer's inbound pushes);
    empty when every node can be told apart."""
    peers = sorted(n for n, c in customers.items() if c.ring_backup is not None)
    inbound = {inbound_label(p): f"{p}'s pushes to us" for p in peers}
    problems = []
    for name, customer in customers.items():
        if customer.tiers is None:
            continue
        ring = customer.tiers.ring
        pushes_to = [] if ring is None else (
            list(ring.peers) if ring.peers is not None else [p for p in peers if p != name])
        nodes = customer_nodes(customer, pushes_to)
        for label, what in inbound.items():
            if label in nodes:
                nodes[label].append(what)
        for label, whats in sorted(nodes.items()):
            if len(whats) > 1:
                problems.append(
                    f"{name}: {' and '.join(whats)} would both show as {label!r} in the "
                    f"Dagster UI (a node is labelled by its asset key's last part); rename "
                    f"one of them in customers.yaml")
    return problems
