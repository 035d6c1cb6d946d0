"""Alerts to Slack (issue 10): a failed run of any job of this code location, an asset check
that failed with ERROR (coverage, restorable, set_present, volumes_current, arriving,
restic_check, ...), and a tier whose freshness went FAIL. One message per event:

    axe_run_failure_alerts          a run-failure sensor: Dagster's cursor hands it each failed
                                    run once. Message: customer, job, the failed asset or item,
                                    the one-line reason (the Failure's description, never
                                    "Exceeded max_retries" or a trace), a link to the run.
    axe_check_and_freshness_alerts  reads, each minute, the latest evaluation of every check
                                    and the freshness state of every tier from the instance
                                    (what the freshness daemon recorded); its cursor keeps the
                                    keys of the events already sent (notify.dedup).

Messages go to the customer's `notify.slack`, else its `drill.slack` (config_ops.py). Slack
being down never fails anything: `notify.send` retries a bounded number of times and logs;
within one tick, once a destination failed, the rest for it wait for the next tick.
(No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)
"""

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from axe_pipelines.config import DEFAULT_TIMEZONE, Site, tier_timezone
from axe_pipelines.config_ops import alert_destinations, webserver_base_url
from axe_pipelines.instance.owner import ProcessRecord
from axe_pipelines.names import (
    ALERT_SENSOR,
    HOST_TAG,
    PID_START_TAG,
    PID_TAG,
    RUN_FAILURE_SENSOR,
    customer_of_job,
    former_keys,
    inbound_key,
)
from axe_pipelines.notify import (
    Message,
    check_failure_message,
    dagster_asset_url,
    dagster_run_url,
    dump_sent_keys,
    event_key,
    freshness_message,
    load_sent_keys,
    new_events,
    one_line_reason,
    remember,
    run_failure_message,
    send,
)

TIER_PARTS = ("tier_a", "tier_b", "tier_c", "wal")  # assets whose freshness alerts
# Who posts a failed run: ALERT_BY_CLI, the `axe` process that runs it; ALERT_SENT, done.
ALERT_TAG = "axe/alert"
ALERT_BY_CLI = "cli"
ALERT_SENT = "sent"


@dataclass(frozen=True)
class FailedStep:
    """A failed step as plain values: its key, the Failure's description and metadata (None
    and {} for another exception), and the error text with its causes."""

    step_key: str | None
    description: str | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Alert:
    """One event to send: its dedup key, whom it is about (None: the site) and the message."""

    key: str
    about: str | None
    message: Message


def key_owner(site: Site, asset_key: Sequence[str]) -> str | None:
    """Given an asset key's parts, return whom it is about: the customer it starts with, the
    peer whose pushes to us it is (names.inbound_key, or a key it had before: former_keys),
    else None."""
    if asset_key and asset_key[0] in site.customers:
        return asset_key[0]
    path = list(asset_key)
    for peer in site.customers:
        key = inbound_key(peer)
        if path in [list(k.path) for k in (key, *former_keys(key))]:
            return peer
    return None


def failure_facts(step: FailedStep | None, assets: Sequence[str],
                  run_message: str | None) -> tuple[str | None, str]:
    """Given the first failed step (None: the run failed outside a step), the asset keys it
    produces and the run's failure message, return (the failed asset or item, the one-line
    reason). A tier-A Failure's `failed` list ("db/frame: why") names the items."""
    if step is None:
        return None, one_line_reason(run_message)
    failed = step.metadata.get("failed")
    if isinstance(failed, list) and failed and all(isinstance(f, str) for f in failed):
        items = [f.split(":", 1)[0] for f in failed]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return ", ".join(items), one_line_reason(failed[0]) + more
    item = ", ".join(assets) or step.step_key
    return item, one_line_reason(step.description or step.error or run_message)


def run_customer(site: Site, job_name: str, assets: Iterable[str],
                 run_config: Mapping[str, object]) -> str | None:
    """Given a failed run's job, the assets of its failed step and its run config, return the
    customer it was for: the first asset's, else the job's name, else a `customer` in an
    op's config (the restore job), else None."""
    for key in assets:
        owner = key_owner(site, key.split("/"))
        if owner is not None:
            return owner
    owner = customer_of_job(job_name, site.backed_up_customers())
    if owner is not None:
        return owner
    ops = run_config.get("ops")
    for op in (ops.values() if isinstance(ops, Mapping) else ()):
        config = op.get("config") if isinstance(op, Mapping) else None
        if isinstance(config, Mapping) and isinstance(config.get("customer"), str):
            return str(config["customer"])
    return None


def deliver(site: Site, about: str | None, message: Message, log: Callable[[str], None],
            skip: set[str] | None = None) -> bool:
    """Given whom an alert is about and its message, send it to each of that one's
    destinations and log each outcome; destinations named in `skip` are left for later and
    one that fails is added to it. Return False when a destination was skipped (the alert is
    still due), True otherwise: sent, given up by send's bounded retries, or no destination
    configured (then it is only logged). Never raises."""
    dests = alert_destinations(site, about)
    if not dests:
        log(f"alert not sent (no notify.slack or drill.slack for {about or 'the site'}): "
            f"{message.summary}")
        return True
    done = True
    for dest in dests:
        name = dest.describe()
        if skip is not None and name in skip:
            done = False
            continue
        delivery = send(dest, message)
        log(f"alert {message.summary!r}: {delivery}")
        if not delivery.delivered and skip is not None:
            skip.add(name)
    return done


# --- run failures ------------------------------------------------------------------------------


def _steps(events: Iterable[dg.DagsterEvent]) -> list[FailedStep]:
    steps = []
    for event in events:
        data = event.step_failure_data
        user = data.user_failure_data
        metadata = {k: getattr(v, "value", v) for k, v in (user.metadata if user else {}).items()}
        steps.append(FailedStep(event.step_key, user.description if user else None, metadata,
                                data.error.to_string() if data.error else None))
    return steps


def failure_alert(site: Site, run: dg.DagsterRun, step_failures: Iterable[dg.DagsterEvent],
                  run_message: str | None,
                  step_assets: Mapping[str, list[str]]) -> tuple[str | None, Message]:
    """Given a failed run, its STEP_FAILURE events, the run's failure message and which asset
    keys each step produces, return (whom it is about, the message): customer, job, the
    failed asset or item, the one-line reason, a link to the run."""
    steps = _steps(step_failures)
    first = next((s for s in steps if s.description), steps[0] if steps else None)
    assets = step_assets.get(first.step_key or "", []) if first else []
    item, reason = failure_facts(first, assets, run_message)
    about = run_customer(site, run.job_name, assets, run.run_config or {})
    job = "a run" if run.job_name.startswith("__") else run.job_name
    return about, run_failure_message(about or "axe", job, item, reason,
                                      dagster_run_url(webserver_base_url(site, about),
                                                      run.run_id))


def cli_alert_tags() -> dict[str, str]:
    """Return the tags of a run an `axe` command runs itself: it posts the run's failure (the
    sensor leaves the run to it while its process lives)."""
    return {ALERT_TAG: ALERT_BY_CLI}


def left_to_cli(run: dg.DagsterRun) -> bool:
    """Given a failed run, return True when its alert is not the sensor's to send: the `axe`
    process that ran it posted it already, or is alive and will (a process killed before it
    could post leaves it to the sensor)."""
    state = run.tags.get(ALERT_TAG)
    if state == ALERT_SENT:
        return True
    if state != ALERT_BY_CLI:
        return False
    owner = ProcessRecord.from_dict({"host": run.tags.get(HOST_TAG), "pid": run.tags.get(PID_TAG),
                                     "start": run.tags.get(PID_START_TAG, "")})
    return owner is not None and not owner.gone


def alert_run_failure(site: Site, instance: dg.DagsterInstance, run_id: str,
                      step_assets: Mapping[str, list[str]],
                      log: Callable[[str], None], *, retried: bool = False) -> bool:
    """Given a run an `axe` command ran (no code location origin: a daemon's run-failure
    sensor may never see it, and a cron-only site runs no sensor), post its failure to Slack
    once, as the sensor would, and tag it sent first so the sensor does not post it again;
    `retried` (another attempt follows) only tags it. Return True when it was a failed run
    not posted before. Never raises for Slack."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status != dg.DagsterRunStatus.FAILURE or \
            run.tags.get(ALERT_TAG) == ALERT_SENT:
        return False
    instance.add_run_tags(run_id, {ALERT_TAG: ALERT_SENT})
    if retried:
        log(f"run {run_id[:8]} failed and is tried again: no alert for it")
        return False
    steps = [e.dagster_event for e in instance.all_logs(
        run_id, of_type=dg.DagsterEventType.STEP_FAILURE) if e.dagster_event]
    ends = [e for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            if e.dagster_event]
    about, message = failure_alert(site, run, steps,
                                   ends[-1].dagster_event.message if ends else None, step_assets)
    deliver(site, about, message, log)
    return True


def alert_drill_failure(site: Site, customer_name: str, run_id: str) -> bool:
    """Given the run id of a drill `axe drill` ran and failed, post it as alert_run_failure
    does; return what it returns."""
    from axe_pipelines.assets.drill import build_drill_asset  # assets/drill imports the CLI's

    steps = step_assets(dg.Definitions(assets=[build_drill_asset(site, customer_name)]))
    return alert_run_failure(site, dg.DagsterInstance.get(), run_id, steps,
                             logging.getLogger(__name__).info)


def build_run_failure_sensor(site: Site,
                             step_assets: Mapping[str, list[str]]) -> dg.SensorDefinition:
    """Given the site and which asset keys (`a/b/c`) each step (op) produces, return the
    run-failure sensor for every job of this code location and for the runs `axe` commands
    start themselves (they carry no code location origin; left to the command while its
    process lives: left_to_cli)."""

    # monitor_all_code_locations: without it the daemon's sensor skips every run whose
    # origin is not this location (run_status_sensor_definition.py), i.e. all of the CLI's
    # execute_in_process runs. One code location per site, so "all" is this site's.
    @dg.run_failure_sensor(name=RUN_FAILURE_SENSOR, minimum_interval_seconds=30,
                           default_status=dg.DefaultSensorStatus.RUNNING,
                           monitor_all_code_locations=True,
                           description="Posts each failed run (customer, job, the failed "
                                       "asset or item, the reason, a link) to Slack.")
    def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        if left_to_cli(run):
            context.log.info(f"run {run.run_id[:8]}: posted by the axe command that ran it")
            return
        about, message = failure_alert(site, run, context.get_step_failure_events(),
                                       context.failure_event.message, step_assets)
        deliver(site, about, message, context.log.info)

    return alert_on_run_failure


# --- failed checks and stale tiers -------------------------------------------------------------


def check_alerts(site: Site, instance: dg.DagsterInstance,
                 check_keys: Iterable[dg.AssetCheckKey]) -> list[Alert]:
    """Given the instance and the checks to watch, return an Alert for each check whose latest
    evaluation failed with severity ERROR (keyed by that evaluation)."""
    alerts = []
    for key in check_keys:
        record = instance.get_latest_asset_check_evaluation_record(key)
        if record is None or record.status.value != "FAILED" or record.event is None:
            continue
        evaluation = record.event.asset_check_evaluation
        if evaluation is None or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        asset = key.asset_key.to_user_string()
        about = key_owner(site, key.asset_key.path)
        url = dagster_asset_url(webserver_base_url(site, about), asset, view="checks")
        alerts.append(Alert(event_key("check", asset, key.name, record.id), about,
                            check_failure_message(about or "axe", asset, key.name, "ERROR",
                                                  evaluation.description, url)))
    return alerts


def _zone(site: Site, about: str | None) -> ZoneInfo:
    customer = site.customers.get(about or "")
    if customer is not None and customer.backs_up:
        return ZoneInfo(tier_timezone(customer))
    return ZoneInfo(customer.timezone if customer else DEFAULT_TIMEZONE)


def freshness_alerts(site: Site, instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey],
                     now: datetime) -> list[Alert]:
    """Given the instance, the tier assets to watch and now, return an Alert for each whose
    recorded freshness state is FAIL (keyed by when it went FAIL)."""
    alerts = []
    records = instance.get_freshness_state_records(list(keys)) if keys else {}
    for key in keys:
        record = records.get(key)
        if record is None or record.freshness_state.value != "FAIL":
            continue
        asset = key.to_user_string()
        about = key_owner(site, key.path)
        latest = instance.get_latest_materialization_event(key)
        updated = (datetime.fromtimestamp(latest.timestamp, UTC).astimezone(_zone(site, about))
                   if latest is not None else None)
        url = dagster_asset_url(webserver_base_url(site, about), asset)
        alerts.append(Alert(
            event_key("freshness", asset, int(record.updated_at.timestamp())), about,
            freshness_message(about or "axe", asset, "FAIL", updated, url, now=now)))
    return alerts


def alert_tick(site: Site, alerts: list[Alert], cursor: str | None,
               log: Callable[[str], None]) -> tuple[int, str]:
    """Given this tick's alerts and the sensor's cursor, send those not sent before and return
    (how many were handled, the new cursor). An alert whose destination already failed in
    this tick stays due for the next one."""
    sent = load_sent_keys(cursor)
    failed: set[str] = set()
    handled = [a.key for a in new_events(sent, alerts, lambda a: a.key)
               if deliver(site, a.about, a.message, log, failed)]
    return len(handled), dump_sent_keys(remember(sent, handled))


def build_alert_sensor(site: Site, check_keys: Sequence[dg.AssetCheckKey],
                       freshness_keys: Sequence[dg.AssetKey]) -> dg.SensorDefinition:
    """Given the checks and the tier assets (with freshness policies) to watch, return the
    sensor that posts failed ERROR checks and tiers gone stale."""

    @dg.sensor(name=ALERT_SENSOR, minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Posts each asset check that failed with ERROR, and each tier whose "
                           "freshness went FAIL, to Slack (once per event).")
    def alert_on_checks_and_freshness(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        alerts = check_alerts(site, context.instance, check_keys) + freshness_alerts(
            site, context.instance, freshness_keys, datetime.now(UTC))
        handled, cursor = alert_tick(site, alerts, context.cursor, context.log.info)
        return dg.SensorResult(cursor=cursor, skip_reason=None if handled else
                               "no new failed check or stale tier")

    return alert_on_checks_and_freshness


# --- wiring ------------------------------------------------------------------------------------


def _watched(defs: dg.Definitions) -> tuple[dict[str, list[str]], list[dg.AssetCheckKey],
                                            list[dg.AssetKey]]:
    """The step -> asset keys map, every check key, and the tier assets with a freshness
    policy, read off the code location's definitions."""
    step_assets: dict[str, list[str]] = {}
    checks: list[dg.AssetCheckKey] = []
    fresh: list[dg.AssetKey] = []
    for item in defs.assets or ():
        if isinstance(item, dg.AssetsDefinition):
            if item.is_executable:
                step_assets[item.op.name] = sorted(k.to_user_string() for k in item.keys)
            checks += item.check_keys
            specs = list(item.specs)
        else:
            specs = [item] if isinstance(item, dg.AssetSpec) else []
        fresh += [s.key for s in specs if s.freshness_policy is not None and len(s.key.path) == 3
                  and (s.key.path[1] in TIER_PARTS or s.key.path[0] == "peers")]
    for check_def in defs.asset_checks or ():
        checks += check_def.check_keys
        step_assets[check_def.op.name] = sorted(k.asset_key.to_user_string()
                                                for k in check_def.check_keys)
    return step_assets, sorted(set(checks), key=str), sorted(set(fresh), key=str)


def step_assets(defs: dg.Definitions) -> dict[str, list[str]]:
    """Given definitions, return which asset keys (`a/b/c`) each of their steps produces."""
    return _watched(defs)[0]


def alert_definitions(site: Site, defs: dg.Definitions) -> dg.Definitions:
    """Given the site and its code location's other definitions, return the two alert
    sensors watching them; empty when the site backs up nobody."""
    if not site.backed_up_customers():
        return dg.Definitions()
    step_assets, checks, fresh = _watched(defs)
    return dg.Definitions(sensors=[build_run_failure_sensor(site, step_assets),
                                   build_alert_sensor(site, checks, fresh)])
