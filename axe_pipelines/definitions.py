"""Dagster definitions built from customers.yaml ($AXE_CONFIG, ./customers.yaml or
~/.axe/customers.yaml). `workspace.yaml` loads `defs` from here.

One `dg.Definitions` per tier and customer (tier A, tier B with the peers' inbound pushes,
tier C, the restore job), merged with `dg.Definitions.merge` into the code location.
"""

from __future__ import annotations

import dagster as dg

from axe_pipelines.assets.care import care_definitions
from axe_pipelines.assets.drill import build_drill_asset, build_drill_job
from axe_pipelines.assets.tier_a import build_tier_a
from axe_pipelines.assets.tier_b import build_tier_b_asset, inbound_spec
from axe_pipelines.assets.tier_c import build_tier_c_asset
from axe_pipelines.assets.wal import wal_definitions
from axe_pipelines.checks.physical import own_jobs_and_schedules
from axe_pipelines.checks.tier_b import build_arriving_check, build_peer_now_check
from axe_pipelines.checks.tier_c import build_volumes_current_check
from axe_pipelines.cold import cold_settings
from axe_pipelines.config import Site, load_config, tier_timezone
from axe_pipelines.jobs import restore_job, tier_a_backup_job, tier_b_jobs, tier_c_jobs
from axe_pipelines.names import DRILL_LISTENER_RESOURCE, PROGRESS_RESOURCE, tier_c_op
from axe_pipelines.peer import ring_settings
from axe_pipelines.ring import ring_peers
from axe_pipelines.schedules import (
    cold_rotation_daily,
    restore_drill_quarterly,
    tier_a_nightly,
    tier_b_schedules,
)
from axe_pipelines.sensors.alerts import alert_definitions
from axe_pipelines.sensors.cold import build_cold_sensor
from axe_pipelines.sensors.inbound import build_inbound_sensor


def tier_a_definitions(site: Site, customer_name: str) -> dg.Definitions:
    """Given a customer with tier A, return its tier-A asset, job and nightly schedule."""
    customer = site.customer(customer_name)
    job = tier_a_backup_job(customer_name, customer)
    own_jobs, own_schedules = own_jobs_and_schedules(customer_name, customer)  # physical
    return dg.Definitions(assets=[build_tier_a(customer_name, customer)], jobs=[job, *own_jobs],
                          schedules=[tier_a_nightly(customer_name, customer, job),
                                     *own_schedules])


def tier_b_definitions(site: Site, customer_name: str) -> dg.Definitions:
    """Given a customer, return its pushes to each ring peer with their checks, jobs and
    schedules; empty without `tiers.ring` or without peers."""
    customer = site.customer(customer_name)
    if not (customer.tiers and customer.tiers.ring):
        return dg.Definitions()
    peers = ring_peers(site, customer_name)
    if not peers:
        return dg.Definitions()
    checks = [build_peer_now_check(site, customer_name, p) for p in peers]
    push, look = tier_b_jobs(customer_name, customer, checks)
    return dg.Definitions(assets=[build_tier_b_asset(site, customer_name, p) for p in peers],
                          asset_checks=checks, jobs=[push, look],
                          schedules=tier_b_schedules(customer_name, customer, push, look))


def inbound_definitions(site: Site) -> dg.Definitions:
    """Return what every ring peer pushes to us (asset, `arriving` check, sensor); empty when
    no customer here has tier B (then no inbound expectations either)."""
    hours = max((ring_settings(c).inbound_freshness_hours for c in site.customers.values()
                 if c.tiers and c.tiers.ring), default=None)
    if hours is None:
        return dg.Definitions()
    peers = sorted(site.peers().items())
    return dg.Definitions(
        assets=[inbound_spec(peer, block, hours) for peer, block in peers],
        asset_checks=[build_arriving_check(peer, block, hours) for peer, block in peers],
        sensors=[build_inbound_sensor(peer, block, hours, site.customers[peer].timezone)
                 for peer, block in peers])


def tier_c_definitions(site: Site, customer_name: str) -> dg.Definitions:
    """Given a customer, return its tier-C asset, volumes_current check, jobs, daily schedule
    and mount sensor; empty without `tiers.cold`."""
    customer = site.customer(customer_name)
    if not (customer.tiers and customer.tiers.cold):
        return dg.Definitions()
    cold = cold_settings(customer_name, customer)
    check = build_volumes_current_check(customer_name, cold, tier_timezone(customer))
    sync, rotation = tier_c_jobs(customer_name, customer, check)
    return dg.Definitions(
        assets=[build_tier_c_asset(site, customer_name)], asset_checks=[check],
        jobs=[sync, rotation],
        schedules=[cold_rotation_daily(customer_name, customer, rotation)],
        sensors=[build_cold_sensor(customer_name, cold, sync, tier_c_op(customer_name))])


def drill_definitions(site: Site, customer_name: str) -> dg.Definitions:
    """Given a customer with tier A, return its restore drill: the asset with its
    restorable_everywhere check, its job and its quarterly schedule."""
    job = build_drill_job(customer_name, site)
    return dg.Definitions(
        assets=[build_drill_asset(site, customer_name)], jobs=[job],
        schedules=[restore_drill_quarterly(customer_name, site.customer(customer_name), job)])


def build_definitions(site: Site) -> dg.Definitions:
    """Given customers.yaml, return the code location: every tier of every customer this
    site backs up, the peers' inbound pushes and the restore job."""
    names = site.backed_up_customers()
    parts = [dg.Definitions(
        # Runs launched by the CLI pass a terminal reporter; runs from the UI log instead.
        resources={PROGRESS_RESOURCE: dg.ResourceDefinition.hardcoded_resource(None),
                   DRILL_LISTENER_RESOURCE: dg.ResourceDefinition.hardcoded_resource(None)})]
    parts += [tier_a_definitions(site, n) for n in names]
    parts += [tier_b_definitions(site, n) for n in names]
    parts += [tier_c_definitions(site, n) for n in names]
    parts += [care_definitions(site, n) for n in names]  # retention, restic check
    parts += [drill_definitions(site, n) for n in names]
    parts += [wal_definitions(site, n) for n in names]  # WAL archiving (issue 13)
    parts.append(inbound_definitions(site))
    if names:
        parts.append(dg.Definitions(jobs=[restore_job(site)]))
    watched = dg.Definitions.merge(*parts)
    return dg.Definitions.merge(watched, alert_definitions(site, watched))


def load_definitions() -> dg.Definitions:
    """Return the definitions of the customers.yaml found the usual way (load_config)."""
    return build_definitions(load_config())


def __getattr__(name: str) -> dg.Definitions:
    # `defs` is built on first access, so importing this module (the CLI does) reads no config.
    if name == "defs":
        return load_definitions()
    raise AttributeError(name)
