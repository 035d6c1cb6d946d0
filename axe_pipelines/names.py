"""The names of everything axe puts into Dagster, in one place: asset keys, groups, ops, jobs,
schedules, sensors, pools, run tags and the resource key. Part of the Dagster layer (keys are
`dg.AssetKey`); plain modules do not need any of these.

A customer name may hold '-', which Dagster names cannot: `_name` turns it into '_'. Keys keep
the customer's own spelling (`axe-b/dumps/frame`). The UI labels a node by its key's last
part, which node_labels.py chooses; `former_keys` lists the keys before that rename (issue 11),
whose recorded history the readers of dump and sync history still look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import yaml

from axe_pipelines.config import Customer, repository_id
from axe_pipelines.node_labels import (
    COLD_LABEL,
    DRILL_LABEL,
    KIND_FOLDER,
    SET_LABEL,
    inbound_label,
    item_label,
    wal_label,
)

if TYPE_CHECKING:
    from axe_pipelines.backup import Item

PROGRESS_RESOURCE = "axe_progress"  # the tier-A reporter (the CLI's live table, else the log)
DRILL_LISTENER_RESOURCE = "axe_drill_listener"  # the CLI follows a drill; else the log
SCHEDULED_TIME_TAG = "dagster/scheduled_execution_time"  # set by Dagster on scheduled runs
LOGICAL_TIME_TAG = "axe/logical_time"  # set by `axe backup` on the runs it starts itself
REPOSITORY_TAG = "axe/repository"  # run queue: one run at a time per tier-A repository
TIER_TAG = "axe/tier"
VOLUME_TAG = "axe/volume"
PEER_TAG = "axe/peer"
KIND_TAG = "axe/kind"
# The process that runs a run `axe` started (instance/recovery.py tells a dead one by these).
HOST_TAG = "axe/host"
PID_TAG = "axe/pid"
PID_START_TAG = "axe/pid_start"
INBOUND_GROUP = "peers"
# The code location, as workspace.yaml names it; AXE_LOCATION_NAME (deploy/compose.yaml) says
# otherwise. Runs that `axe` executes itself carry it, so the UI lists them under their job.
DEFAULT_LOCATION = "axe-site"
WORKSPACE = Path(__file__).resolve().parent.parent / "workspace.yaml"
REPOSITORY_LABEL_TAG = ".dagster/repository"  # Dagster's own: `<repository>@<location>`
RUN_FAILURE_SENSOR = "axe_run_failure_alerts"  # a failed run of any job: Slack
ALERT_SENSOR = "axe_check_and_freshness_alerts"  # an ERROR check, a tier gone stale: Slack


def _name(*parts: str) -> str:
    return "_".join(p.replace("-", "_") for p in parts)


def customer_of_job(job_name: str, customers: Iterable[str]) -> str | None:
    """Given a job's name and the customers, return the customer whose jobs are named
    `<customer>_...` (the longest such name), or None for a site-wide job (restore)."""
    owners = [c for c in customers if job_name.startswith(_name(c) + "_")]
    return max(owners, key=len, default=None)


# --- asset keys --------------------------------------------------------------------------------


def item_key(customer_name: str, item: Item) -> dg.AssetKey:
    """Given a tier-A item, return its asset key: `<customer>/dumps/<database>`,
    `<customer>/roles/<server>`, `<customer>/dumpall/<server>-dumpall` or
    `<customer>/folders/<folder>`."""
    return dg.AssetKey([customer_name, KIND_FOLDER[item.kind], item_label(item.kind, item.name)])


def physical_key(customer_name: str, server: str) -> dg.AssetKey:
    """Given a server with `physical: true`, return the key of its base backups,
    `<customer>/physical/<server>-physical` (labelled apart from the server's roles)."""
    return dg.AssetKey([customer_name, KIND_FOLDER["physical"], item_label("physical", server)])


def set_key(customer_name: str) -> dg.AssetKey:
    """Return the key of the customer's night's set, `<customer>/tier_a/nightly_set`."""
    return dg.AssetKey([customer_name, "tier_a", SET_LABEL])


def tier_b_key(customer_name: str, peer: str) -> dg.AssetKey:
    """Return the key of the customer's copy at a ring peer, `<customer>/tier_b/<peer>`."""
    return dg.AssetKey([customer_name, "tier_b", peer])


def inbound_key(peer: str) -> dg.AssetKey:
    """Return the key of what a peer pushes to us, `peers/inbound/from-<peer>`."""
    return dg.AssetKey(["peers", "inbound", inbound_label(peer)])


def tier_c_key(customer_name: str) -> dg.AssetKey:
    """Return the key of the customer's copy on the cold SSDs,
    `<customer>/tier_c/cold_volumes`."""
    return dg.AssetKey([customer_name, "tier_c", COLD_LABEL])


def tier_asset_key(customer_name: str, tier: str, peer: str | None = None) -> dg.AssetKey:
    """Given a tier (local, ring with its peer, cold), return the asset that holds that tier's
    copy of the customer's set: set_key, tier_b_key or tier_c_key."""
    if tier == "ring":
        assert peer is not None
        return tier_b_key(customer_name, peer)
    return tier_c_key(customer_name) if tier == "cold" else set_key(customer_name)


def drill_key(customer_name: str) -> dg.AssetKey:
    """Return the key of the customer's restore drill, `<customer>/drill/restore_drill`."""
    return dg.AssetKey([customer_name, "drill", DRILL_LABEL])


def wal_key(customer_name: str, server_name: str) -> dg.AssetKey:
    """Return the key of a server's archived WAL, `<customer>/wal/<server>-wal` (issue 13)."""
    return dg.AssetKey([customer_name, "wal", wal_label(server_name)])


def former_keys(key: dg.AssetKey) -> list[dg.AssetKey]:
    """Given an asset key, return the keys the same asset had before issue 11 gave every node
    a distinct label (`axe/db/frame/dump` for `axe/dumps/frame`, `axe/tier_a/local`,
    `axe/files/<folder>`, `axe/dumpall/<server>`, `axe/tier_c/cold`,
    `peers/<peer>/inbound`); empty for a key that did not change. History recorded under
    those keys stays where it is (README "Asset keys"); readers look there too."""
    path = list(key.path)
    if len(path) != 3:
        return []
    customer, middle, last = path
    if customer == "peers" and middle == "inbound" and last.startswith("from-"):
        return [dg.AssetKey(["peers", last.removeprefix("from-"), "inbound"])]
    former = {("dumps", last): [customer, "db", last, "dump"],
              ("folders", last): [customer, "files", last],
              ("tier_a", SET_LABEL): [customer, "tier_a", "local"],
              ("tier_c", COLD_LABEL): [customer, "tier_c", "cold"]}.get((middle, last))
    if middle == "dumpall" and last.endswith("-dumpall"):
        former = [customer, "dumpall", last.removesuffix("-dumpall")]
    return [dg.AssetKey(former)] if former else []


def history_keys(key: dg.AssetKey) -> list[dg.AssetKey]:
    """Given an asset key, return it and its former keys: where its recorded materializations
    are, newest key first."""
    return [key, *former_keys(key)]


# --- asset checks read back by `axe status` ----------------------------------------------------

RESTIC_CHECK = "restic_check"  # the weekly `restic check` on each tier's asset (issue 10)
RESTORABLE_EVERYWHERE = "restorable_everywhere"  # the drill's verdict (issue 9)


def restic_check_key(customer_name: str, tier: str, peer: str | None = None,
                     ) -> dg.AssetCheckKey:
    """Given a tier (and peer), return the key of the weekly `restic check` of the customer's
    repository there, on that tier's asset (tier_asset_key)."""
    return dg.AssetCheckKey(tier_asset_key(customer_name, tier, peer), RESTIC_CHECK)


def drill_check_key(customer_name: str) -> dg.AssetCheckKey:
    """Return the key of the drill's `restorable_everywhere` check."""
    return dg.AssetCheckKey(drill_key(customer_name), RESTORABLE_EVERYWHERE)


# --- groups and ops ----------------------------------------------------------------------------


def tier_a_group(customer_name: str) -> str:
    """Return the asset group of the customer's tier A."""
    return _name(customer_name, "tier_a")


def tier_b_group(customer_name: str) -> str:
    """Return the asset group of the customer's tier B."""
    return _name(customer_name, "tier_b")


def tier_c_group(customer_name: str) -> str:
    """Return the asset group of the customer's tier C."""
    return _name(customer_name, "tier_c")


def tier_a_op(customer_name: str) -> str:
    """Return the name of the op that backs up the customer's whole tier-A set."""
    return _name(customer_name, "tier_a_backup")


def tier_c_op(customer_name: str) -> str:
    """Return the op behind the tier-C asset (its run config goes under `ops.<this>`)."""
    return tier_c_key(customer_name).to_python_identifier()


def drill_group(customer_name: str) -> str:
    """Return the asset group of the customer's restore drill."""
    return _name(customer_name, "drill")


# --- jobs, schedules, sensors ------------------------------------------------------------------


def tier_a_job(customer_name: str) -> str:
    """Return the name of the customer's tier-A job."""
    return _name(customer_name, "tier_a")


def tier_a_schedule(customer_name: str) -> str:
    """Return the name of the customer's nightly tier-A schedule."""
    return _name(customer_name, "tier_a_nightly")


def physical_job(customer_name: str, server: str) -> str:
    """Return the name of the job (and of its schedule) of a server's base backup on its own
    `physical_schedule`."""
    return _name(customer_name, "physical", server)


def tier_b_job(customer_name: str) -> str:
    """Return the name of the job that pushes the customer's set to its ring peers."""
    return _name(customer_name, "tier_b")


def tier_b_schedule(customer_name: str) -> str:
    """Return the name of the customer's nightly tier-B schedule."""
    return _name(customer_name, "tier_b_nightly")


def peer_check_job(customer_name: str) -> str:
    """Return the name of the job (and of its schedule) that runs the peer_now checks."""
    return _name(customer_name, "tier_b_peer_check")


def inbound_sensor(peer: str) -> str:
    """Return the name of the sensor that watches a peer's pushes to us."""
    return _name("peers", peer, "inbound")


def tier_c_job(customer_name: str) -> str:
    """Return the name of the job that syncs the customer's set to mounted cold volumes."""
    return _name(customer_name, "tier_c")


def cold_rotation_job(customer_name: str) -> str:
    """Return the name of the job that runs the volumes_current check."""
    return _name(customer_name, "cold_rotation_check")


def cold_rotation_schedule(customer_name: str) -> str:
    """Return the name of the daily volumes_current schedule."""
    return _name(customer_name, "cold_rotation_daily")


def cold_sensor(customer_name: str) -> str:
    """Return the name of the sensor that starts a tier-C sync when a volume is mounted."""
    return _name(customer_name, "cold_volumes")


def retention_job(customer_name: str) -> str:
    """Return the name of the customer's retention job (forget + prune on every tier)."""
    return _name(customer_name, "retention")


def retention_schedule(customer_name: str) -> str:
    """Return the name of the customer's weekly retention schedule."""
    return _name(customer_name, "retention_weekly")


def restic_check_job(customer_name: str) -> str:
    """Return the name of the job that runs the restic_check of each of the customer's tiers."""
    return _name(customer_name, "restic_check")


def restic_check_schedule(customer_name: str) -> str:
    """Return the name of the customer's weekly restic_check schedule."""
    return _name(customer_name, "restic_check_weekly")


def drill_job(customer_name: str) -> str:
    """Return the name of the customer's restore-drill job (and of its quarterly schedule),
    `axe_restore_drill` for the runbook's customer `axe`."""
    return _name(customer_name, "restore_drill")


def wal_group(customer_name: str) -> str:
    """Return the asset group of the customer's archived WAL."""
    return _name(customer_name, "wal")


def wal_job(customer_name: str) -> str:
    """Return the name of the job (and op) that pushes the customer's WAL spools."""
    return _name(customer_name, "wal_push")


def wal_sensor(customer_name: str) -> str:
    """Return the name of the sensor that starts the WAL push every few minutes."""
    return _name(customer_name, "wal_every_few_minutes")


# --- code location ----------------------------------------------------------------------------


def location_name(workspace: Path = WORKSPACE) -> str:
    """Return the code location's name: $AXE_LOCATION_NAME, else the `location_name` of
    workspace.yaml's entry for axe_pipelines.definitions, else `axe-site`."""
    if os.environ.get("AXE_LOCATION_NAME"):
        return os.environ["AXE_LOCATION_NAME"]
    try:
        entries = (yaml.safe_load(workspace.read_text()) or {}).get("load_from") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return DEFAULT_LOCATION
    for entry in entries:
        module = (entry or {}).get("python_module") if isinstance(entry, dict) else None
        if isinstance(module, dict) and module.get("module_name") == "axe_pipelines.definitions":
            name = module.get("location_name")
            return name if isinstance(name, str) and name else DEFAULT_LOCATION
    return DEFAULT_LOCATION


def location_tags() -> dict[str, str]:
    """Return the run tag that files a run `axe` executes in its own process under the code
    location's job (the job's page lists runs by it): `.dagster/repository`."""
    return {REPOSITORY_LABEL_TAG: f"__repository__@{location_name()}"}


# --- pools and run tags ------------------------------------------------------------------------


def repository_pool(customer: Customer) -> str:
    """Return the concurrency pool of the customer's tier-A repository: tier A, B and C ops on
    that repository run one at a time."""
    assert customer.tiers is not None
    return f"restic-{repository_id(customer.tiers.local.repository.expanduser())}"


def repository_tags(customer: Customer, tier: str = "a") -> dict[str, str]:
    """Return the run tags of a job on the customer's tier-A repository: `axe/repository`
    (the run queue holds one such run at a time, dagster.yaml) and `axe/tier`."""
    assert customer.tiers is not None
    return {REPOSITORY_TAG: repository_id(customer.tiers.local.repository.expanduser()),
            TIER_TAG: tier}
