"""actions/status.py's judging, its JSON and the table cli_status.py prints, on rows made by
hand (no restic, no servers, no Dagster): which states each tier gets and which exit code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from axe_pipelines.actions.backup import RunOutcome, backup_ring
from axe_pipelines.actions.snapshots import SetInfo, on_disk
from axe_pipelines.actions.status import judge_drill, judge_rotation, judge_row
from axe_pipelines.actions.status_model import (
    CustomerStatus,
    Outcome,
    SiteStatus,
    StuckRun,
    TierRow,
)
from axe_pipelines.cli_status import format_status
from axe_pipelines.config import parse_config

KST = ZoneInfo("Asia/Seoul")
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=KST)
LOCAL = {"repository": "/r", "password": {"env": "X"}}


PEER = {"ssh_user": "u", "ssh_fqdn": "p.invalid", "receive_dir_at_peer": "/in/",
        "receive_dir_at_self": "/srv/in"}


def customer(**tiers):
    return parse_config({"axe": {"tiers": {"local": LOCAL, **tiers}},
                         "realchoice": {"ring_backup": PEER}}).customers["axe"]


def newest(hours_ago: float, missing: tuple[str, ...] = ()) -> SetInfo:
    return SetInfo("run-1234567890ab", NOW - timedelta(hours=hours_ago),
                   ("db/frame", "files/files"), missing, 5 << 20)


def local_row(**kw) -> TierRow:
    base = {"repository": "/r", "newest": newest(2), "sets": 3,
            "first": NOW - timedelta(days=2)}
    return TierRow("axe", "local", "local", **{**base, **kw})


def judged(row: TierRow, c=None) -> TierRow:
    judge_row(row, c or customer(), NOW)
    return row


def test_tier_a_states_one_by_one():
    assert judged(local_row()).state == "ok" and judged(local_row()).problems == []
    stale = judged(local_row(newest=newest(30)))
    assert stale.state == "STALE" and stale.problems == [
        "STALE: newest set 30.0 h old (limit 26 h)"]
    gaps = judged(local_row(newest=newest(1, ("roles of server frame-postgres is not in the "
                                               "set",))))
    assert gaps.state == "INCOMPLETE"
    assert gaps.problems == ["INCOMPLETE: missing roles of server frame-postgres is not in "
                             "the set"]
    none = judged(local_row(newest=None, sets=0, first=None))
    assert none.state == "NO BACKUP" and none.problems == ["NO BACKUP: no set yet in /r"]
    down = judged(local_row(newest=None, error="tier A repository of axe: wrong password"))
    assert down.state == "UNAVAILABLE" and down.problems == [
        "UNAVAILABLE: tier A repository of axe: wrong password"]
    locked = judged(local_row(locks=2, stale_locks=1))
    assert locked.state == "STALE LOCK" and "1 lock(s) not refreshed" in locked.problems[0]


def test_the_ring_is_stale_an_hour_after_tier_a_and_unreachable_is_its_own_state():
    c = customer(ring={})
    ring = judged(TierRow("axe", "ring", "realchoice", newest=newest(26.5), sets=1,
                          first=NOW - timedelta(days=1)), c)
    assert ring.state == "ok"
    assert judged(TierRow("axe", "ring", "realchoice", newest=newest(27.5), sets=1), c
                  ).state == "STALE"
    gone = TierRow("axe", "ring", "realchoice", state="UNREACHABLE",
                   error="tier B: cannot reach realchoice (127.0.0.1: ssh exit 255, refused)")
    assert judged(gone, c).problems == [
        "UNREACHABLE: tier B: cannot reach realchoice (127.0.0.1: ssh exit 255, refused)"]


def test_restic_check_failed_overdue_never_and_fine():
    fine = Outcome("ok", NOW - timedelta(days=3), "no errors")
    assert judged(local_row(check=fine)).state == "ok"
    failed = Outcome("FAILED", NOW - timedelta(days=1), "pack 37db… damaged; restic repair")
    assert judged(local_row(check=failed)).problems == [
        "CHECK FAILED: restic check of 2026-12-01: pack 37db… damaged; restic repair"]
    old = Outcome("ok", NOW - timedelta(days=9))
    assert judged(local_row(check=old)).problems == ["CHECK OVERDUE: last restic check 9 days "
                                                     "ago"]
    # Never checked: fine for a new site, overdue once its sets are older than a week + a day.
    assert judged(local_row(first=NOW - timedelta(days=7))).state == "ok"
    assert judged(local_row(first=NOW - timedelta(days=9))).problems == [
        "CHECK OVERDUE: no restic check recorded, sets since 2026-11-23"]
    assert judged(local_row(check=Outcome("running", NOW - timedelta(days=20)))).state == "ok"
    # A cold volume is checked when mounted: no clock, but a failure still counts.
    c = customer(cold={"password": {"env": "C"}})
    cold = TierRow("axe", "cold", "axe-cold-1", newest=newest(24 * 40), sets=1, volume=1,
                   first=NOW - timedelta(days=90))
    assert judged(cold, c).state == "ok"
    assert judged(TierRow("axe", "cold", "axe-cold-1", newest=newest(2), volume=1,
                          check=failed), c).state == "CHECK FAILED"


def test_cold_rotation_overdue_volumes_and_not_yet_due_ones():
    c = customer(cold={"password": {"env": "C"}, "rotation_start": "2026-Q4"})
    rows = [TierRow("axe", "cold", "axe-cold-1", volume=1, newest=newest(5), sets=1,
                    last_sync=NOW - timedelta(hours=5)),
            TierRow("axe", "cold", "#2", volume=2, state="offline"),
            TierRow("axe", "cold", "#3", volume=3, state="offline")]
    for row in rows:
        judge_row(row, c, NOW)
    judge_rotation(rows, c, NOW)
    assert [r.state for r in rows] == ["ok", "offline", "offline"]
    later = NOW + timedelta(days=200)  # #2's first quarter (2027 Q1) is over, never synced
    late = [TierRow("axe", "cold", "#1", volume=1, state="offline",
                    last_sync=NOW - timedelta(hours=5)),
            TierRow("axe", "cold", "#2", volume=2, state="offline"),
            TierRow("axe", "cold", "#3", volume=3, state="offline")]
    judge_rotation(late, c, later)
    assert [r.state for r in late] == ["offline", "OVERDUE", "offline"]
    assert late[1].problems == ["OVERDUE: volume #2 never synced (limit 290 days); mount that "
                                "SSD"]


def test_drill_failed_overdue_and_never_on_a_new_site():
    def drill(outcome, first_days):
        cs = CustomerStatus("axe", "Asia/Seoul", drill=outcome)
        judge_drill(cs, local_row(first=NOW - timedelta(days=first_days)), NOW)
        return cs.problems

    assert drill(None, 30) == []
    assert drill(None, 120) == ["DRILL OVERDUE: no restore drill recorded, sets since "
                                "2026-08-04"]
    assert drill(Outcome("ok", NOW - timedelta(days=10)), 400) == []
    assert drill(Outcome("FAILED", NOW - timedelta(days=1), "frame: from no tier"), 400) == [
        "DRILL FAILED: drill of 2026-12-01: frame: from no tier"]


def site(*rows: TierRow, drill: Outcome | None = None, stuck=()) -> SiteStatus:
    cs = CustomerStatus("axe", "Asia/Seoul", list(rows), drill)
    return SiteStatus(NOW, [cs], list(stuck))


def test_exit_codes_zero_only_when_nothing_is_wrong():
    assert site(judged(local_row())).exit_code == 0
    assert site(judged(local_row(newest=newest(30)))).exit_code == 1
    assert site(judged(local_row()), stuck=[StuckRun("r" * 32, "axe_tier_a", "STARTED",
                                                     NOW - timedelta(hours=13))]).exit_code == 1
    bad_drill = CustomerStatus("axe", "Asia/Seoul", [judged(local_row())],
                               problems=["DRILL FAILED: x"])
    assert SiteStatus(NOW, [bad_drill]).exit_code == 1


def test_json_keys_and_types():
    data = site(judged(local_row(check=Outcome("ok", NOW - timedelta(days=1), "fine"),
                                 stored_bytes=3 << 20, locks=0, stale_locks=0))).as_json()
    assert data["schema"] == 1 and data["ok"] is True and data["exit_code"] == 0
    assert datetime.fromisoformat(data["generated_at"]) == NOW
    (cust,) = data["customers"]
    assert set(cust) == {"customer", "timezone", "ok", "drill", "problems", "tiers"}
    assert cust["drill"] == {"result": "never", "at": None, "age_hours": None, "summary": ""}
    (tier,) = cust["tiers"]
    assert set(tier) == {"tier", "where", "repository", "state", "problems", "error",
                         "newest_set", "sets", "size", "locks", "check", "last_sync", "note"}
    assert tier["newest_set"]["time"] == "2026-12-02T07:00:00+09:00"
    assert tier["newest_set"]["age_hours"] == 2.0 and tier["newest_set"]["complete"] is True
    assert tier["size"] == {"newest_set_raw_bytes": 5 << 20, "stored_bytes": 3 << 20,
                            "raw_bytes": None}
    assert tier["locks"] == {"total": 0, "stale": 0}
    assert tier["check"]["result"] == "ok" and tier["check"]["age_hours"] == 24.0


def test_the_table_and_the_problem_lines():
    rows = [judged(local_row(stored_bytes=3 << 20, locks=0, stale_locks=0,
                             newest=newest(30))),
            judged(TierRow("axe", "ring", "realchoice", state="UNREACHABLE",
                           error="tier B: cannot reach realchoice",
                           note="last push recorded: set of 2026-12-01 03:30"),
                   customer(ring={}))]
    lines = format_status(site(*rows, drill=Outcome("ok", NOW - timedelta(days=12))))
    assert lines[0].split() == ["customer", "tier", "newest", "set", "(Asia/Seoul)", "age",
                                "sets", "newest", "is", "repo", "raw", "/", "stored", "locks",
                                "check", "drill", "state", "note"]
    assert lines[1].split()[:8] == ["axe", "local", "2026-12-01", "03:00", "30.0", "h", "3",
                                    "complete"]
    assert "? / 3.0 MiB" in lines[1]
    assert lines[1].split()[-6:] == ["0", "never", "ok", "12", "d", "STALE"]
    assert "ring realchoice" in lines[2] and "UNREACHABLE" in lines[2]
    assert lines[3:] == ["", "problems:",
                         "  axe local: STALE: newest set 30.0 h old (limit 26 h)",
                         "  axe ring realchoice: UNREACHABLE: tier B: cannot reach realchoice"]


def test_lock_files_and_size_read_from_the_folder(tmp_path):
    import os

    (tmp_path / "config").write_text("x" * 100)
    (tmp_path / "data" / "ab").mkdir(parents=True)
    (tmp_path / "data" / "ab" / "ab12").write_bytes(b"y" * 1000)
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "fresh").write_text("z")
    old = tmp_path / "locks" / "old"
    old.write_text("z")
    now = old.stat().st_mtime
    os.utime(old, (now - 31 * 60, now - 31 * 60))
    disk = on_disk(tmp_path, now=now)
    assert disk is not None and (disk.locks, disk.stale_locks) == (2, 1)
    assert disk.stored_bytes == 1102
    assert on_disk(tmp_path / "nothing") is None


class FlakyPeer:
    """A runner whose push fails `failures` times (retryable or not), then works."""

    def __init__(self, failures: int, retryable: bool = True):
        self.failures, self.retryable, self.runs = failures, retryable, 0

    def tier_b(self, site, customer_name, peer, *, retry_left=False):
        self.runs += 1
        if self.runs <= self.failures:
            return RunOutcome(f"run{self.runs}", False, "tier B: cannot reach realchoice\nmore",
                              retryable=self.retryable)
        return RunOutcome(f"run{self.runs}", True, metadata={
            "snapshots_copied": 1, "snapshots_already_present": 0, "bytes_copied": 1,
            "duration_s": 1.0, "host": "h", "peer_free_gib": 1.0})


def ring_site(retries: int = 2, delay: float = 5):
    return parse_config({"axe": {"tiers": {"local": LOCAL, "ring": {
        "retries": retries, "retry_delay_s": delay}}}, "realchoice": {"ring_backup": PEER}})


def test_backup_ring_retries_as_the_schedule_does():
    said, slept = [], []
    runner = FlakyPeer(2)
    (outcome,) = backup_ring(ring_site(), ["axe"], runner, say=said.append, sleep=slept.append)
    assert outcome.exit_code == 0 and runner.runs == 3
    assert slept == [5, 15]  # Dagster's exponential backoff: delay x (2^n - 1)
    assert said[1:] == [
        "tier B of axe: realchoice failed (tier B: cannot reach realchoice); retry 1 of 2 in "
        "5 s (tiers.ring.retries; --no-retry fails at once)",
        "tier B of axe: realchoice failed (tier B: cannot reach realchoice); retry 2 of 2 in "
        "15 s (tiers.ring.retries; --no-retry fails at once)"]
    gives_up = FlakyPeer(5)
    (outcome,) = backup_ring(ring_site(), ["axe"], gives_up, say=said.append,
                             sleep=slept.append)
    assert gives_up.runs == 3 and outcome.exit_code == 1
    assert outcome.errors == ["tier B: cannot reach realchoice\nmore"]


def test_no_retry_and_failures_retrying_cannot_fix_run_once():
    for runner, retry in ((FlakyPeer(1), False), (FlakyPeer(1, retryable=False), True)):
        slept: list[float] = []
        (outcome,) = backup_ring(ring_site(), ["axe"], runner, retry=retry, say=lambda _: None,
                                 sleep=slept.append)
        assert runner.runs == 1 and slept == [] and outcome.exit_code == 1
    zero = FlakyPeer(1)
    list(backup_ring(ring_site(retries=0), ["axe"], zero, say=lambda _: None,
                     sleep=lambda _: None))
    assert zero.runs == 1


def test_times_are_in_the_customers_zone():
    row = judged(local_row(newest=SetInfo("r", datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
                                          .astimezone(KST), (), (), 0)))
    assert row.newest is not None and f"{row.newest.time:%Y-%m-%d %H:%M}" == "2026-12-02 03:00"
