"""A failed night never poisons the tiers (issue 8 item 4): a night whose database and roles
fail (wrong DB password) and whose folder succeeds is copied to the ring peer (real sshd on
loopback) and to a cold volume with the newest earlier snapshot of each missing item; the copy
reports the set as incomplete (ERROR check naming the items, exit 1), and the runbook's
`axe restore --tier ring --from <peer> --as-of <that day>` restores each item from its newest
good set."""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from axe_pipelines import cli
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.config import Site, load_config
from axe_pipelines.restic import Repository, Restic
from axe_pipelines.secrets import EnvSource
from axe_pipelines.sets import list_sets
from tests.conftest import PG_PASSWORD_ENV, REPO_PASSWORD_ENV, server_entry
from tests.sshd import SshServer, have_sshd, make_server

pytestmark = pytest.mark.skipif(not have_sshd(), reason="openssh-server is not installed")

SEOUL = ZoneInfo("Asia/Seoul")
GOOD_NIGHT = datetime(2026, 5, 20, 3, 0, tzinfo=SEOUL)
BAD_NIGHT = datetime(2026, 5, 21, 3, 0, tzinfo=SEOUL)
RING_PW, COLD_PW = "AXE_TEST_HONEST_RING_PW", "AXE_TEST_HONEST_COLD_PW"


class World:
    """Tier A of one scratch database and a folder, a ring peer on a real sshd, a cold
    volume (a plain folder), and customers.yaml for them."""

    def __init__(self, root: Path, sshd: SshServer, server_a, db: str):
        self.root, self.sshd = root, sshd
        self.peer_dir = root / "peer-disk" / "axe"
        self.peer_dir.parent.mkdir()
        (root / "files").mkdir()
        (root / "files" / "contract.txt").write_text("night 1\n")
        (root / "Volumes" / "axe-cold-1").mkdir(parents=True)
        data: dict[str, Any] = {
            "axe": {
                "servers": {"frame-postgres": server_entry(server_a)},
                "databases": {"ledger": {"server": "frame-postgres", "dbname": db}},
                "folders": {"files": {"path": str(root / "files")}},
                "tiers": {
                    "local": {"repository": str(root / "repo"),
                              "password": {"env": REPO_PASSWORD_ENV}},
                    "ring": {"connect_timeout_s": 3, "alive_interval_s": 1,
                             "alive_count_max": 2, "timeout_s": 120, "retries": 0,
                             "password": {"env": RING_PW}},
                    "cold": {"password": {"env": COLD_PW}, "accept_plain_folders": True,
                             "mount_glob": str(root / "Volumes" / "axe-cold-*"),
                             "timeout_s": 120}}},
            "realchoice": {"ring_backup": {
                "ssh_user": sshd.user, "ssh_fqdn": "localhost", "ssh_ip": "127.0.0.1",
                "ssh_port": sshd.port, "ssh_key": str(sshd.user_key),
                "known_hosts": str(sshd.known_hosts),
                "receive_dir_at_peer": str(self.peer_dir) + "/",
                "receive_dir_at_self": str(root / "inbound")}}}
        self.path = root / "customers.yaml"
        self.path.write_text(yaml.safe_dump(data))
        self.config: Site = load_config(self.path)

    def axe(self, *args: str) -> int:
        return cli.main(["--config", str(self.path), *args])

    def peer_repo(self) -> Restic:
        return Restic(Repository(str(self.peer_dir), EnvSource(env=RING_PW), "peer (direct)"),
                      timeout=60)


@pytest.fixture
def world(tmp_path, server_a, scratch_db, dagster_home, monkeypatch):
    monkeypatch.setenv(RING_PW, "ring-" + uuid.uuid4().hex)
    monkeypatch.setenv(COLD_PW, "cold-" + uuid.uuid4().hex)
    sshd = make_server(tmp_path / "sshd").start()
    w = World(tmp_path, sshd, server_a, scratch_db)
    customer = w.config.customer("axe")
    local_restic("axe", customer).init()
    assert run_tier_a("axe", customer, at=GOOD_NIGHT, run_id="run-good-night").ok
    # The bad night: the database password is wrong; the folder still backs up.
    (tmp_path / "files" / "contract.txt").write_text("night 2\n")
    real = os.environ[PG_PASSWORD_ENV]
    monkeypatch.setenv(PG_PASSWORD_ENV, "not-the-password")
    bad = run_tier_a("axe", customer, at=BAD_NIGHT, run_id="run-bad-night")
    monkeypatch.setenv(PG_PASSWORD_ENV, real)
    assert sorted(r.item.label for r in bad.failed) == ["db/ledger", "roles/frame-postgres"]
    yield w
    sshd.stop()
    for (kept,) in server_a.psql(f"SELECT datname FROM pg_database WHERE datname LIKE "
                                 f"'{scratch_db}\\_before\\_restore\\_%';"):
        server_a.psql(f'DROP DATABASE IF EXISTS "{kept}" WITH (FORCE);')


def test_a_failed_night_is_copied_as_incomplete_and_restores_per_item(world: World, server_a,
                                                                     scratch_db, capsys):
    assert world.axe("backup", "--ring", "--plain") == 1
    out = capsys.readouterr()
    (line,) = [ln for ln in out.out.splitlines() if ":set_complete:" in ln]
    assert line.startswith("check axe/tier_b/realchoice:set_complete: FAILED (set run-bad- of "
                           "2026-05-21 03:00 is incomplete: missing roles/frame-postgres, "
                           "db/ledger; copied with it: roles/frame-postgres from the set of "
                           "2026-05-20 03:00, db/ledger from the set of 2026-05-20 03:00)")
    assert "check axe/tier_b/realchoice:set_present: ok" in out.out
    good, bad = list_sets(local_restic("axe", world.config.customer("axe")), "axe")
    at_peer = {s.original for s in world.peer_repo().snapshots()}
    assert set(bad.ids) | {good.member("pgdump", "ledger").id,
                           good.member("roles", "frame-postgres").id} == at_peer

    # The incident after the bad night: the database loses a table.
    server_a.psql("DROP TABLE entity CASCADE;", dbname=scratch_db)
    (world.root / "repo").rename(world.root / "repo-lost")  # and the local disk is gone
    assert world.axe("restore", "--customer", "axe", "--tier", "ring", "--from", "realchoice",
                     "--as-of", "2026-05-21") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "database ledger: not in that set; from the set of 2026-05-20 03:00:00 KST" in out
    assert "roles frame-postgres: not in that set; from the set of 2026-05-20" in out
    assert server_a.psql("SELECT count(*) FROM entity;", dbname=scratch_db)[0][0] == "2"
    restored = [p for p in world.root.iterdir() if p.name.startswith("files.restored-")]
    assert (restored[0] / "contract.txt").read_text() == "night 2\n"
    assert any(ln.startswith("database ledger: ") and "(set of 2026-05-20 03:00 KST)" in ln
               for ln in out.splitlines())

    # integrity-check picks per item too: the database from its newest good set.
    assert world.axe("integrity-check", "--customer", "axe", "--target", "ledger", "--from",
                     "realchoice", "--as-of", "2026-05-21") == 0
    assert "of ledger from set 2026-05-20 03:00" in capsys.readouterr().out
    # --table without --target searches each database's own newest dump, not the bad set.
    assert world.axe("restore", "--customer", "axe", "--from", "realchoice", "--as-of",
                     "2026-05-21", "--table", "journal_line", "--dry-run") == 0
    assert "table journal_line is in database ledger" in capsys.readouterr().out


def test_cold_copies_the_failed_night_as_incomplete_too(world: World, capsys):
    assert world.axe("backup", "--cold") == 1
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if "/tier_c/" in ln and ":set_complete:" in ln]
    assert ":set_complete: FAILED (set run-bad- of 2026-05-21 03:00 is incomplete: missing " \
           "roles/frame-postgres, db/ledger" in line
    volume = Restic(Repository(str(world.root / "Volumes" / "axe-cold-1" / "restic-repo"),
                               EnvSource(env=COLD_PW), "volume (direct)"), timeout=60)
    kinds = sorted(s.tag("kind") + "/" + s.tag("run") for s in volume.snapshots())
    assert kinds == ["files/run-bad-night", "pgdump/run-good-night", "roles/run-good-night"]
