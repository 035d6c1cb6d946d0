"""Tier B against a real sshd on 127.0.0.1 (tests/sshd.py), the real restic binary and a real
tier-A set dumped from the test PostgreSQL clusters."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from axe_pipelines import cli, read_ahead
from axe_pipelines.assets.tier_b import build_tier_b_asset, inbound_spec
from axe_pipelines.backup import local_restic, run_tier_a
from axe_pipelines.checks.tier_b import set_present_result, tier_a_running
from axe_pipelines.config import Site as SiteModel
from axe_pipelines.config import load_config
from axe_pipelines.copying import READ_BACK, REPORTED, present_ids, tier_a_tags
from axe_pipelines.definitions import tier_b_definitions
from axe_pipelines.inbound import inbound_state
from axe_pipelines.names import inbound_key, repository_pool, repository_tags, tier_b_key
from axe_pipelines.peer import RingError, link, ring_settings
from axe_pipelines.restic import Repository, Restic, find_restic, restic_version
from axe_pipelines.ring import peer_snapshots, push_set
from axe_pipelines.secrets import EnvSource
from axe_pipelines.sensors.inbound import build_inbound_sensor, inbound_events
from axe_pipelines.sets import list_sets
from axe_pipelines.tiers import open_tier
from tests.conftest import REPO_PASSWORD_ENV, server_entry
from tests.mounts import require_tmpfs, umount_all
from tests.sshd import SshServer, have_sshd, make_server, pin_host_key

pytestmark = pytest.mark.skipif(not have_sshd(), reason="openssh-server is not installed")

RING_PASSWORD_ENV = "AXE_TEST_RING_PASSWORD"
KST_OFFSET = timedelta(hours=9)  # the peer's timezone (Asia/Seoul, the default)


def _installed_restic_version() -> str:
    """`restic version` of the binary the code under test uses (the peer is this machine)."""
    version = restic_version(find_restic())
    assert version is not None
    return ".".join(map(str, version))


RESTIC_VERSION = _installed_restic_version()


@pytest.fixture(scope="session")
def tier_a_template(tmp_path_factory, server_a, server_b, restic_bin) -> Path:
    """One real tier-A set (two databases, roles, a folder with 6 MiB of random data so a copy
    lasts long enough to be interrupted), made once and copied into each test."""
    root = tmp_path_factory.mktemp("tier_a_template")
    files = root / "files"
    files.mkdir()
    (files / "contract.txt").write_text("contract\n" * 200)
    (files / "scan.bin").write_bytes(os.urandom(6 << 20))
    data = _customers(root, server_a, server_b, ring=None, peer=None)
    (root / "customers.yaml").write_text(yaml.safe_dump(data))
    config = load_config(root / "customers.yaml")
    customer = config.customer("axe")
    local_restic("axe", customer).init()
    result = run_tier_a("axe", customer, at=datetime(2026, 5, 20, 3, 0, tzinfo=UTC),
                        run_id="run-template")
    assert result.ok, [r.error for r in result.failed]
    return root


def _customers(root: Path, server_a, server_b, *, ring: dict | None,
               peer: dict | None) -> dict[str, Any]:
    tiers: dict[str, Any] = {"local": {"repository": str(root / "repo"),
                                       "password": {"env": REPO_PASSWORD_ENV}}}
    if ring is not None:
        tiers["ring"] = ring
    data: dict[str, Any] = {"axe": {
        "servers": {"frame-postgres": server_entry(server_a),
                    "index-postgres": server_entry(server_b)},
        "databases": {"frame": {"server": "frame-postgres"},
                      "index": {"server": "index-postgres"}},
        "folders": {"files": {"path": str(root / "files")}},
        "tiers": tiers}}
    if peer is not None:
        data["realchoice"] = {"ring_backup": peer}
    return data


class Site:
    """One test's world: tier A (copied from the template), the peer's sshd, customers.yaml."""

    def __init__(self, root: Path, template: Path, sshd: SshServer, server_a, server_b):
        self.root, self.sshd = root, sshd
        shutil.copytree(template / "repo", root / "repo")
        shutil.copytree(template / "files", root / "files")
        self.peer_dir = root / "peer-disk" / "peer-backups" / "axe"
        self.peer_dir.parent.mkdir(parents=True)
        self.ring: dict[str, Any] = {"connect_timeout_s": 3, "alive_interval_s": 1,
                                     "alive_count_max": 2, "timeout_s": 60, "retries": 2,
                                     "retry_delay_s": 0,
                                     "password": {"env": RING_PASSWORD_ENV}}
        self.peer: dict[str, Any] = {
            "ssh_user": sshd.user, "ssh_fqdn": "localhost", "ssh_ip": "127.0.0.1",
            "receive_dir_at_peer": str(self.peer_dir) + "/",
            "receive_dir_at_self": str(root / "inbound" / "realchoice"),
            "restic_version": RESTIC_VERSION, "disk_available_gib": 1,
            "bidirectional_ssh": True, "ssh_port": sshd.port,
            "ssh_key": str(sshd.user_key), "known_hosts": str(sshd.known_hosts)}
        self.server_a, self.server_b = server_a, server_b

    def config(self, **peer_changes: Any) -> SiteModel:
        self.peer.update(peer_changes)
        data = _customers(self.root, self.server_a, self.server_b, ring=self.ring,
                          peer=self.peer)
        path = self.root / "customers.yaml"
        path.write_text(yaml.safe_dump(data))
        return load_config(path)

    def peer_repo(self) -> Restic:
        """The peer's repository opened directly on disk (the peer is this machine)."""
        return Restic(Repository(str(self.peer_dir), EnvSource(env=RING_PASSWORD_ENV),
                                 "peer repo (direct)"), timeout=60)

    def tier_a_state(self) -> tuple[list[str], list[str]]:
        """Tier A's snapshot ids and lock files: what must never change because of tier B."""
        repo = self.root / "repo"
        snaps = sorted(p.name for p in (repo / "snapshots").iterdir())
        locks = sorted(p.name for p in (repo / "locks").iterdir())
        return snaps, locks


@pytest.fixture
def site(tmp_path, tier_a_template, server_a, server_b, monkeypatch) -> Site:
    monkeypatch.setenv(RING_PASSWORD_ENV, "ring-" + os.urandom(8).hex())
    sshd = make_server(tmp_path / "sshd", alias="peer.invalid").start()
    yield Site(tmp_path, tier_a_template, sshd, server_a, server_b)
    sshd.stop()


def _set_ids(config: SiteModel) -> list[str]:
    return list_sets(local_restic("axe", config.customer("axe")), "axe")[-1].ids


# --- the copy ---------------------------------------------------------------------------------


def test_push_initialises_with_tier_a_chunker_params_and_is_idempotent(site: Site):
    config = site.config()
    before = site.tier_a_state()
    first = push_set(config, "axe", "realchoice")
    assert first.created_repository
    assert sorted(first.copied) == sorted(_set_ids(config))
    assert first.already_present == []
    assert first.bytes > 6 << 20
    assert first.status and first.status.host == "localhost" and not first.status.via_fallback
    # Deduplication survives the copy only with tier A's chunker parameters.
    tier_a_cfg = json.loads(local_restic("axe", config.customer("axe")).run(
        ["cat", "config", "--no-lock"], what="config"))
    peer_cfg = json.loads(site.peer_repo().run(["cat", "config", "--no-lock"], what="config"))
    assert peer_cfg["chunker_polynomial"] == tier_a_cfg["chunker_polynomial"]
    assert peer_cfg["id"] != tier_a_cfg["id"]

    second = push_set(config, "axe", "realchoice")
    assert not second.created_repository  # reused, never re-initialised
    assert second.copied == []
    assert sorted(second.already_present) == sorted(_set_ids(config))
    peer_cfg_again = json.loads(site.peer_repo().run(["cat", "config", "--no-lock"],
                                                     what="config"))
    assert peer_cfg_again["id"] == peer_cfg["id"]
    originals = {s.original for s in site.peer_repo().snapshots()}
    assert originals == set(_set_ids(config))
    assert site.tier_a_state() == before

    # Restores open the copy by tier name (another engineer's `axe restore --tier ring`).
    restic = open_tier(config, "axe", "ring", "realchoice")
    sets = list_sets(restic, "axe")
    assert sorted(s.original for s in sets[-1].snapshots) == sorted(_set_ids(config))


def _counting_restic(tmp_path: Path, real: str, monkeypatch) -> Path:
    """Make axe run restic through a shim that logs each call's argv; return the log."""
    log, shim = tmp_path / "restic-calls", tmp_path / "restic-shim"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("AXE_RESTIC", str(shim))
    return log


def _calls(log: Path) -> list[str]:
    """Each logged restic call as `peer <subcommand>` (its sftp.command ends in `sftp`) or
    `local <subcommand>`; `restic version` left out."""
    calls = []
    for line in log.read_text().splitlines():
        where, rest = ("peer", line.split(" sftp ", 1)[1]) if "sftp.command=" in line \
            else ("local", line)
        if rest.split()[0] != "version":
            calls.append(f"{where} {rest.split()[0]}")
    return calls


def test_a_push_opens_the_peer_repository_for_the_copy_only(
        site: Site, tmp_path, monkeypatch, restic_bin):
    """Issue 12: the probe's ssh call reads the peer repository's folder, so a push into a
    repository without locks starts one restic process there: the copy of the whole set
    (restic skips what is there), confirmed by its own report of each snapshot and that
    snapshot's file listed at the peer over ssh; no lock listing, no listing before or
    after.
    What was there already (two members copied by hand) is told apart from what this push
    copied by the snapshot file names the probe saw."""
    config = site.config()
    source = local_restic("axe", config.customer("axe")).repo
    site.peer_repo().init(copy_chunker_params_from=source)
    ids = _set_ids(config)
    site.peer_repo().copy(source, ids[:2])
    log = _counting_restic(tmp_path, restic_bin, monkeypatch)
    result = push_set(config, "axe", "realchoice")
    assert _calls(log) == ["local snapshots", "peer copy"]  # confirmed by its report
    assert result.confirmed_by == REPORTED
    assert sorted(result.already_present) == sorted(ids[:2])
    assert sorted(result.copied) == sorted(ids[2:])
    assert result.at_peer == set(ids)
    assert not result.created_repository and result.cleared_locks == 0

    log.unlink()
    again = push_set(config, "axe", "realchoice")
    assert again.copied == [] and sorted(again.already_present) == sorted(ids)
    assert _calls(log) == ["local snapshots", "peer copy"]
    assert len(site.peer_repo().snapshots()) == len(ids)  # restic copied nothing twice


def _copy_shim(tmp_path: Path, real: str, monkeypatch, after_copy: str) -> Path:
    """Make axe run restic through a shim that logs each call and, for `copy`, pipes its
    report through `after_copy` (a sh command reading stdin) once the copy has ended."""
    log, shim = tmp_path / "restic-calls", tmp_path / "restic-shim"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase " $* " in *" copy "*)\n'
                    f'  out=$({real} "$@"); rc=$?; printf "%s\\n" "$out" | {after_copy}; '
                    f'exit $rc;;\nesac\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("AXE_RESTIC", str(shim))
    return log


def test_a_copy_report_axe_cannot_read_is_confirmed_by_reading_the_peer_back(
        site: Site, tmp_path, monkeypatch, restic_bin):
    """A restic whose copy report words its lines otherwise (here: no `saved` lines) is
    not taken at its word: the peer is read back, and what was copied is told apart from
    what was there by the new snapshot files."""
    config = site.config()
    source = local_restic("axe", config.customer("axe")).repo
    site.peer_repo().init(copy_chunker_params_from=source)
    ids = _set_ids(config)
    site.peer_repo().copy(source, ids[:1])
    log = _copy_shim(tmp_path, restic_bin, monkeypatch, "grep -v ' saved$'")
    result = push_set(config, "axe", "realchoice")
    assert _calls(log) == ["local snapshots", "peer copy", "peer snapshots"]
    assert result.confirmed_by == READ_BACK
    assert result.already_present == ids[:1] and sorted(result.copied) == sorted(ids[1:])
    assert result.at_peer >= set(ids)


def test_a_copy_restic_reports_but_the_peer_lacks_is_never_called_good(
        site: Site, tmp_path, monkeypatch, restic_bin):
    """restic reports every snapshot saved, but one snapshot file is gone from the peer
    right after the copy (a peer-side fault): the report alone is not trusted, the read-back
    finds the member missing, and the push fails naming it."""
    config = site.config()
    snapshots = site.peer_dir / "snapshots"
    drop = f"cat; f=$(ls -t {snapshots} | head -n 1); rm -f {snapshots}/$f"
    _copy_shim(tmp_path, restic_bin, monkeypatch, drop)
    with pytest.raises(RingError) as err:
        push_set(config, "axe", "realchoice")
    assert "1 snapshot(s) of set" in str(err.value) and "still missing after the copy" in \
        str(err.value)


def test_tier_a_read_ahead_is_taken_only_while_its_snapshot_files_are_the_same(
        site: Site, tmp_path, monkeypatch, restic_bin):
    """Issue 12: `axe backup --ring` lists tier A while Dagster loads (read_ahead.py). The
    push takes that listing while tier A's `snapshots/` folder holds the same files, and
    lists again once a set was added: the newer set is the one copied, never the one the
    listing saw."""
    read_ahead.forget()
    config = site.config()
    customer = config.customer("axe")
    site.peer_repo().init(copy_chunker_params_from=local_restic("axe", customer).repo)
    log = _counting_restic(tmp_path, restic_bin, monkeypatch)
    read_ahead.start("axe", customer, tier_a_tags("axe"))
    read_ahead.settle()
    first = push_set(config, "axe", "realchoice")
    assert _calls(log) == ["local snapshots", "peer copy"]  # the listing read ahead
    listing = [ln for ln in log.read_text().splitlines() if ln.startswith("snapshots")]
    assert len(listing) == 1 and listing[0].endswith("--no-lock")  # it takes no lock

    made = run_tier_a("axe", customer, at=datetime.now(UTC).replace(microsecond=0),
                      run_id=str(uuid.uuid4()))  # tonight's set, after the listing was read
    assert made.ok
    log.unlink()
    second = push_set(config, "axe", "realchoice")
    assert _calls(log)[0] == "local snapshots"  # listed again: the files changed
    assert second.run_id != first.run_id
    assert second.run_id == list_sets(local_restic("axe", customer), "axe")[-1].run_id
    read_ahead.forget()


def test_a_stale_lock_the_probe_sees_is_listed_and_cleared(site: Site, tmp_path, monkeypatch,
                                                          restic_bin):
    """A lock file in the peer's `locks/` (here of a restic killed on this host) makes the
    push list the locks and clear the stale one before copying."""
    config = site.config()
    push_set(config, "axe", "realchoice")
    repo = site.peer_repo()
    killed = subprocess.Popen([repo.binary, "backup", "--stdin-from-command", "--tag",
                               "customer=other", "--", "sleep", "60"], env=repo.env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = site.peer_dir / "locks"
    deadline = time.monotonic() + 30
    while not [p for p in locks.iterdir() if "-tmp-" not in p.name]:
        assert time.monotonic() < deadline, "the restic to kill never took its lock"
        time.sleep(0.02)
    killed.kill()
    killed.wait()
    log = _counting_restic(tmp_path, restic_bin, monkeypatch)
    result = push_set(config, "axe", "realchoice")
    assert result.cleared_locks == 1
    assert "peer list" in _calls(log) and "peer unlock" in _calls(log)
    assert not list(locks.iterdir())
    assert sorted(result.already_present) == sorted(_set_ids(config))


def test_restore_from_the_copy_at_the_peer(site: Site, capsys):
    """Seed scenario 1b: the local repository is gone; the copy held at the peer (over sftp)
    restores the folder beside the original and a database into staging, where its row
    counts are checked."""
    config = site.config()
    push_set(config, "axe", "realchoice")
    (site.root / "repo").rename(site.root / "repo-lost")  # the local disk died
    files = site.root / "files"
    (files / "contract.txt").write_text("overwritten\n")
    path = str(site.root / "customers.yaml")
    base = ["--config", path, "restore", "--customer", "axe", "--tier", "ring", "--from",
            "realchoice", "--as-of", "2026-05-20"]

    assert cli.main([*base, "--target", "files", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "tier ring" in plan and not any(p.name.startswith("files.restored-")
                                           for p in site.root.iterdir())

    assert cli.main([*base, "--target", "files"]) == 0
    capsys.readouterr()
    beside = [p for p in site.root.iterdir() if p.name.startswith("files.restored-")]
    assert len(beside) == 1
    assert (beside[0] / "contract.txt").read_text() == "contract\n" * 200
    assert (beside[0] / "scan.bin").read_bytes() == (files / "scan.bin").read_bytes()
    assert (files / "contract.txt").read_text() == "overwritten\n"  # never overwritten

    assert cli.main(["--config", path, "integrity-check", "--customer", "axe", "--tier",
                     "ring", "--from", "realchoice", "--target", "frame"]) == 0
    out = capsys.readouterr().out
    assert "row-counts" in out and "FAILED" not in out
    assert os.environ[RING_PASSWORD_ENV] not in out


def test_fqdn_that_does_not_resolve_falls_back_to_ssh_ip(site: Site):
    config = site.config(ssh_fqdn="peer.invalid", ssh_ip="127.0.0.1")
    result = push_set(config, "axe", "realchoice")
    assert result.status is not None
    assert result.status.host == "127.0.0.1" and result.status.via_fallback
    assert result.status.free_bytes and result.status.free_bytes > 0
    assert result.status.restic_version == RESTIC_VERSION


def test_fqdn_that_resolves_but_does_not_connect_falls_back_to_ssh_ip(site: Site):
    """The fqdn resolves (here to 127.0.0.2, a loopback address sshd does not listen on), the
    connection is refused, and the push goes through ssh_ip; the host key is still checked
    against the key pinned under the fqdn (HostKeyAlias)."""
    pin_host_key(site.sshd, ("localhost", "127.0.0.1", "127.0.0.2"))
    config = site.config(ssh_fqdn="127.0.0.2", ssh_ip="127.0.0.1")
    result = push_set(config, "axe", "realchoice")
    assert result.status is not None
    assert result.status.host == "127.0.0.1" and result.status.via_fallback
    assert sorted(result.copied) == sorted(_set_ids(config))

    # Without a fallback address the refused connection is the error, with ssh's status.
    config = site.config(ssh_fqdn="127.0.0.2", ssh_ip=None)
    with pytest.raises(RingError) as err:
        push_set(config, "axe", "realchoice")
    assert "127.0.0.2: ssh exit 255" in str(err.value)
    assert "connection refused" in str(err.value).lower()


def test_set_present_fails_when_a_snapshot_is_missing_at_the_peer(site: Site):
    config = site.config()
    result = push_set(config, "axe", "realchoice")
    assert result.the_set is not None
    key = tier_b_key("axe", "realchoice")
    _, at_peer = peer_snapshots(config, "axe", "realchoice")
    assert set_present_result(key, result.the_set, present_ids(at_peer)).passed
    # The peer loses one copy (forgotten there directly, as its operator might).
    victim = next(s for s in site.peer_repo().snapshots() if s.tag("kind") == "pgdump")
    site.peer_repo().run(["forget", victim.id], what="forget")
    _, at_peer = peer_snapshots(config, "axe", "realchoice")
    check = set_present_result(key, result.the_set, present_ids(at_peer))
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["missing"].value == [victim.original[:8]]
    assert "1 of" in check.description and "missing at the peer" in check.description
    # The next push puts it back.
    again = push_set(config, "axe", "realchoice")
    assert again.copied == [victim.original]
    assert set_present_result(key, again.the_set, again.at_peer).passed


def test_peer_now_check_runs_on_its_own_between_pushes(site: Site, dagster_home):
    """The peer_now check job (scheduled every 6 h, or run from the UI) looks at the peer
    without pushing: ERROR before the set is there, OK after the push, ERROR again when the
    peer loses a snapshot or its sshd goes away; the peer's repository is never written."""
    from axe_pipelines.definitions import build_definitions

    config = site.config()
    defs = build_definitions(config)
    job = defs.resolve_job_def("axe_tier_b_peer_check")
    schedule = defs.resolve_schedule_def("axe_tier_b_peer_check")
    assert schedule.cron_schedule == "15 */6 * * *"
    assert schedule.execution_timezone == "Asia/Seoul"
    # The nightly job pushes; the check job only looks.
    assert {n.name for n in defs.resolve_job_def("axe_tier_b").nodes_in_topological_order} != {
        n.name for n in job.nodes_in_topological_order}

    def look() -> dg.AssetCheckEvaluation:
        result = job.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.check_name == "peer_now"
        return evaluation

    first = look()  # nothing pushed yet: no repository at the peer
    assert not first.passed and first.severity == dg.AssetCheckSeverity.ERROR
    assert not site.peer_dir.exists() or not any(site.peer_dir.iterdir())

    push_set(config, "axe", "realchoice")
    ok = look()
    assert ok.passed, ok.description
    assert ok.description.startswith("reachable at localhost; holds set run-temp")

    victim = next(s for s in site.peer_repo().snapshots() if s.tag("kind") == "pgdump")
    site.peer_repo().run(["forget", victim.id], what="forget")
    lost = look()
    assert not lost.passed and lost.severity == dg.AssetCheckSeverity.ERROR
    assert lost.metadata["missing"].value == [victim.original[:8]]
    assert "axe backup --ring" in lost.description

    site.sshd.stop()
    gone = look()
    assert not gone.passed and "cannot reach realchoice" in gone.description
    assert os.environ[RING_PASSWORD_ENV] not in json.dumps(
        {k: str(v.value) for k, v in gone.metadata.items()}) + gone.description


class HeldRun:
    """A real tier-A run (`axe backup --local` in a subprocess) held mid-dump: one database's
    table is locked ACCESS EXCLUSIVE by another session (as a long migration would), so that
    database's dump waits while the rest of tonight's set is written. `release()` commits the
    lock and waits for the run to finish."""

    def __init__(self, root: Path, data: dict[str, Any], server_a, instance: dg.DagsterInstance):
        self.server, self.instance = server_a, instance
        self.tier_a = Restic(Repository(str(root / "repo"), EnvSource(env=REPO_PASSWORD_ENV),
                                        "tier A (direct)"), timeout=60)
        self.db = "held_" + uuid.uuid4().hex[:8]
        server_a.psql(f'CREATE DATABASE "{self.db}";')
        server_a.psql("CREATE TABLE ledger (id int); INSERT INTO ledger SELECT "
                      "generate_series(1, 100);", dbname=self.db)
        data = copy.deepcopy(data)
        data["axe"]["databases"][self.db] = {"server": "frame-postgres"}
        path = root / "customers-held.yaml"
        path.write_text(yaml.safe_dump(data))
        env = {**os.environ, "PGPASSWORD": server_a.password}
        self.locker = subprocess.Popen(
            [str(server_a.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p",
             str(server_a.port), "-U", server_a.user, "-d", self.db], env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.locker.stdin and self.locker.stdout
        self.locker.stdin.write("BEGIN; LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE; "
                                "SELECT 'locked';\n")
        self.locker.stdin.flush()
        assert self.locker.stdout.readline().strip() == "locked"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "axe_pipelines.cli", "--config", str(path), "backup",
             "--local"], env={**os.environ, "DAGSTER_HOME": os.environ["DAGSTER_HOME"]},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.run_id = self._wait_until_held()

    def _wait_until_held(self) -> str:
        """Waits until the held database's dump waits on the lock, the run is STARTED in
        Dagster's storage and has written part of its set; returns the run id."""
        deadline = time.monotonic() + 180
        while True:
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "tier A never got held mid-dump"
            waiting = self.server.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                       f"'{self.db}' AND wait_event_type = 'Lock';")
            runs = self.instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED],
                                                        job_name="axe_tier_a"))
            if int(waiting[0][0]) and runs and self.written(runs[0].run_id):
                return runs[0].run_id
            time.sleep(0.2)

    def written(self, run_id: str | None = None) -> list[str]:
        """Return the ids of the snapshots the held run has written so far."""
        return [s.id for s in self.tier_a.snapshots(tags=[f"run={run_id or self.run_id}"])]

    def running(self) -> bool:
        """True while the run is still STARTED in Dagster's storage and its process lives."""
        run = self.instance.get_run_by_id(self.run_id)
        return self.proc.poll() is None and run is not None and not run.is_finished

    def release(self) -> subprocess.CompletedProcess[str]:
        """Commit the lock, wait for the run to end and return how `axe backup` ended."""
        if self.locker.poll() is None:
            assert self.locker.stdin
            self.locker.stdin.write("COMMIT;\n")
            self.locker.stdin.close()
            self.locker.wait(60)
        out, err = self.proc.communicate(timeout=300)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    def close(self) -> None:
        """Clean up whatever is left: the lock, the run, the database."""
        if self.proc.poll() is None or self.locker.poll() is None:
            try:
                self.release()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.server.psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE);')


@contextmanager
def tier_a_held_mid_dump(root: Path, data: dict[str, Any], server_a) -> Iterator[HeldRun]:
    """Yield a HeldRun on the tier-A repository under `root` (customers.yaml data `data`),
    recorded in $DAGSTER_HOME; everything it started is ended on the way out."""
    held = HeldRun(root, data, server_a, dg.DagsterInstance.get())
    try:
        yield held
    finally:
        held.close()


def test_a_set_still_being_written_by_tier_a_is_not_copied(site: Site, dagster_home):
    """A real tier-A run is in progress (held mid-dump by a table lock) and has written part
    of tonight's set: tier B copies the last finished set, never the half-written one, and
    says which set it left out; once the tier-A run has ended, the new set is copied whole."""
    config = site.config()
    instance = dg.DagsterInstance.get()
    # The scheduled job is queued behind tier-A runs on the same repository...
    job = next(j for j in tier_b_definitions(config, "axe").jobs if j.name == "axe_tier_b")
    assert job.tags["axe/repository"] == repository_tags(
        config.customer("axe"))["axe/repository"]
    # ...and its op shares tier A's pool (one op at a time per tier-A repository).
    asset = build_tier_b_asset(config, "axe", "realchoice", retry=False)
    assert asset.op.pool == repository_pool(config.customer("axe"))

    data = _customers(site.root, site.server_a, site.server_b, ring=site.ring, peer=site.peer)
    with tier_a_held_mid_dump(site.root, data, site.server_a) as held:
        half = held.written()
        logs: list[str] = []
        # What the asset does, with the same question to Dagster's run storage.
        result = push_set(config, "axe", "realchoice", log=logs.append,
                          in_progress=tier_a_running(instance))
        assert held.running(), "tier A finished while tier B ran: the test proved nothing"
        assert result.run_id == "run-template"
        at_peer = {s.original for s in site.peer_repo().snapshots()}
        assert half and not set(half) & at_peer
        assert any("left out" in m and "still writing" in m and held.run_id[:8] in m
                   for m in logs), logs

        done = held.release()  # the migration commits; tier A's run ends
        assert done.returncode == 0, done.stderr
    result = push_set(config, "axe", "realchoice", in_progress=tier_a_running(instance))
    assert result.run_id == held.run_id
    assert set(held.written()) <= {s.original for s in site.peer_repo().snapshots()}
    assert set(half) < set(held.written())  # the set was only part-written when held


def test_secrets_and_options_stay_out_of_argv(site: Site):
    config = site.config()
    pl = link(config, "axe", "realchoice")
    repo = pl.repository("localhost")
    argv = " ".join([*repo.extra_args, repo.location])
    assert os.environ[RING_PASSWORD_ENV] not in argv
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=3",
                   "ServerAliveInterval=1", f"UserKnownHostsFile={site.sshd.known_hosts}"):
        assert option in argv


# --- faults: the peer's ssh --------------------------------------------------------------------


def test_peer_sshd_down_fails_with_host_exit_status_and_next_step(site: Site):
    config = site.config()
    before = site.tier_a_state()
    site.sshd.stop()
    with pytest.raises(RingError) as err:
        push_set(config, "axe", "realchoice")
    text = str(err.value)
    assert err.value.retryable and err.value.ssh_exit == 255
    assert "localhost" in text and "127.0.0.1" in text and "ssh exit 255" in text
    assert "connection refused" in text.lower()
    assert "local tier unaffected" in text and "axe backup --ring" in text
    assert site.tier_a_state() == before


def test_peer_refusing_our_key_is_retried_as_the_readme_says(site: Site, dagster_home):
    """README: a peer that refuses the key is retried `retries` times (its operator may be
    adding the key right now), with the host, ssh's status and what to ask the peer for."""
    site.ring["retry_delay_s"] = 0.1
    config = site.config()
    (site.sshd.root / "authorized_keys").write_text("")
    with pytest.raises(RingError) as err:
        push_set(config, "axe", "realchoice")
    text = str(err.value)
    assert text.startswith(f"tier B: realchoice at localhost refused our key "
                           f"{site.sshd.user_key} (ssh exit 255, ")
    assert "Permission denied (publickey" in text and "authorized_keys" in text
    assert err.value.retryable and err.value.ssh_exit == 255 and err.value.host == "localhost"
    assert not site.peer_dir.exists()
    result = dg.materialize([build_tier_b_asset(config, "axe", "realchoice")],
                            instance=dg.DagsterInstance.get(), raise_on_error=False)
    assert not result.success and _retries(result) == 2  # tiers.ring.retries


def test_changed_host_key_is_refused_without_fallback(site: Site):
    config = site.config()
    site.sshd.rotate_host_key()
    with pytest.raises(RingError) as err:
        push_set(config, "axe", "realchoice")
    text = str(err.value)
    assert "does not match the pinned key" in text and str(site.sshd.known_hosts) in text
    assert "localhost" in text and "ssh exit 255" in text and "not retried" in text
    assert err.value.ssh_exit == 255
    assert not err.value.retryable  # retrying cannot make an unknown key trustworthy
    assert err.value.host == "localhost"  # did not fall back to ssh_ip either
    assert not site.peer_dir.exists()


# --- faults: the peer's repository -------------------------------------------------------------


def test_corrupted_peer_repository_is_clear_and_not_retried(site: Site):
    config = site.config()
    push_set(config, "axe", "realchoice")
    (site.peer_dir / "config").write_bytes(os.urandom(200))
    with pytest.raises(RingError) as err:
        push_set(config, "axe", "realchoice")
    assert not err.value.retryable
    assert "damaged" in str(err.value) and "restic check" in str(err.value)
    # ...and it was not re-initialised over the damaged one.
    assert (site.peer_dir / "config").stat().st_size == 200


def _hang_the_link_mid_copy(site: Site, config: SiteModel) -> tuple[list[BaseException], float]:
    """Pushes in a thread and freezes the peer's sshd (SIGSTOP) as soon as the copy has
    written its first pack file there; returns what the push raised and how many seconds
    after the freeze it ended. The peer is stopped afterwards (its stuck sessions die with
    it), so a test can start it fresh."""
    errors: list[BaseException] = []

    def push() -> None:
        try:
            push_set(config, "axe", "realchoice")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=push)
    worker.start()
    data = site.peer_dir / "data"
    deadline = time.monotonic() + 120
    while worker.is_alive() and not (data.is_dir() and any(
            f.is_file() for d in data.iterdir() for f in d.iterdir())):
        assert time.monotonic() < deadline, "the copy never started uploading"
        time.sleep(0.005)
    assert worker.is_alive(), "the copy finished before the link could be dropped"
    site.sshd.pause()
    dropped = time.monotonic()
    worker.join(120)
    gone_after = time.monotonic() - dropped
    site.sshd.stop()
    assert not worker.is_alive(), "the push still hangs 120 s after the link died"
    return errors, gone_after


def test_link_dropping_mid_copy_fails_fast_and_next_run_clears_the_stale_lock(site: Site):
    config = site.config()
    before = site.tier_a_state()
    locks = site.peer_dir / "locks"
    errors, gone_after = _hang_the_link_mid_copy(site, config)
    assert errors and isinstance(errors[0], RingError), errors
    assert errors[0].retryable and errors[0].ssh_exit == 255
    assert "the link to realchoice at localhost dropped: no answer for 2 s" in str(errors[0])
    # Bounded: ssh's keepalives (1 s x 2) end it in seconds, not restic's ~22 minutes; 60 s
    # is generous (the helper's join gives up at 120 s).
    assert gone_after < 60, f"link drop took {gone_after:.1f} s to detect"
    print(f"link drop detected after {gone_after:.1f} s")  # recorded for the report
    assert site.tier_a_state() == before

    # restic could not remove its lock over the dead link: it is left at the peer.
    stale = {p.name for p in locks.iterdir()}
    assert stale
    site.sshd.start()
    # A live lock (a restic process that still runs on the peer's repository) is not stale
    # and must survive the next run.
    repo = site.peer_repo()
    live = subprocess.Popen([repo.binary, "backup", "--stdin-from-command", "--tag",
                             "customer=other", "--", "sleep", "60"], env=repo.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def lock_files() -> set[str]:
            # restic's local backend writes `<id>-tmp-<n>` and then renames it to `<id>`.
            return {p.name for p in locks.iterdir() if "-tmp-" not in p.name}

        deadline = time.monotonic() + 30
        while not lock_files() - stale:
            assert time.monotonic() < deadline, "the live restic never took its lock"
            time.sleep(0.02)
        live_lock = lock_files() - stale
        result = push_set(config, "axe", "realchoice")
        assert result.cleared_locks >= 1
        assert {p.name for p in locks.iterdir()} == live_lock
    finally:
        live.kill()
        live.wait()
    assert sorted(result.copied + result.already_present) == sorted(_set_ids(config))


def test_a_hung_link_with_the_default_keepalives_fails_in_about_30_s_in_axes_words(site: Site):
    """README: with the defaults (alive_interval_s 10 x alive_count_max 3) "a dead link fails
    in ~30 s". The peer stops answering mid-copy (sshd and its sessions SIGSTOPped: the TCP
    connection stays open, nothing answers): the push fails after 30 s of silence plus restic's
    teardown, under 38 s (ssh given CountMax=3 took 40 s; 41.5 s was seen), and the operator
    reads axe's words (host, how long nothing answered, ssh's status, the next step), not
    restic's ("context canceled", "Remove(<lock>) failed")."""
    for key in ("connect_timeout_s", "alive_interval_s", "alive_count_max"):
        site.ring.pop(key)
    config = site.config()
    settings = ring_settings(config.customer("axe"))
    assert (settings.alive_interval_s, settings.alive_count_max) == (10, 3)
    errors, gone_after = _hang_the_link_mid_copy(site, config)
    print(f"hung link detected after {gone_after:.1f} s with the default keepalives")
    assert 25 < gone_after < 38, f"a hung link took {gone_after:.1f} s to fail (README: ~30 s)"
    assert errors and isinstance(errors[0], RingError), errors
    err = errors[0]
    assert err.retryable and err.ssh_exit == 255 and err.host == "localhost"
    text = str(err)
    assert text.startswith("tier B: the link to realchoice at localhost dropped: no answer for "
                           "30 s (ssh's keepalive gave up) (ssh exit 255)"), text
    assert "local tier unaffected" in text and "axe backup --ring" in text
    for restic_words in ("context canceled", "Remove(", "ssh command exited"):
        assert restic_words not in text


def test_a_failure_axe_does_not_know_is_retried_with_restics_words(site: Site):
    """The peer's disk is full (its receive folder on a 3 MiB tmpfs; the set holds 6 MiB of
    random data): restic exits 1 with sftp's generic "Failure", which is neither a link fault
    (ssh stayed up, exit 0) nor damage (the repository still opens). Such a failure is
    retried, never called a damaged repository; restic's words are in the message."""
    config = site.config()
    require_tmpfs(site.peer_dir.parent, "size=3m")
    try:
        with pytest.raises(RingError) as err:
            push_set(config, "axe", "realchoice")
        text = str(err.value)
        assert err.value.retryable and err.value.ssh_exit is None, text
        assert text.startswith("tier B: realchoice at localhost: tier B repository of axe at "
                               "realchoice"), text
        assert "not a link or repository fault (ssh stayed up, the link answers, the " \
               "repository opens), so it is retried" in text
        assert "damaged" not in text
        assert (site.peer_dir / "config").is_file()  # made before the disk filled up
    finally:
        umount_all(site.peer_dir.parent)


# --- Dagster layer ----------------------------------------------------------------------------


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


def test_unreachable_peer_is_retried_by_policy_not_forever(site: Site, dagster_home):
    site.ring["retry_delay_s"] = 0.2
    config = site.config()
    site.sshd.stop()
    asset = build_tier_b_asset(config, "axe", "realchoice")
    result = dg.materialize([asset], instance=dg.DagsterInstance.get(), raise_on_error=False)
    assert not result.success
    assert _retries(result) == 2  # tiers.ring.retries
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    # Each retry carries the reason (Dagster wraps our Failure as the error's cause).
    assert all("cannot reach realchoice" in e.event_specific_data.error.cause.message
               for e in retried)
    # Dagster's exponential backoff waits (2^n - 1) x delay: 1x, then 3x (README: 300 s, 900 s).
    assert [e.event_specific_data.seconds_to_wait for e in retried] == pytest.approx([0.2, 0.6])
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert failure.step_failure_data.user_failure_data.metadata["ssh_exit"].value == 255
    checks = result.get_asset_check_evaluations()
    assert checks and not checks[0].passed and checks[0].check_name == "reachable"


def test_wrong_password_is_not_retried(site: Site, dagster_home, monkeypatch):
    config = site.config()
    push_set(config, "axe", "realchoice")
    monkeypatch.setenv(RING_PASSWORD_ENV, "wrong")
    asset = build_tier_b_asset(config, "axe", "realchoice")
    result = dg.materialize([asset], instance=dg.DagsterInstance.get(), raise_on_error=False)
    assert not result.success
    assert _retries(result) == 0  # no retry storm
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    message = failure.step_failure_data.error.message
    assert "wrong password" in message and RING_PASSWORD_ENV in message
    assert "not retried" in message and "wrong\n" not in message


def test_cli_ring_records_a_dagster_run_with_metadata(site: Site, dagster_home, capsys):
    config = site.config()
    defs = tier_b_definitions(config, "axe")
    assets, schedules = list(defs.assets), list(defs.schedules)
    assert [a.key for a in assets] == [tier_b_key("axe", "realchoice")]
    assert schedules[0].cron_schedule == "30 3 * * *"
    assert schedules[0].execution_timezone == "Asia/Seoul"
    code = cli.main(["--config", str(site.root / "customers.yaml"), "backup", "--ring",
                     "--plain"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "realchoice" in out.out and "check axe/tier_b/realchoice:set_present: ok" in out.out
    # The CLI's run is a Dagster run: the asset page shows it with its metadata.
    instance = dg.DagsterInstance.get()
    event = instance.get_latest_materialization_event(tier_b_key("axe", "realchoice"))
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert meta["snapshots_copied"] == len(_set_ids(config))
    assert meta["snapshots_already_present"] == 0
    assert meta["bytes_copied"] > 6 << 20 and meta["peer_free_gib"] > 0
    assert meta["host"] == "localhost" and meta["peer_restic_version"] == RESTIC_VERSION
    assert os.environ[RING_PASSWORD_ENV] not in json.dumps({k: str(v) for k, v in meta.items()})
    assert cli.main(["--config", str(site.root / "customers.yaml"), "doctor"]) == 0
    out = capsys.readouterr().out
    assert f"ok   ring peer realchoice reachable at localhost: restic {RESTIC_VERSION}" in out
    assert "warn inbound from realchoice: nothing in" in out

    site.sshd.stop()
    code = cli.main(["--config", str(site.root / "customers.yaml"), "backup", "--ring",
                     "--plain"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach realchoice" in err and "ssh exit 255" in err
    assert cli.main(["--config", str(site.root / "customers.yaml"), "doctor"]) == 1
    assert "FAIL tier B: cannot reach realchoice" in capsys.readouterr().out


# --- inbound: the peer's pushes to us ----------------------------------------------------------


def _peer_pushes(into: Path, when: datetime) -> None:
    """What the peer's push leaves in receive_dir_at_self: a restic repository (with a
    password we do not know) holding a snapshot."""
    env = {**os.environ, "RESTIC_PASSWORD": "the-peers-own-password"}
    env.pop("RESTIC_REPOSITORY", None)
    subprocess.run(["restic", "-r", str(into), "init"], env=env, check=True,
                   capture_output=True)
    src = into.parent / "peer-data.txt"
    src.write_text("their data\n")
    subprocess.run(["restic", "-r", str(into), "backup", str(src)], env=env, check=True,
                   capture_output=True)
    stamp = when.timestamp()
    for p in (into / "snapshots").iterdir():
        os.utime(p, (stamp, stamp))


def test_inbound_sensor_reports_pushes_and_when_they_stop(site: Site, dagster_home):
    config = site.config()
    block = config.peers()["realchoice"]
    inbox = block.receive_dir_at_self
    now = datetime.now(UTC)

    events, cursor = inbound_events("realchoice", block, 26, None, now)
    assert [type(e).__name__ for e in events] == ["AssetCheckEvaluation"]
    assert not events[0].passed and "never pushed" in events[0].description

    inbox.parent.mkdir(parents=True, exist_ok=True)
    _peer_pushes(inbox, now - timedelta(hours=2))
    events, cursor = inbound_events("realchoice", block, 26, cursor, now)
    assert [type(e).__name__ for e in events] == ["AssetMaterialization",
                                                   "AssetCheckEvaluation"]
    assert events[0].metadata["snapshot_files"].value == 1
    assert events[1].passed

    events, cursor = inbound_events("realchoice", block, 26, cursor, now)
    assert events == []  # nothing new, nothing changed: no event flood

    later = now + timedelta(hours=30)  # the peer stops pushing
    events, cursor = inbound_events("realchoice", block, 26, cursor, later)
    assert len(events) == 1 and not events[0].passed
    assert "stopped" in events[0].description

    state = inbound_state(block)
    assert state.snapshot_files == 1 and state.total_bytes > 0

    spec = inbound_spec("realchoice", block, 26)
    sensor = build_inbound_sensor("realchoice", block, 26)
    assert spec.key == inbound_key("realchoice") and spec.freshness_policy is not None
    instance = dg.DagsterInstance.get()
    result = sensor(dg.build_sensor_context(instance=instance))
    # The push is recorded in the instance, dated at the push (not in the tick's events).
    assert not any(isinstance(e, dg.AssetMaterialization) for e in result.asset_events)
    recorded = instance.get_latest_materialization_event(inbound_key("realchoice"))
    assert recorded.timestamp == pytest.approx(state.newest.timestamp(), abs=1)
    assert "recorded a push from realchoice" in result.skip_reason.skip_message


def _peer_pushes_again(into: Path, when: datetime) -> str:
    """One more push by the peer into its repository; the new snapshot file gets `when`.
    Returns the new snapshot file's name."""
    env = {**os.environ, "RESTIC_PASSWORD": "the-peers-own-password"}
    env.pop("RESTIC_REPOSITORY", None)
    before = {p.name for p in (into / "snapshots").iterdir()}
    src = into.parent / "peer-data.txt"
    src.write_text(f"their data at {when}\n")
    subprocess.run(["restic", "-r", str(into), "backup", str(src)], env=env, check=True,
                   capture_output=True)
    [new] = [p for p in (into / "snapshots").iterdir() if p.name not in before]
    os.utime(new, (when.timestamp(), when.timestamp()))
    return new.name


def test_inbound_counts_from_the_push_time_and_ignores_a_peer_prune(site: Site):
    config = site.config()
    block = config.peers()["realchoice"]
    inbox = block.receive_dir_at_self
    inbox.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    # First look after the sensor was off for two days: the push it finds is 40 h old. It is
    # recorded as of the push (dagster/last_updated_timestamp, and the sensor dates the
    # materialization so), so it cannot make the asset fresh.
    _peer_pushes(inbox, now - timedelta(hours=40))
    events, cursor = inbound_events("realchoice", block, 26, None, now)
    assert [type(e).__name__ for e in events] == ["AssetMaterialization", "AssetCheckEvaluation"]
    assert not events[1].passed
    assert events[0].metadata["push_age_hours_when_seen"].value == pytest.approx(40, abs=0.1)
    assert events[0].metadata["dagster/last_updated_timestamp"].value == pytest.approx(
        (now - timedelta(hours=40)).timestamp(), abs=1)

    # A new push, 1 h old when seen: a materialization carrying the push's own time.
    pushed_at = now - timedelta(hours=1)
    newest = _peer_pushes_again(inbox, pushed_at)
    events, cursor = inbound_events("realchoice", block, 26, cursor, now)
    assert [type(e).__name__ for e in events] == ["AssetMaterialization",
                                                   "AssetCheckEvaluation"]
    assert events[0].metadata["dagster/last_updated_timestamp"].value == pytest.approx(
        pushed_at.timestamp(), abs=1)
    shown = datetime.fromisoformat(events[0].metadata["push_time"].value)
    assert abs((shown - pushed_at).total_seconds()) < 1 and shown.utcoffset() == KST_OFFSET
    assert events[1].passed

    # The peer forgets its newest snapshot (a prune): the newest file gets older. That is not
    # a push: no materialization, no observation.
    (inbox / "snapshots" / newest).unlink()
    events, cursor = inbound_events("realchoice", block, 26, cursor, now)
    assert not [e for e in events if not isinstance(e, dg.AssetCheckEvaluation)]
    assert len(events) == 1 and not events[0].passed  # what is left is 40 h old
    # ...and a later real push is still seen as one.
    _peer_pushes_again(inbox, now - timedelta(minutes=5))
    events, cursor = inbound_events("realchoice", block, 26, cursor, now)
    assert type(events[0]).__name__ == "AssetMaterialization" and events[1].passed
