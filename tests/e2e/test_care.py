"""Repository care against the real restic: a history made with `restic backup --time` across
18 months is forgotten and pruned to exactly the planned snapshots; a flipped byte in a pack is
found by the rotating read-data subset; a ring peer's copy is never pruned from here."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from axe_pipelines import care
from axe_pipelines.backup import TAG_TOOL
from axe_pipelines.care import (
    ProtectedRepository,
    RetentionPolicy,
    apply_forget,
    check_plan,
    parse_prune,
    plan_forget,
    refuse_peer_copy,
    rotation_week,
    run_check,
)
from axe_pipelines.config import Site, parse_config
from axe_pipelines.errors import UsageError
from axe_pipelines.restic import Repository, Restic
from axe_pipelines.secrets import FileSource

ZONE = "Asia/Seoul"
KST = ZoneInfo(ZONE)
NOW = datetime(2026, 5, 20, 9, 0, tzinfo=KST)
SET_DAYS = [date(2024, 12, 1), date(2024, 12, 31), date(2025, 3, 31), date(2025, 6, 30),
            date(2025, 9, 30), date(2025, 12, 31), date(2026, 1, 31), date(2026, 2, 28),
            date(2026, 3, 31), date(2026, 4, 30), date(2026, 5, 3), date(2026, 5, 10),
            date(2026, 5, 17), date(2026, 5, 18), date(2026, 5, 19), date(2026, 5, 20)]
ITEMS = [("pgdump", "database", "frame"), ("files", "folder", "files")]


def open_repo(where: Path, password_file: Path) -> Restic:
    """The care tests' client of the repository at `where` (password in `password_file`)."""
    return Restic(Repository(str(where), FileSource(file=password_file), f"repo {where.name}"),
                  timezone=ZONE, timeout=120)


def make_repo(where: Path, password_file: Path) -> Restic:
    if not password_file.exists():
        password_file.write_text("care-test-password\n")
    restic = open_repo(where, password_file)
    restic.init()
    return restic


def back_up_history(restic: Restic, days: list[date]) -> None:
    """One set per day at 03:00 KST with both items; tiny distinct contents, in parallel."""
    def one(day: date, kind: str, key: str, name: str) -> None:
        at = datetime(day.year, day.month, day.day, 3, tzinfo=KST)
        tags = [TAG_TOOL, "customer=axe", f"kind={kind}", f"{key}={name}", f"run=run-{day}"]
        restic.backup_command(["printf", f"{name} as of {day}\n" * 50], filename=f"{name}.dump",
                              tags=tags, at=at)

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda job: one(*job), [(d, *i) for d in days for i in ITEMS]))


def peer_site(receive_dir: Path) -> Site:
    return parse_config({"axe": {}, "realchoice": {"ring_backup": {
        "ssh_user": "realchoice", "ssh_fqdn": "realchoice.invalid",
        "receive_dir_at_peer": "/Users/realchoice/peer-backups/axe/",
        "receive_dir_at_self": str(receive_dir)}}})


def test_forget_and_prune_keep_exactly_the_planned_snapshots(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    restic = make_repo(tmp_path / "repo", tmp_path / "pw")
    back_up_history(restic, SET_DAYS)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("an operator's own backup\n")
    restic.run(["backup", "--tag", "by-hand", str(tmp_path / "mine")], what="a manual backup")

    policy = RetentionPolicy(keep_daily=3, keep_weekly=2, keep_monthly=3, keep_yearly=1)
    plan = plan_forget(restic, "axe", policy, NOW, ZONE)
    kept_days = {d.set_time.astimezone(KST).date() for d in plan.kept if d.set_time}
    # daily 05-20/19/18, weekly W21 and W20 (Sunday 05-17), monthly May, April, March.
    assert kept_days == {date(2026, 5, 20), date(2026, 5, 19), date(2026, 5, 18),
                         date(2026, 5, 17), date(2026, 4, 30), date(2026, 3, 31)}
    assert len(plan.kept) == 6 * 2 + 1 and len(plan.forget_ids) == 10 * 2
    assert all(not (s.kept and s.forgotten) for s in plan.sets())

    monkeypatch.setattr(care.forget, "FORGET_BATCH", 8)  # three `restic forget` calls
    result = apply_forget(restic, plan, site=peer_site(tmp_path / "peer"), prune=True)
    left = {s.id for s in restic.snapshots()}
    assert left == {d.snapshot.id for d in plan.kept}
    assert set(result.forgotten) == set(plan.forget_ids) and result.remaining == 13
    assert result.pruned and result.bytes_freed and result.bytes_freed > 0
    assert result.bytes_remaining and "forgot 20 snapshot(s), 13 remain" in result.line()
    # The plan is a fixed point: planning again forgets nothing.
    assert plan_forget(restic, "axe", policy, NOW, ZONE).forget_ids == []


def _flip_a_byte_in_the_largest_pack(repo_dir: Path) -> str:
    pack = max((p for p in (repo_dir / "data").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    pack.chmod(0o600)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    return pack.name


def test_a_flipped_byte_is_found_by_the_rotating_subset_within_n_weeks(tmp_path: Path):
    restic = make_repo(tmp_path / "repo", tmp_path / "pw")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("a", "b"):
        # Random, so it does not compress: the data packs are the largest files.
        (source / name).write_bytes(os.urandom(200_000))
        restic.run(["backup", str(source)], what="a backup")
    assert run_check(restic).ok

    broken = _flip_a_byte_in_the_largest_pack(tmp_path / "repo")
    structure = run_check(restic)
    # Without reading data, restic checks the index and trees only: the byte goes unseen.
    assert structure.ok and not structure.damaged and structure.read == "structure only"

    n = 3
    weeks = [run_check(restic, check_plan(week, n)) for week in range(n)]
    found = [o for o in weeks if o.damaged]
    assert len(found) == 1 and [o.ok for o in weeks].count(True) == n - 1
    (outcome,) = found
    assert not outcome.ok and outcome.broken_packs == (broken,)
    assert f"restic repair packs {broken}" in outcome.advice
    assert "\n" not in outcome.summary and outcome.summary.startswith("repo repo: restic check "
                                                                      "found")
    assert f"next: restic repair packs {broken}" in outcome.summary
    assert any(broken[:8] in e for e in outcome.errors) and outcome.duration_s > 0
    assert run_check(restic, read_data=True).damaged


def test_the_guard_never_prunes_a_peers_copy_of_its_backups(tmp_path: Path):
    receive = tmp_path / "peer" / "realchoice"
    site = peer_site(receive)
    restic = make_repo(receive / "restic-repo", tmp_path / "pw")
    back_up_history(restic, [date(2026, 5, 19), date(2026, 5, 20)])
    before = {s.id for s in restic.snapshots()}
    plan = plan_forget(restic, "axe", RetentionPolicy(keep_last=1), NOW, ZONE)
    assert len(plan.forget_ids) == 2
    with pytest.raises(ProtectedRepository) as info:
        apply_forget(restic, plan, site=site)
    assert "\n" not in str(info.value) and "ring peer realchoice" in str(info.value)
    assert info.value.exit_code == UsageError.exit_code
    assert {s.id for s in restic.snapshots()} == before
    elsewhere = Restic(Repository(str(tmp_path / "elsewhere"), restic.repo.password, "other"))
    with pytest.raises(UsageError, match="plan was made for repo restic-repo, not other"):
        apply_forget(elsewhere, plan, site=site)
    for location in (receive, f"local:{receive}", receive / ".." / "realchoice"):
        with pytest.raises(ProtectedRepository):
            refuse_peer_copy(location, site)
    refuse_peer_copy(tmp_path / "peer" / "realchoice-other", site)
    refuse_peer_copy(f"sftp:realchoice@realchoice.invalid:{receive}", site)  # not this disk


def test_the_rotation_reads_every_part_once_in_n_weeks():
    mondays = [datetime(2026, 5, 18 + 7 * i, 0, 30, tzinfo=KST) for i in range(2)]
    first, second = (rotation_week(m, ZONE) for m in mondays)
    assert second == first + 1
    # Sunday 23:59 KST is still the week before (Monday 00:30 KST is Sunday in UTC).
    assert rotation_week(datetime(2026, 5, 17, 23, 59, tzinfo=KST), ZONE) == first - 1
    assert sorted(check_plan(first + i, 4) for i in range(4)) == ["1/4", "2/4", "3/4", "4/4"]
    assert check_plan(7, 1) == "1/1"
    with pytest.raises(UsageError):
        check_plan(3, 0)


@pytest.mark.parametrize("subset", ["0/3", "4/3", "half", "1/3; rm"])
def test_a_bad_subset_is_refused_before_restic_runs(tmp_path: Path, subset: str):
    restic = Restic(Repository(str(tmp_path / "none"), FileSource(file=tmp_path / "pw"), "r"))
    with pytest.raises(UsageError, match="read-data subset"):
        run_check(restic, subset)


def test_prune_figures_are_read_from_its_text_output():
    out = ("to repack:             0 blobs / 0 B\nthis removes:          0 blobs / 0 B\n"
           "to delete:             2 blobs / 500 B\ntotal prune:           2 blobs / 500 B\n"
           "remaining:             7 blobs / 587.241 KiB\n")
    assert parse_prune(out) == (500, int(587.241 * 1024))
    assert parse_prune("done\n") == (None, None)
