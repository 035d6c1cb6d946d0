"""What tiers B and C share: choosing the tier-A set to copy, and `copy_set`, the one
copy-and-confirm core (restic copy of the set's missing snapshots, then the target read back:
every member must be there as some snapshot's `original`).

Tiers B and C never copy a set that tier A is still writing: `in_progress(run_id)` (answered
by the Dagster layer from its run storage) leaves such a set out. They copy the newest
finished set even when it is incomplete (a night whose databases failed), and then also the
newest earlier good snapshot of each item it lacks, so every tier can restore each item as of
that night (restores pick per item); the `set_complete` check says the set is incomplete.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from axe_pipelines import read_ahead
from axe_pipelines.backup import TAG_TOOL, coverage
from axe_pipelines.config import Customer
from axe_pipelines.errors import ItemFailed
from axe_pipelines.physical_item import newest_nightly, own_schedule_servers
from axe_pipelines.restic import Repository, Restic, ResticError, Snapshot
from axe_pipelines.sets import BackupSet, group_sets, newest_holding
from axe_pipelines.wal.catalog import is_wal

Say = Callable[[str], None]
READ_BACK = "the target's snapshots read back"
REPORTED = "restic's report of each snapshot, and its snapshot file in the target"


class NoSetToCopy(ItemFailed):
    """Tier A has no finished set to copy (or cannot be read). `waiting` is True when the only
    set is still being written, so trying again later helps."""

    def __init__(self, message: str, *, waiting: bool = False):
        super().__init__(message)
        self.waiting = waiting


@dataclass(frozen=True)
class Carried:
    """The newest earlier good snapshot of an item the set to copy lacks, copied with it."""

    label: str  # db/frame
    snapshot: Snapshot
    run_id: str  # the set it belongs to
    time: datetime


@dataclass(frozen=True)
class SetToCopy(BackupSet):
    """The newest finished tier-A set, with what it lacks: `missing` holds (item label, why)
    per configured item not in it, `carried` the earlier snapshots copied in their place."""

    missing: tuple[tuple[str, str], ...] = ()
    carried: tuple[Carried, ...] = ()
    wal: tuple[Snapshot, ...] = ()  # every WAL batch tier A holds (issue 13)

    @property
    def to_copy(self) -> tuple[Snapshot, ...]:
        """Return the set's members, the carried earlier snapshots and tier A's WAL batches
        (tier A's retention keeps just the WAL its base backups need)."""
        return (*self.snapshots, *(c.snapshot for c in self.carried), *self.wal)


def with_gaps(customer: Customer, the_set: BackupSet,
              earlier: list[BackupSet]) -> SetToCopy:
    """Given a set, the finished sets before it (oldest first) and the customer, return the
    set with what it lacks (tier-A coverage) and, per missing item, its newest earlier good
    snapshot."""
    missing, carried = [], []
    for gap in coverage(customer, the_set.snapshots):
        missing.append((gap.item.label, gap.reason))
        older = newest_holding(earlier, gap.item.kind, gap.item.name)
        snap = older.member(gap.item.kind, gap.item.name) if older else None
        if older and snap:
            carried.append(Carried(gap.item.label, snap, older.run_id, older.time))
    for server in own_schedule_servers(customer):  # base backups of their own job's sets
        older = None if the_set.member("physical", server) else \
            newest_holding(earlier, "physical", server)
        if older and (snap := older.member("physical", server)):
            carried.append(Carried(f"physical/{server}", snap, older.run_id, older.time))
    return SetToCopy(the_set.run_id, the_set.time, the_set.snapshots, tuple(missing),
                     tuple(carried))


def present_ids(snapshots: list[Snapshot]) -> set[str]:
    """Given a repository's snapshots, return the ids it holds, counting a copy as its
    original."""
    return {s.original for s in snapshots if s.original} | {s.id for s in snapshots}


def lacking(wanted: Iterable[Snapshot], snapshots: list[Snapshot]) -> list[Snapshot]:
    """Given snapshots wanted and a repository's snapshots, return the wanted ones that are
    not among them (matched by original id)."""
    have = present_ids(snapshots)
    return [s for s in wanted if s.id not in have]


def missing_from(the_set: BackupSet, snapshots: list[Snapshot]) -> list[Snapshot]:
    """Given a set and a repository's snapshots, return the members of the set that are not
    among them (matched by original id)."""
    return lacking(the_set.snapshots, snapshots)


def tier_a_tags(customer_name: str) -> list[str]:
    """Given a customer, return the tags tiers B and C list its tier-A snapshots by."""
    return [TAG_TOOL, f"customer={customer_name}"]


def finished_sets(sets: list[BackupSet],
                  in_progress: Callable[[str], bool] | None) -> tuple[list[BackupSet], list[str]]:
    """Given tier A's sets, return (sets whose tier-A run has finished, run ids of the sets
    left out because their run is still writing them). Without `in_progress` every set counts
    as finished."""
    if in_progress is None:
        return sets, []
    busy = [s.run_id for s in sets if in_progress(s.run_id)]
    return [s for s in sets if s.run_id not in busy], busy


def newest_finished_set(customer_name: str, customer: Customer, *, tier: str,
                        in_progress: Callable[[str], bool] | None = None,
                        say: Say | None = None) -> SetToCopy:
    """Given a customer and the copying tier's name ("tier B"), return the newest tier-A set
    whose run has finished, with what it lacks and the earlier snapshots to copy in their
    place (SetToCopy), saying which sets were left out and what the set lacks. Raise
    NoSetToCopy when tier A cannot be read or holds no finished set."""
    try:
        snapshots = read_ahead.snapshots(customer_name, customer, tier_a_tags(customer_name))
    except ResticError as exc:
        raise NoSetToCopy(f"{tier} of {customer_name}: cannot read tier A: {exc}") from None
    sets = group_sets(snapshots)
    done, busy = finished_sets(sets, in_progress)
    if busy and say:
        say(f"{tier}: set(s) {', '.join(r[:8] for r in busy)} left out: their tier-A run is "
            f"still writing them")
    if done:
        # The newest night's set; the sets of a base backup's own job come along as earlier.
        at = done.index(newest_nightly(customer, done))
        newest = replace(with_gaps(customer, done[at], done[:at]), wal=tuple(
            s for s in snapshots if is_wal(s, customer_name)))
        if newest.missing and say:
            say(f"{tier}: set {newest.run_id[:8]} of {newest.time:%Y-%m-%d %H:%M} is "
                f"incomplete (missing {', '.join(label for label, _ in newest.missing)}); "
                f"copying it with the newest earlier snapshot of "
                f"{', '.join(c.label for c in newest.carried) or 'none of them (none exists)'}")
        return newest
    if busy:
        raise NoSetToCopy(f"{tier} of {customer_name}: the only tier-A set is still being "
                          f"written by run {busy[-1][:8]}", waiting=True)
    raise NoSetToCopy(f"{tier} of {customer_name}: tier A holds no backup set yet; run "
                      f"`axe backup --local` first")


@dataclass
class CopyResult:
    """What `copy_set` did and found: the tier-A ids it copied and those already there, the
    bytes of the copied snapshots' source data, the ids (originals) now known to be in the
    target, the members still missing (empty when the copy is confirmed), and how it was
    confirmed (`confirmed_by`)."""

    copied: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    bytes: int = 0
    present: frozenset[str] = frozenset()
    still_missing: list[Snapshot] = field(default_factory=list)
    confirmed_by: str = READ_BACK


_HEAD = re.compile(r"snapshot ([0-9a-f]{8}) of \[")
_SKIP = re.compile(r"skipping source snapshot ([0-9a-f]{8}), was already copied to snapshot "
                   r"([0-9a-f]{8})")
_SAVED = re.compile(r"snapshot ([0-9a-f]{8}) saved")


class CopyReport:
    """Reads `restic copy -v`'s report line by line (`line`): per source snapshot, its
    header (`snapshot <src> of [...]`), then either `skipping source snapshot <src>, was
    already copied to snapshot <dst>` or, once it is written, `snapshot <dst> saved`.
    `done` maps each source's short id to its copy's short id and whether this copy saved
    it. Any line order other than that (another restic's wording, batched saves) makes the
    report `unreadable`, and the caller reads the target back instead."""

    def __init__(self) -> None:
        self.done: dict[str, tuple[str, bool]] = {}
        self.unreadable = False
        self._open: str | None = None  # the source whose header came, its outcome not yet

    def line(self, text: str) -> None:
        text = text.strip()
        if (m := _HEAD.match(text)) is not None:
            self.unreadable |= self._open is not None
            self._open = m[1]
        elif (m := _SKIP.fullmatch(text)) is not None:
            self._close(m[1], m[2], saved=False)
        elif (m := _SAVED.fullmatch(text)) is not None:
            self._close(self._open, m[1], saved=True)

    def _close(self, source: str | None, copy: str, *, saved: bool) -> None:
        if source is None or source != self._open or source in self.done:
            self.unreadable = True
        else:
            self.done[source] = (copy, saved)
        self._open = None

    def confirmed(self, wanted: Iterable[Snapshot], files: Collection[str]
                  ) -> tuple[list[Snapshot], list[Snapshot]] | None:
        """Given the snapshots handed to restic and the target's snapshot file names read
        after the copy, return (those this copy saved, those already there) when the report
        accounts for every one of them and each copy it names is a file in the target; else
        None (the report cannot tell)."""
        wanted = list(wanted)
        if self.unreadable or self._open is not None or \
                len({s.short_id for s in wanted}) != len(wanted):
            return None
        saved, there = [], []
        for snap in wanted:
            copy = self.done.get(snap.short_id)
            if copy is None or not any(name.startswith(copy[0]) for name in files):
                return None
            (saved if copy[1] else there).append(snap)
        return saved, there


def copy_set(target: Restic, source: Repository, the_set: BackupSet, customer_name: str, *,
             tier: str, to: str, say: Say, before: list[Snapshot] | None = None,
             names_before: Collection[str] | None = None,
             files_after: Callable[[], Collection[str] | None] | None = None) -> CopyResult:
    """Given the target repository, tier A's repository and the set, copy what the target
    lacks of `the_set.to_copy` (its members, and for a SetToCopy the earlier snapshots of the
    items it lacks) and confirm it. `before`: the customer's snapshots in the target, when
    the caller listed them already (else they are listed here).
    `names_before`: instead, the ids of the target's snapshots before the copy, as its
    `snapshots/` file names (tier B's probe reads them over ssh): nothing is listed before
    the copy, and restic is handed every snapshot of the set (it skips those the target
    holds, matched by original id). Then `files_after()`, the target's snapshot file names
    after the copy (None when they cannot be read), with restic's own report (CopyReport)
    confirms the copy without a second repository open; when the report cannot tell, the
    target is read back, and the new snapshot files tell what this copy added.
    Return the CopyResult; its `still_missing` names what the target still lacks.
    Raise the mapped ResticError when restic fails."""
    tags = [f"customer={customer_name}"]
    if names_before is not None:
        todo = list(the_set.to_copy)
        if todo:
            say(f"{tier}: copying set {the_set.run_id[:8]} to {to} ({len(todo)} snapshot(s); "
                f"restic skips those already there)")
    else:
        todo = lacking(the_set.to_copy,
                       target.snapshots(tags=tags) if before is None else before)
        if todo:
            say(f"{tier}: copying {len(todo)} snapshot(s) of set {the_set.run_id[:8]} to {to}")
    report = CopyReport()
    if todo:
        target.copy(source, [s.id for s in todo], on_line=report.line)
    if names_before is not None and files_after is not None:
        files = files_after()
        told = report.confirmed(todo, files) if files is not None else None
        if told is not None:
            saved, there = told
            return _result(the_set, saved, there, frozenset(s.id for s in todo), REPORTED)
    # Read without a lock: the snapshot files listed are there either way, and retention
    # and checks (restic's exclusive locks) run in the same pool, never beside a copy.
    after = target.snapshots(tags=tags, lock=False)
    if names_before is not None:  # copied now: the members whose copy is a new snapshot file
        added = present_ids([s for s in after if s.id not in names_before])
        todo = [s for s in todo if s.id in added]
    present = present_ids(after)
    return _result(the_set, todo, [s for s in the_set.to_copy if s not in todo and
                                   s.id in present], frozenset(present), READ_BACK)


def _result(the_set: BackupSet, copied: list[Snapshot], there: list[Snapshot],
            present: frozenset[str], how: str) -> CopyResult:
    return CopyResult(copied=[s.id for s in copied], already_present=[s.id for s in there],
                      bytes=sum(int(s.summary.get("total_bytes_processed") or 0)
                                for s in copied),
                      present=present, confirmed_by=how,
                      still_missing=[s for s in the_set.to_copy if s.id not in present])
