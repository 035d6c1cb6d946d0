"""Tier C with real folders as volumes and, as root, real tmpfs mounts; the real restic binary
and a real tier-A set (the session template from test_tier_b)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml

from axe_pipelines import cli
from axe_pipelines.backup import local_restic
from axe_pipelines.checks.tier_b import tier_a_running
from axe_pipelines.checks.tier_c import volumes_current_result
from axe_pipelines.cold import (
    MARKER,
    ColdError,
    find_volumes,
    sync_volume,
    volume_at,
    volume_lock,
)
from axe_pipelines.config import Site as SiteModel
from axe_pipelines.config import load_config
from axe_pipelines.definitions import tier_c_definitions
from axe_pipelines.names import ALERT_SENSOR, RUN_FAILURE_SENSOR, tier_c_key, tier_c_op
from axe_pipelines.restic import Repository, Restic
from axe_pipelines.rotation import expected_volume, first_turn_ends
from axe_pipelines.secrets import EnvSource
from axe_pipelines.sets import list_sets
from axe_pipelines.tiers import open_tier
from tests.e2e.test_tier_b import (  # noqa: F401 - tier_a_template: the shared fixture
    _customers,
    tier_a_held_mid_dump,
    tier_a_template,
)
from tests.mounts import REFUSED, mount_tmpfs, require_tmpfs, umount, umount_all

COLD_PASSWORD_ENV = "AXE_TEST_COLD_PASSWORD"


class Site:
    def __init__(self, root: Path, template: Path, server_a, server_b):
        self.root = root
        shutil.copytree(template / "repo", root / "repo")
        shutil.copytree(template / "files", root / "files")
        self.vols = root / "Volumes"
        self.vols.mkdir()
        self.cold: dict[str, Any] = {"password": {"env": COLD_PASSWORD_ENV},
                                     "mount_glob": str(self.vols / "axe-cold-*"),
                                     "accept_plain_folders": True, "timeout_s": 60}
        self.server_a, self.server_b = server_a, server_b

    def config(self, **cold_changes: Any) -> SiteModel:
        self.cold.update(cold_changes)
        data = _customers(self.root, self.server_a, self.server_b, ring=None, peer=None)
        data["axe"]["tiers"]["cold"] = self.cold
        path = self.root / "customers.yaml"
        path.write_text(yaml.safe_dump(data))
        return load_config(path)

    def volume(self, n: int) -> Path:
        path = self.vols / f"axe-cold-{n}"
        path.mkdir()
        return path

    def repo_on(self, path: Path) -> Restic:
        return Restic(Repository(str(path / "restic-repo"), EnvSource(env=COLD_PASSWORD_ENV),
                                 "volume repo (direct)"), timeout=60)

    def tier_a_state(self) -> tuple[list[str], list[str]]:
        repo = self.root / "repo"
        return (sorted(p.name for p in (repo / "snapshots").iterdir()),
                sorted(p.name for p in (repo / "locks").iterdir()))


@pytest.fixture
def site(tmp_path, tier_a_template, server_a, server_b, monkeypatch) -> Site:  # noqa: F811
    monkeypatch.setenv(COLD_PASSWORD_ENV, "cold-" + uuid.uuid4().hex)
    return Site(tmp_path, tier_a_template, server_a, server_b)


def _set_ids(config: SiteModel) -> list[str]:
    return list_sets(local_restic("axe", config.customer("axe")), "axe")[-1].ids


# --- sync ------------------------------------------------------------------------------------


def test_sync_initialises_marks_and_is_idempotent(site: Site):
    config = site.config()
    path = site.volume(2)
    before = site.tier_a_state()
    [volume] = find_volumes(config.customer("axe").tiers.cold)
    first = sync_volume(config, "axe", volume)
    assert first.created_repository
    assert sorted(first.copied) == sorted(_set_ids(config))
    marker = json.loads((path / MARKER).read_text())
    assert marker["number"] == 2 and marker["id"] and marker["created_at"]
    assert "axe" in marker["last_sync"]
    tier_a_cfg = json.loads(local_restic("axe", config.customer("axe")).run(
        ["cat", "config", "--no-lock"], what="config"))
    cold_cfg = json.loads(site.repo_on(path).run(["cat", "config", "--no-lock"], what="c"))
    assert cold_cfg["chunker_polynomial"] == tier_a_cfg["chunker_polynomial"]

    second = sync_volume(config, "axe", volume_at(config.customer("axe").tiers.cold, path))
    assert not second.created_repository and second.copied == []
    assert sorted(second.already_present) == sorted(_set_ids(config))
    assert json.loads((path / MARKER).read_text())["id"] == marker["id"]
    assert not list(path.glob(".axe-init-*"))
    assert site.tier_a_state() == before

    # Restores open the copy by tier name.
    restic = open_tier(config, "axe", "cold")
    assert sorted(s.original for s in list_sets(restic, "axe")[-1].snapshots) == \
        sorted(_set_ids(config))


def test_volume_pulled_mid_copy_fails_cleanly_and_next_mount_finishes(site: Site):
    """The SSD is pulled out for real: the volume is a mount (the SSD's storage, a tmpfs,
    bind-mounted at the mount point, so what was written survives the pull as it does on a
    disk) and `umount -l` detaches it while restic is copying onto it. The sync fails with
    "went away", leaves nothing under the bare mount point, and once the disk is mounted
    again the next sync reuses the repository, clears the stale lock and finishes the copy."""
    config = site.config(accept_plain_folders=False)
    path = site.volume(1)
    cold = config.customer("axe").tiers.cold
    flash = site.root / "ssd-1-flash"
    flash.mkdir()
    require_tmpfs(flash)
    try:
        subprocess.run(["mount", "--bind", str(flash), str(path)], check=True)
        [volume] = find_volumes(cold)
        assert volume.mounted and volume.path == path
        before = site.tier_a_state()
        errors: list[BaseException] = []

        def sync() -> None:
            try:
                sync_volume(config, "axe", volume)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                errors.append(exc)

        worker = threading.Thread(target=sync)
        worker.start()
        # Pulled while `restic copy` holds its lock on the volume: restic is held still for
        # the moment of the pull, so the copy cannot win the race and end first.
        copying = _find_restic(worker, "copy", str(path))
        assert copying, "restic copy was never caught running"
        locks = path / "restic-repo" / "locks"
        while worker.is_alive() and not [p for p in locks.iterdir() if "-tmp-" not in p.name]:
            time.sleep(0.001)
        os.kill(copying, signal.SIGSTOP)
        assert worker.is_alive(), "the copy finished before the volume could be pulled"
        umount(path, lazy=True)  # the SSD is pulled out
        os.kill(copying, signal.SIGCONT)
        assert not os.path.ismount(path)
        worker.join(120)
        assert not worker.is_alive()
        assert errors and isinstance(errors[0], ColdError), errors
        assert str(errors[0]).startswith(f"tier C: cold volume axe-cold-1 (#1) at {path} went "
                                         f"away during the sync"), errors[0]
        assert "nothing on tier A changed" in str(errors[0])
        assert site.tier_a_state() == before
        assert find_volumes(cold) == []  # the bare mount point is no volume...
        assert not any(path.iterdir())  # ...and what restic wrote into it was removed

        subprocess.run(["mount", "--bind", str(flash), str(path)], check=True)  # plugged in
        result = sync_volume(config, "axe", volume_at(cold, path))
        assert not result.created_repository  # the repository made before the pull is reused
        assert sorted(result.copied + result.already_present) == sorted(_set_ids(config))
        assert result.cleared_locks >= 1  # restic could not remove its lock from a pulled disk
        assert not any((path / "restic-repo" / "locks").iterdir())
        check = subprocess.run([site.repo_on(path).binary, "check"],
                               env=site.repo_on(path).env(), capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        umount_all(path)
        umount_all(flash)


def test_a_set_still_being_written_by_tier_a_is_never_copied_to_a_volume(site: Site,
                                                                       dagster_home):
    """README: tier C never copies an unfinished set. A real tier-A run is held mid-dump (a
    table lock) with part of tonight's set written: the sync copies the last finished set and
    says which it left out; once tier A's run has ended, the next sync copies the new set."""
    config = site.config()
    cold = config.customer("axe").tiers.cold
    path = site.volume(1)
    instance = dg.DagsterInstance.get()
    data = _customers(site.root, site.server_a, site.server_b, ring=None, peer=None)
    data["axe"]["tiers"]["cold"] = site.cold
    with tier_a_held_mid_dump(site.root, data, site.server_a) as held:
        half = held.written()
        logs: list[str] = []
        # What the tier-C asset does, with the same question to Dagster's run storage.
        result = sync_volume(config, "axe", volume_at(cold, path), log=logs.append,
                             in_progress=tier_a_running(instance))
        assert held.running(), "tier A finished while tier C ran: the test proved nothing"
        assert result.run_id == "run-template"
        on_volume = {s.original for s in site.repo_on(path).snapshots()}
        assert half and not set(half) & on_volume
        assert any("left out" in m and held.run_id[:8] in m for m in logs), logs
        assert held.release().returncode == 0
    result = sync_volume(config, "axe", volume_at(cold, path),
                         in_progress=tier_a_running(instance))
    assert result.run_id == held.run_id and set(half) < set(held.written())
    assert set(held.written()) <= {s.original for s in site.repo_on(path).snapshots()}


def test_what_restic_wrote_after_the_volume_went_away_is_removed(site: Site):
    """restic's local backend re-creates missing folders when it saves, so a write racing the
    pull leaves `axe-cold-1/restic-repo/data/..` on the disk underneath. That is debris, never
    a volume: it is removed; a folder holding a marker or a repository is never touched."""
    from axe_pipelines.cold import _dir_id, _remove_debris

    config = site.config()
    cold = config.customer("axe").tiers.cold
    path = site.volume(1)
    volume = volume_at(cold, path)
    start = _dir_id(path)
    path.rename(path.with_name("pulled-out"))
    (path / "restic-repo" / "data" / "ab").mkdir(parents=True)
    (path / "restic-repo" / "data" / "ab" / "ab12").write_bytes(b"pack")
    assert "removed 1 file(s)" in _remove_debris(volume, start)
    assert not path.exists() and find_volumes(cold) == []

    (path / "restic-repo").mkdir(parents=True)
    (path / "restic-repo" / "config").write_text("x")  # a repository: not debris
    assert _remove_debris(volume, start) == "" and (path / "restic-repo" / "config").exists()
    assert _remove_debris(volume, _dir_id(path)) == ""  # the folder the sync started on


def test_a_folder_that_is_not_a_repository_is_never_written(site: Site):
    config = site.config()
    path = site.volume(1)
    (path / "restic-repo").mkdir()
    (path / "restic-repo" / "keys").mkdir()  # what a cut-short `restic init` leaves
    (path / ".axe-init-deadbeef").mkdir()  # a temporary init folder from a pulled disk
    with pytest.raises(ColdError) as err:
        sync_volume(config, "axe", volume_at(config.customer("axe").tiers.cold, path))
    assert "not a restic repository" in str(err.value) and "Move it away" in str(err.value)
    assert sorted(p.name for p in (path / "restic-repo").iterdir()) == ["keys"]
    assert not (path / MARKER).exists()
    assert not (path / ".axe-init-deadbeef").exists()


def test_init_cut_short_on_a_real_mount_leaves_nothing_that_looks_valid(site: Site):
    config = site.config(accept_plain_folders=False)
    path = site.volume(3)
    # Too few inodes for restic's 256 data folders: init fails part way, for real.
    if not mount_tmpfs(path, "size=8m,nr_inodes=64"):
        pytest.skip(REFUSED)
    try:
        with pytest.raises(ColdError) as err:
            sync_volume(config, "axe", volume_at(config.customer("axe").tiers.cold, path))
        # Which volume, what failed (restic's init, out of inodes: ENOSPC) and that tier A is
        # untouched; not just any ColdError.
        assert str(err.value).startswith(f"tier C: sync of cold volume axe-cold-3 (#3) at {path} "
                                         f"failed: ")
        assert "creating the repository failed: no space left on device" in str(err.value)
        assert "nothing on tier A changed" in str(err.value)
        assert not (path / "restic-repo").exists()
        assert not list(path.glob(".axe-init-*"))
    finally:
        umount(path)


def test_wrong_cold_password_is_clear(site: Site, monkeypatch):
    config = site.config()
    path = site.volume(1)
    cold = config.customer("axe").tiers.cold
    sync_volume(config, "axe", volume_at(cold, path))
    monkeypatch.setenv(COLD_PASSWORD_ENV, "paper-note-misread")
    with pytest.raises(ColdError) as err:
        sync_volume(config, "axe", volume_at(cold, path))
    assert "wrong password" in str(err.value) and COLD_PASSWORD_ENV in str(err.value)
    assert "paper-note-misread" not in str(err.value)


def test_one_sync_per_volume_at_a_time(site: Site):
    config = site.config(timeout_s=2)
    path = site.volume(1)
    volume = volume_at(config.customer("axe").tiers.cold, path)
    with volume_lock(volume, 1):  # another sync holds this volume
        with pytest.raises(ColdError) as err:
            sync_volume(config, "axe", volume)
        assert "another sync" in str(err.value)
    assert not (path / "restic-repo").exists()


def test_volume_gone_at_the_final_marker_write_fails_cleanly(site: Site):
    """The copy is done but the identity marker cannot be written at the very end (here a
    folder sits where the marker's temporary file goes, as a disk pulled at that moment would
    refuse the write): a clean ColdError, not a raw OSError, and no sync time recorded."""
    config = site.config()
    path = site.volume(1)
    cold = config.customer("axe").tiers.cold
    sync_volume(config, "axe", volume_at(cold, path))
    recorded = json.loads((path / MARKER).read_text())["last_sync"]["axe"]
    (path / f".{MARKER}.tmp").mkdir()
    with pytest.raises(ColdError) as err:
        sync_volume(config, "axe", volume_at(cold, path))
    assert "sync of cold volume axe-cold-1" in str(err.value)
    assert "nothing on tier A changed" in str(err.value)
    assert json.loads((path / MARKER).read_text())["last_sync"]["axe"] == recorded


def test_a_hanging_restic_call_is_stopped_and_reported(site: Site):
    """`restic init` of a new volume hangs for real (frozen with SIGSTOP as soon as it starts,
    as a process stuck on a vanished USB disk would be): it is stopped after timeout_s and the
    sync fails with a clear message instead of hanging, leaving nothing that looks valid."""
    config = site.config(timeout_s=2)
    path = site.volume(1)
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            sync_volume(config, "axe", volume_at(config.customer("axe").tiers.cold, path))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=sync)
    started = time.monotonic()
    worker.start()
    frozen = _find_restic(worker, "init", str(path))
    if frozen:
        os.kill(frozen, signal.SIGSTOP)
    worker.join(60)
    elapsed = time.monotonic() - started
    assert not worker.is_alive()
    assert frozen, "restic init was never caught running"
    assert errors and isinstance(errors[0], ColdError), errors
    assert "creating the repository did not finish within 2 s" in str(errors[0])
    assert elapsed < 20, f"took {elapsed:.1f} s"  # bounded by timeout_s, not by the hang
    with pytest.raises(ProcessLookupError):
        os.kill(frozen, 0)  # the frozen restic was killed, not left behind
    assert not (path / "restic-repo").exists() and not list(path.glob(".axe-init-*"))


def _find_restic(worker: threading.Thread, command: str, under: str) -> int | None:
    """Returns the pid of the first `restic <command>` whose repository (RESTIC_REPOSITORY in
    its environment) lies under `under`, polled from /proc while `worker` runs (other tests'
    restic processes are never matched), or None when none appeared."""
    while worker.is_alive():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if not (argv[0].endswith(b"restic") and command.encode() in argv):
                    continue
                env = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(e.startswith(b"RESTIC_REPOSITORY=" + under.encode()) for e in env):
                return int(entry.name)
    return None


def test_one_failing_volume_does_not_skip_the_others(site: Site, dagster_home):
    config = site.config()
    broken = site.volume(1)
    (broken / "restic-repo").mkdir()
    (broken / "restic-repo" / "not-restic.txt").write_text("someone else's files\n")
    good = site.volume(2)
    defs = tier_c_definitions(config, "axe")
    assets, checks = list(defs.assets), list(defs.asset_checks)
    run = dg.materialize([*assets, *checks], instance=dg.DagsterInstance.get(),
                         selection=[tier_c_key("axe")], raise_on_error=False)
    assert not run.success  # the run says one volume failed...
    failure = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "axe-cold-1" in failure.step_failure_data.error.message
    assert "not a restic repository" in failure.step_failure_data.error.message
    # ...and the other volume was synced all the same.
    meta = run.get_asset_materialization_events()[0].materialization.metadata
    assert meta["volumes"].value == ["axe-cold-2"]
    assert {s.original for s in site.repo_on(good).snapshots()} == set(_set_ids(config))


def test_rotation_gives_every_volume_its_turn_within_the_overdue_limit(site: Site):
    """Syncing each quarter only the volume the rotation expects keeps every volume inside
    volumes_current's limit, year after year (quarters count on across years)."""
    for volumes in (1, 2, 3, 4, 5):
        cold = site.config(volumes=volumes).customer("axe").tiers.cold
        assert cold.overdue_days == volumes * 92 + 14
        zone = ZoneInfo("Asia/Seoul")
        last: dict[int, datetime] = {}
        gaps = []
        for year in range(2026, 2032):
            for month in (1, 4, 7, 10):
                for day in (1, 28):  # early in one quarter, late in another
                    when = datetime(year, month, day, 12, tzinfo=zone)
                    n = expected_volume(when, volumes, cold.rotation_start_year)
                    if year > 2027:  # every volume has had its first turn
                        # Evaluated just before the sync: the longest any volume has waited.
                        check = volumes_current_result(tier_c_key("axe"), last, volumes,
                                                       cold.overdue_days, now=when)
                        assert check.passed, (volumes, when, check.description)
                    if n in last:
                        gaps.append((when - last[n]).days)
                    last[n] = when
        assert max(gaps) <= cold.rotation_period_days < cold.overdue_days
    assert [expected_volume(datetime(2026, m, 1), 3) for m in (1, 4, 7, 10)] == [1, 2, 3, 1]
    assert [expected_volume(datetime(2027, m, 1), 3) for m in (1, 4, 7, 10)] == [2, 3, 1, 2]


# --- the mount sensor -------------------------------------------------------------------------


def _tick(sensor, instance, cursor):
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    return result.run_requests, result.cursor


def test_sensor_once_per_mount_across_ticks(site: Site, dagster_home):
    config = site.config()
    sensors = list(tier_c_definitions(config, "axe").sensors)
    sensor = sensors[0]
    instance = dg.DagsterInstance.get()

    requests, cursor = _tick(sensor, instance, None)
    assert requests == []
    path = site.volume(1)  # mounted
    before_mount = cursor
    requests, cursor = _tick(sensor, instance, cursor)
    assert len(requests) == 1
    first = requests[0]
    assert first.run_config["ops"][tier_c_op("axe")]["config"]["volume"] == str(path)
    # The run key names the volume and this mount, nothing else: the same tick evaluated
    # again (a daemon restart) asks for the same run, which Dagster starts only once.
    again, _ = _tick(sensor, instance, before_mount)
    assert [r.run_key for r in again] == [first.run_key]
    for _ in range(3):  # stays mounted: no new sync every tick
        requests, cursor = _tick(sensor, instance, cursor)
        assert requests == []
    away = path.with_name("drawer")
    path.rename(away)  # unmounted
    requests, cursor = _tick(sensor, instance, cursor)
    assert requests == []
    away.rename(path)  # mounted again later: same folder, same inode, a new mount generation
    before_remount = cursor
    requests, cursor = _tick(sensor, instance, cursor)
    assert len(requests) == 1 and requests[0].run_key != first.run_key
    second = requests[0].run_key
    again, _ = _tick(sensor, instance, before_remount)
    assert [r.run_key for r in again] == [second]
    requests, cursor = _tick(sensor, instance, cursor)
    assert requests == []


def test_sensor_and_sync_on_a_real_mount(site: Site, dagster_home):
    config = site.config(accept_plain_folders=False)
    path = site.volume(1)
    sensors = list(tier_c_definitions(config, "axe").sensors)
    instance = dg.DagsterInstance.get()
    requests, cursor = _tick(sensors[0], instance, None)
    assert requests == []  # an empty mount-point folder is not a volume
    if not mount_tmpfs(path):
        pytest.skip(REFUSED)
    try:
        before_mount = cursor
        requests, cursor = _tick(sensors[0], instance, cursor)
        assert len(requests) == 1
        first = requests[0].run_key
        assert [r.run_key for r in _tick(sensors[0], instance, before_mount)[0]] == [first]
        requests, cursor = _tick(sensors[0], instance, cursor)
        assert requests == []
        defs = tier_c_definitions(config, "axe")
        assets, checks = list(defs.assets), list(defs.asset_checks)
        run = dg.materialize([*assets, *checks], instance=instance,
                             selection=[tier_c_key("axe")],
                             run_config={"ops": {tier_c_op("axe"): {"config": {
                                 "volume": str(path)}}}}, raise_on_error=False)
        assert run.success
        assert (path / "restic-repo" / "config").is_file()
        umount(path)
        requests, cursor = _tick(sensors[0], instance, cursor)
        assert requests == []
        assert mount_tmpfs(path)
        before_remount = cursor
        requests, cursor = _tick(sensors[0], instance, cursor)
        assert len(requests) == 1 and requests[0].run_key != first
        second = requests[0].run_key
        assert [r.run_key for r in _tick(sensors[0], instance, before_remount)[0]] == [second]
        requests, cursor = _tick(sensors[0], instance, cursor)
        assert requests == []
    finally:
        while os.path.ismount(path):
            umount(path)


def test_two_volumes_both_sync_with_rotation_and_overdue_checks(site: Site, dagster_home):
    config = site.config()
    # The same zone and start year the asset uses (customers.yaml: Asia/Seoul, 2026).
    expected = expected_volume(datetime.now(ZoneInfo("Asia/Seoul")), 3, 2026)
    other = expected % 3 + 1
    site.volume(expected)
    site.volume(other)
    defs = tier_c_definitions(config, "axe")
    assets, checks = list(defs.assets), list(defs.asset_checks)
    schedules, sensors = list(defs.schedules), list(defs.sensors)
    instance = dg.DagsterInstance.get()
    requests, _ = _tick(sensors[0], instance, None)
    assert len(requests) == 2 and len({r.run_key for r in requests}) == 2
    rotation = {}
    for request in requests:  # the queue (pool) runs them one after the other
        run = dg.materialize([*assets, *checks], instance=instance,
                             selection=[tier_c_key("axe")], run_config=request.run_config,
                             raise_on_error=False)
        assert run.success
        [check] = [c for c in run.get_asset_check_evaluations() if c.check_name == "rotation"]
        rotation[request.tags["axe/volume"]] = check
    assert rotation[f"axe-cold-{expected}"].passed
    warned = rotation[f"axe-cold-{other}"]
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    assert f"expects volume #{expected}" in warned.description
    for n in (expected, other):
        repo = site.repo_on(site.vols / f"axe-cold-{n}")
        assert {s.original for s in repo.snapshots()} == set(_set_ids(config))

    # The third SSD is in a drawer: the daily check says so.
    check_run = dg.materialize([*assets, *checks], instance=instance,
                               selection=dg.AssetSelection.checks(*checks),
                               raise_on_error=False)
    [current] = check_run.get_asset_check_evaluations()
    missing = 6 - expected - other
    assert not current.passed and f"#{missing} never synced" in current.description
    last = current.metadata["last_sync_by_volume"].value
    assert set(last) == {str(expected), str(other)}
    assert schedules[0].execution_timezone == "Asia/Seoul"

    # ...and a volume synced long ago is overdue too.
    now = datetime.now(UTC)
    old = volumes_current_result(tier_c_key("axe"), {1: now, 2: now,
                                                     3: now - timedelta(days=400)}, 3, 290)
    assert not old.passed and "#3 last synced" in old.description


def test_a_volume_whose_quarter_has_not_come_is_not_overdue():
    """A new site (rotation from 2027) with only SSD #1 synced in Q1: #2 and #3 are not yet
    due; once Q2 is over, #2 never having been synced is an ERROR, #3 still waits for Q3."""
    zone = ZoneInfo("Asia/Seoul")
    ends = first_turn_ends(3, 2027, "Asia/Seoul")
    assert ends == {1: datetime(2027, 4, 1, tzinfo=zone), 2: datetime(2027, 7, 1, tzinfo=zone),
                    3: datetime(2027, 10, 1, tzinfo=zone)}
    key = tier_c_key("axe")
    synced = {1: datetime(2027, 1, 5, tzinfo=zone)}
    early = volumes_current_result(key, synced, 3, 290, now=datetime(2027, 2, 1, tzinfo=zone),
                                  first_turn_ends=ends)
    assert early.passed and len(early.metadata["not_yet_due"].value) == 2
    late = volumes_current_result(key, synced, 3, 290, now=datetime(2027, 7, 2, tzinfo=zone),
                                  first_turn_ends=ends)
    assert not late.passed and "#2 never synced" in late.description
    assert "#3" not in late.description and "#1" not in late.description
    # Without the rotation's calendar, never synced is overdue at once.
    assert not volumes_current_result(key, synced, 3, 290,
                                      now=datetime(2027, 2, 1, tzinfo=zone)).passed


def test_cli_cold(site: Site, dagster_home, capsys):
    config = site.config()
    args = ["--config", str(site.root / "customers.yaml"), "backup", "--cold"]
    assert cli.main(args) == 1
    assert "no cold volume is mounted" in capsys.readouterr().err
    site.volume(1)
    # Synced, but volumes #2 and #3 never were: volumes_current is an ERROR check, so the
    # exit status says so (the rotation check is only a WARN).
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert f"{len(_set_ids(config))} copied" in out and "axe-cold-1" in out
    assert "axe/tier_c/cold_volumes:volumes_current: FAILED (overdue: #2 never synced; #3 never " \
           "synced" in out
    site.volume(2)
    site.volume(3)
    cli.main(args)  # the first volume's run still sees #2 and #3 unsynced
    capsys.readouterr()
    assert cli.main(args) == 0, capsys.readouterr().err  # every volume current now
    out = capsys.readouterr().out
    assert "FAILED" not in out and out.count("0 copied") == 3
    assert out.count("axe/tier_c/cold_volumes:rotation: WARN") == 2  # two are not this quarter's


def test_definitions_load_with_tiers_b_and_c(site: Site):
    from axe_pipelines.definitions import build_definitions

    data = _customers(site.root, site.server_a, site.server_b, ring={},
                      peer={"ssh_user": "realchoice", "ssh_fqdn": "peer.invalid",
                            "receive_dir_at_peer": "/srv/peer/axe/",
                            "receive_dir_at_self": str(site.root / "inbound")})
    data["axe"]["tiers"]["cold"] = site.cold
    path = site.root / "customers.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    # Exactly what workspace.yaml loads, tier A and the restore job included.
    defs = build_definitions(config)
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = set(repo.asset_graph.get_all_asset_keys())
    assert {tier_c_key("axe"), dg.AssetKey(["axe", "tier_b", "realchoice"]),
            dg.AssetKey(["peers", "inbound", "from-realchoice"])} <= keys
    # Tier C's mount sensor and tier B's inbound sensor, beside the site's two alert sensors.
    assert {s.name for s in repo.sensor_defs} == {"axe_cold_volumes", "peers_realchoice_inbound",
                                                  RUN_FAILURE_SENSOR, ALERT_SENSOR}
    assert {"axe_tier_b_nightly", "axe_cold_rotation_daily"} <= {
        s.name for s in repo.schedule_defs}


def test_config_sections_reject_unknown_keys_and_need_a_cold_password():
    from axe_pipelines.config import ConfigError, parse_config

    base = {"tiers": {"local": {"repository": "/r", "password": {"env": "X"}}}}
    peer = {"ring_backup": {"ssh_user": "u", "ssh_fqdn": "p.invalid",
                            "receive_dir_at_peer": "/in/", "receive_dir_at_self": "/in"}}
    ok = parse_config({"axe": {**base, "tiers": {**base["tiers"], "ring": {},
                                                "cold": {"password": {"file": "/p"}}}},
                       "realchoice": peer})
    cold = ok.customer("axe").tiers.cold
    assert cold.mount_glob == "/Volumes/axe-cold-*" and cold.volumes == 3
    assert cold.repo_subdir == "restic-repo" and not cold.accept_plain_folders
    assert ok.customer("axe").tiers.ring.schedule == "30 3 * * *"
    with pytest.raises(ConfigError) as err:
        parse_config({"axe": {**base, "tiers": {**base["tiers"],
                                                "cold": {"password": {"env": "C"},
                                                         "mount_glb": "/x"}}}})
    assert "tiers.cold.mount_glb: unknown key" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"axe": {**base, "tiers": {**base["tiers"], "cold": {}}}})
    assert "tiers.cold.password: required field is missing" in str(err.value)
    # The cold password must not be tier A's (the runbook keeps it off the vault).
    with pytest.raises(ConfigError) as err:
        parse_config({"axe": {**base, "tiers": {**base["tiers"],
                                                "cold": {"password": {"env": "X"}}}}})
    assert "axe.tiers: cold.password is the same source as local.password" in str(err.value)
    assert "(environment variable X)" in str(err.value)
    assert "give tiers.cold.password its own source" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"axe": {**base, "tiers": {**base["tiers"],
                                                "ring": {"schedule": "30 3 * *"}}}})
    assert "tiers.ring.schedule" in str(err.value)
