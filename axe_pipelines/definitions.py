"""Dagster definitions built from customers.yaml ($AXE_CONFIG, ./customers.yaml or
~/.axe/customers.yaml). `workspace.yaml` loads `defs` from here."""

from __future__ import annotations

import dagster as dg

from axe_pipelines.assets.tier_a import PROGRESS_RESOURCE, build_tier_a
from axe_pipelines.assets.tier_b import build_inbound_all, build_tier_b
from axe_pipelines.assets.tier_c import build_tier_c
from axe_pipelines.config import Site, load_config
from axe_pipelines.jobs import restore_job, tier_a_job
from axe_pipelines.schedules import tier_a_schedule


def build_definitions(config: Site) -> dg.Definitions:
    """Assets, checks, jobs and schedules for every customer this site backs up."""
    assets, jobs, schedules = [], [], []
    for name in config.backed_up_customers():
        customer = config.customers[name]
        assets.append(build_tier_a(name, customer))
        job = tier_a_job(name, customer)
        jobs.append(job)
        schedules.append(tier_a_schedule(name, customer, job))
    if config.backed_up_customers():
        jobs.append(restore_job(config))
    # Tiers B and C (issue 3): ring pushes, the peers' inbound pushes, cold SSDs.
    checks: list = []
    sensors: list = []
    for name in config.backed_up_customers():
        b_assets, b_checks, b_jobs, b_schedules = build_tier_b(config, name)
        c_assets, c_checks, c_jobs, c_schedules, c_sensors = build_tier_c(config, name)
        assets += b_assets + c_assets
        checks += b_checks + c_checks
        jobs += b_jobs + c_jobs
        schedules += b_schedules + c_schedules
        sensors += c_sensors
    inbound_specs, inbound_checks, inbound_sensors = build_inbound_all(config)
    assets += inbound_specs
    checks += inbound_checks
    sensors += inbound_sensors
    return dg.Definitions(
        assets=assets, jobs=jobs, schedules=schedules, asset_checks=checks, sensors=sensors,
        # Runs launched by the CLI pass a terminal reporter; runs from the UI log instead.
        resources={PROGRESS_RESOURCE: dg.ResourceDefinition.hardcoded_resource(None)},
    )


def load_definitions() -> dg.Definitions:
    return build_definitions(load_config())


def __getattr__(name: str) -> dg.Definitions:
    # `defs` is built on first access, so importing this module (the CLI does) reads no config.
    if name == "defs":
        return load_definitions()
    raise AttributeError(name)
