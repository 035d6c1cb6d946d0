"""`axe drill` and the quarterly drill asset, as plain functions: prove that every database
and folder of a customer can be restored, tier by tier.

For each database: its newest snapshot at or before the drill's as-of (default: the end of
yesterday, so the night's run in progress at 03:00 is never the one tested) is fetched from
tier A, its server's roles restored into staging first, the dump restored with its owners,
then checked: pg_restore's errors, the row-count round trip against the counts taken in the
dump's own snapshot, the checksum_tables digests, the SQL checks and the command checks (with
`{PG*}` pointing at staging). Any failure there — repository missing or damaged, wrong
password, restore error, a failed check — retries that database from tier C (when a volume
is mounted), then tier B; every attempt and its reason is kept. Folders go the same way into
a temporary folder (actions/drill_folders.py). RTO is fetch + restore + checks in wall
seconds; RPO is the served snapshot's age at drill time and the gap between that tier's last
two sets holding the item.

Which tiers, in which order, and how they are read: actions/drill_tiers.py.
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from datetime import time as clock
from importlib.metadata import version
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from axe_pipelines.actions.drill_evidence import copy_evidence
from axe_pipelines.actions.drill_folders import prove_folder
from axe_pipelines.actions.drill_physical import prove_physicals
from axe_pipelines.actions.drill_report import (
    Attempt,
    DrillReport,
    ItemProof,
    slack_message,
    write_evidence,
)
from axe_pipelines.actions.drill_staging import DrillStaging, StagingError
from axe_pipelines.actions.drill_tiers import (
    FAILURES,
    TierSource,
    damage_in,
    failure_reason,
    newest_holding,
    tier_chain,
    tier_word,
)
from axe_pipelines.actions.selection import RestoreError, dump_path
from axe_pipelines.backup import TAG_TOOL, local_restic
from axe_pipelines.config import Customer, Site, tier_timezone
from axe_pipelines.damage import record_damage
from axe_pipelines.integrity import (
    NO_HISTORY,
    CheckResult,
    DumpHistory,
    digest_check,
    expected_counts,
    recorded_counts_soon,
    recorded_digests,
    run_checks,
)
from axe_pipelines.notify import send
from axe_pipelines.postgres.client import first_line
from axe_pipelines.postgres.dump import read_dump
from axe_pipelines.postgres.restore import read_toc
from axe_pipelines.restic import Restic, ResticError, Snapshot, find_restic, restic_version
from axe_pipelines.safe_paths import remove_tree
from axe_pipelines.secrets import SecretError
from axe_pipelines.set_meta import SetMetaHistory
from axe_pipelines.sets import BackupSet, parse_as_of

Say = Callable[[str], None]


def quiet(_: str) -> None:
    """Given a line, say nothing (the default `say`)."""


@dataclasses.dataclass(frozen=True)
class DrillOptions:
    """`axe drill`'s options: `tier` proves from that tier only (local, ring, cold or a peer;
    default: tier A, falling back to C, then B); `as_of` as `axe restore` reads it."""

    tier: str | None = None
    as_of: str | None = None
    run_id: str = ""


class DrillListener(Protocol):
    """Who follows a drill as it runs (the CLI): each progress line, then the finished
    report. A drill run from the UI or a schedule has none and logs instead."""

    def say(self, line: str) -> None:
        """Given a progress line, show it."""

    def done(self, report: DrillReport) -> None:
        """Given the finished report (evidence kept, Slack told), take it."""


def end_of_yesterday(now: datetime) -> datetime:
    """Given the drill's start in the customer's zone, return the end of the day before."""
    return datetime.combine(now.date() - timedelta(days=1), clock(23, 59, 59, 999999),
                            tzinfo=now.tzinfo)


@contextmanager
def _timed(steps: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        steps[name] = round(time.monotonic() - started, 3)


def _fetch(restic: Restic, snap: Snapshot, workdir: Path) -> Path:
    """One file of a snapshot restored into `workdir` (restic's own words kept on failure,
    so that damage can be named)."""
    path = dump_path(snap)
    restic.run(["restore", snap.id, "--target", str(workdir), "--include", path],
               what=f"restoring {path} from snapshot {snap.short_id}")
    out = workdir / path.lstrip("/")
    if not out.is_file():
        raise RestoreError(f"restic restored no {path} from snapshot {snap.short_id}")
    return out


def _rows(results: list[CheckResult]) -> list[dict[str, object]]:
    return [{**r.row(), "output": r.output} for r in results]


class Drill:
    """One drill of one customer: the tiers, the staging server, the dump history."""

    def __init__(self, customer_name: str, customer: Customer, chain: list[TierSource], *,
                 as_of: datetime, started: datetime, history: DumpHistory, say: Say,
                 work_dir: Path):
        self.customer_name, self.customer, self.chain = customer_name, customer, chain
        self.as_of, self.started, self.history, self.say = as_of, started, history, say
        self.work_dir = work_dir
        self.staging: DrillStaging | None = None
        self._roles: dict[tuple[str, str], CheckResult] = {}
        self._histories: dict[str, SetMetaHistory] = {}
        self.damage: list[str] = []

    def prove(self, kind: str, name: str, required: bool = True) -> ItemProof:
        """Given a database or folder, try each tier in order until one proves it; return
        every attempt, and the RPO of the one that served."""
        item = ItemProof(kind, name, required)
        for source in self.chain:
            attempt = Attempt(tier=source.name)
            item.attempts.append(attempt)
            restic: Restic | None = None
            try:
                restic, sets = source.open()
                holding = newest_holding(sets, "pgdump" if kind == "database" else "files",
                                         name, self.as_of, f"tier {source.name}")
                prove = self._database if kind == "database" else self._folder
                prove(source, restic, holding, attempt, name)
            except FAILURES as exc:
                attempt.reason = failure_reason(exc, source.name)
                self._note_damage(source, restic, exc, item.label)
            self.say(f"drill: {item.label} from {source.name}: "
                     + ("proven" + (f" in {attempt.rto_s:.1f} s" if attempt.rto_s else "")
                        if attempt.ok else f"failed ({attempt.reason})"))
            if attempt.ok:
                item.record_rpo(self.started, [s.time for s in holding])
                break
        return item

    def _note_damage(self, source: TierSource, restic: Restic | None, exc: BaseException,
                     label: str) -> None:
        """Damage met by the drill is recorded where `axe status` / `axe doctor` look
        (damage.py) and kept for the report's verdict, once per tier."""
        damaged = damage_in(exc)
        if damaged is None:
            return
        line = (f"{tier_word(source.name)} is damaged: pack {damaged.pack[:10]} "
                f"({damaged.cause}), met restoring {label}")
        if not any(d.startswith(f"{tier_word(source.name)} is damaged") for d in self.damage):
            self.damage.append(line)
        if restic is not None:
            record_damage(restic, damaged, f"the restore drill ({label}, {source.name})")

    def _snapshot(self, holding: list[BackupSet], kind: str, name: str,
                  attempt: Attempt) -> Snapshot:
        snap = holding[-1].member(kind, name)
        assert snap is not None
        attempt.snapshot_id, attempt.original_id = snap.id, snap.original or ""
        attempt.set_time = holding[-1].time.isoformat()
        return snap

    def _judge(self, attempt: Attempt, results: list[CheckResult], started: float) -> None:
        attempt.rto_s = round(time.monotonic() - started, 2)
        attempt.checks = _rows(results)
        failed = [r for r in results if not r.passed]
        attempt.ok = not failed
        attempt.reason = "; ".join(f"{r.name}: {r.detail}" for r in failed)[:600]

    def _database(self, source: TierSource, restic: Restic, holding: list[BackupSet],
                  attempt: Attempt, db_name: str) -> None:
        assert self.staging is not None
        db = self.customer.databases[db_name]
        snap = self._snapshot(holding, "pgdump", db_name, attempt)
        tier_a_id = snap.original or snap.id  # what the dump-time history is keyed by
        # Dagster's history first, then the set's own set-meta (a rebuilt machine has no
        # history); one SetMetaHistory per tier, so each set's set-meta is read once.
        history = self._histories.setdefault(
            source.name, SetMetaHistory(self.history, restic, source.open()[1]))
        recorded = recorded_counts_soon(history, self.customer_name, db_name, tier_a_id)
        results = self._roles_for(source, restic, holding, db.server)
        started = time.monotonic()
        with self._scratch() as workdir:
            with _timed(attempt.steps, "fetch"):
                dump_file = _fetch(restic, snap, workdir)
            name = f"drill_{db_name}_{snap.short_id}"[:63]
            with _timed(attempt.steps, "restore"):
                if db.format == "custom":
                    read_toc(dump_file, where=f"database {db_name} ({snap.short_id})")
                problems = self.staging.load(name, dump_file, db.format,
                                             owners=bool(results))
            results.append(CheckResult("restore", "builtin", not problems,
                                       f"pg_restore reported: {problems}" if problems else
                                       f"loaded into staging as {name}"))
            with _timed(attempt.steps, "checks"):
                conn = self.staging.connection(name)
                expected, counted = expected_counts(
                    recorded, lambda: read_dump(dump_file, fmt=db.format).tables)
                results += run_checks(conn, db, expected_counts=expected,
                                      counts_source=counted)
                if db.checksum_tables:
                    results.append(digest_check(conn, db.checksum_tables, recorded_digests(
                        history, self.customer_name, db_name, tier_a_id)))
            self.staging.drop(name)
        self._judge(attempt, results, started)

    def _roles_for(self, source: TierSource, restic: Restic, holding: list[BackupSet],
                   server: str) -> list[CheckResult]:
        """The server's roles restored into staging first, once per tier: [] when the server
        keeps no roles dump (the database then loads without owners), else its check."""
        if not self.customer.servers[server].roles:
            return []
        key = (source.name, server)
        if key not in self._roles:
            self._roles[key] = self._restore_roles(source, restic, holding, server)
        return [self._roles[key]]

    def _restore_roles(self, source: TierSource, restic: Restic, holding: list[BackupSet],
                       server: str) -> CheckResult:
        assert self.staging is not None
        newest = next((s for s in reversed(holding) if s.member("roles", server)), None)
        name = f"roles-{server}"
        if newest is None:
            return CheckResult(name, "builtin", False, f"tier {source.name} holds no roles "
                               f"snapshot of {server} in the sets tested")
        snap = newest.member("roles", server)
        assert snap is not None
        with self._scratch() as workdir:
            script = _fetch(restic, snap, workdir).read_text(errors="replace")
        created, errors = self.staging.restore_roles(script)
        detail = (f"snapshot {snap.short_id}: {len(created)} role(s) created in staging"
                  + (f"; {len(errors)} error(s): {errors[0]}" if errors else ""))
        return CheckResult(name, "builtin", not errors, detail)

    def _folder(self, source: TierSource, restic: Restic, holding: list[BackupSet],
                attempt: Attempt, folder_name: str) -> None:
        snap = self._snapshot(holding, "files", folder_name, attempt)
        started = time.monotonic()
        with self._scratch() as workdir:
            with _timed(attempt.steps, "restore+checks"):
                results = prove_folder(restic, snap, workdir,
                                       max_files=self.customer.drill.sample_files,
                                       max_bytes=self.customer.drill.sample_bytes)
        self._judge(attempt, results, started)

    @contextmanager
    def _scratch(self) -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(prefix="axe-drill-fetch-", dir=self.work_dir))
        try:
            yield path
        finally:
            remove_tree(path, inside=self.work_dir)


def run_drill(site: Site, customer_name: str, options: DrillOptions = DrillOptions(), *,
              history: DumpHistory = NO_HISTORY, say: Say = quiet,
              now: datetime | None = None) -> DrillReport:
    """Given a customer and the options, prove every database (in a staging server started
    for the drill, or drill.staging) and every folder from the tiers (module docstring) and
    return the DrillReport; a staging server that cannot start is the report's `fatal`
    (folders are still proven). Raise ConfigError for an unknown customer or tier word,
    AsOfError for an unreadable --as-of."""
    customer = site.customer(customer_name)
    zone = ZoneInfo(tier_timezone(customer))
    started = (now or datetime.now(zone)).astimezone(zone).replace(microsecond=0)
    as_of = (parse_as_of(options.as_of, str(zone), now=started) if options.as_of
             else end_of_yesterday(started))
    report = DrillReport(customer_name, started.isoformat(), as_of.isoformat(),
                         host=socket.gethostname(), axe_version=version("axe-pipelines"),
                         restic_version=_restic_version(), tier_only=options.tier,
                         run_id=options.run_id)
    settings = customer.drill
    work_dir = Path(settings.work_dir or tempfile.gettempdir()).expanduser()
    drill = Drill(customer_name, customer, tier_chain(site, customer_name, options.tier),
                  as_of=as_of, started=started, history=history, say=say, work_dir=work_dir)
    clock_started = time.monotonic()
    if customer.databases:
        try:
            say(f"drill of {customer_name}: starting staging (as of {as_of:%Y-%m-%d %H:%M})")
            with DrillStaging(settings.staging, port=settings.staging_port,
                              parent=work_dir) as staging:
                drill.staging = staging
                report.staging = staging.describe()
                report.items += [drill.prove("database", n) for n in customer.databases]
        except StagingError as exc:
            report.fatal = str(exc)
            report.items += [ItemProof("database", n, attempts=[Attempt(
                tier="-", reason="the staging server did not start")])
                for n in customer.databases if n not in {i.name for i in report.items}]
    report.items += [drill.prove("folder", n, f.required) for n, f in customer.folders.items()]
    report.items += prove_physicals(drill)  # base backups: drill_physical.py
    report.damage = drill.damage
    report.wall_s = round(time.monotonic() - clock_started, 2)
    report.finished = datetime.now(zone).replace(microsecond=0).isoformat()
    return report


def _restic_version() -> str:
    try:
        found = restic_version(find_restic())
    except ResticError:
        return "restic not found"
    return "restic " + ".".join(map(str, found)) if found else "restic (version unknown)"


def evidence_tags(customer_name: str, stamp: str) -> list[str]:
    """Given a drill's customer and stamp, return the tags of its evidence snapshot in tier A
    (no `run=` tag: it is no backup set, and retention never judges it)."""
    return [TAG_TOOL, f"customer={customer_name}", "kind=drill", f"drill={stamp}"]


def finish_drill(site: Site, customer_name: str, report: DrillReport, *,
                 url: str | None = None, say: Say = quiet) -> DrillReport:
    """Given a finished drill, keep its evidence and tell the operators: write drill.json and
    drill.md under drill.evidence_dir/<customer>/<stamp>/, back that folder up into tier A
    (tagged kind=drill) and copy that snapshot to tiers C and B (drill_evidence.py), send
    the one Slack message (drill.slack, else notify.slack); then write the files again with
    the evidence snapshot and the delivery. Return the report. Never raises for a failure
    here: a Slack outage or a broken tier A is recorded, the result stays."""
    customer = site.customer(customer_name)
    started = datetime.fromisoformat(report.started)
    stamp = started.strftime("%Y%m%dT%H%M%S")
    folder = customer.drill.evidence_dir.expanduser() / customer_name / stamp
    try:
        write_evidence(report, folder)
        summary = local_restic(customer_name, customer).backup_paths(
            [folder], tags=evidence_tags(customer_name, stamp), at=started)
        report.evidence_snapshot = summary.snapshot_id
        say(f"drill: evidence in {folder}, snapshot {summary.snapshot_id[:8]} in tier A")
        report.evidence_copies = copy_evidence(site, customer_name, summary.snapshot_id, say)
    except OSError as exc:
        report.evidence_error = f"cannot write {folder}: {exc.strerror or exc}"
    except (ResticError, SecretError) as exc:
        report.evidence_error = f"not backed up into tier A: {first_line(exc)}"
    if report.evidence_error:
        say(f"drill: evidence: {report.evidence_error}")
    # drill.slack, else notify.slack: alerts fall back the other way, one destination serves.
    destination = customer.drill.slack or customer.notify.slack
    if destination is not None:
        report.slack = str(send(destination, slack_message(report, url)))
    else:
        report.slack = "not sent: no drill.slack or notify.slack in customers.yaml"
    say(f"drill: slack: {report.slack}")
    with suppress(OSError):
        write_evidence(report, folder)
    return report
