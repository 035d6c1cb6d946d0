"""customers.yaml settings for operations (issue 10), apart so config.py stays one screenful
of the backup itself: what each tier keeps and how much of it the weekly `restic check`
reads (`CareSettings`, part of every tier's model), and where alerts go (`Notify`).

    tiers:
      local:
        retention: {keep_daily: 14, keep_weekly: 8, keep_monthly: 12}
        check_read_parts: 12       # the weekly check reads 1/12 of the data: all in 12 weeks
    notify:
      slack: {webhook: {env: AXE_SLACK_WEBHOOK}}
      webserver_base_url: http://backup-host:3000

Alerts go to `notify.slack`, else to the drill's `drill.slack` (one destination for both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from axe_pipelines.care.policy import RetentionPolicy
from axe_pipelines.notify.slack import SlackDestination

if TYPE_CHECKING:
    from axe_pipelines.config import Customer, Site

DEFAULT_CHECK_READ_PARTS = 12  # a quarter: each week's check reads one twelfth of the packs


class CareSettings(BaseModel):
    """What every tier keeps (`retention`, None: nothing is ever forgotten there) and how the
    weekly `restic check` reads it (`check_read_parts` n: part k/n a week, all in n weeks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention: RetentionPolicy | None = Field(
        None, description="restic keep rules applied per item by the weekly retention job "
        "and `axe prune`; none: keep everything")
    check_read_parts: int = Field(
        DEFAULT_CHECK_READ_PARTS, ge=1, le=520, description="the weekly restic check reads "
        "--read-data-subset k/n with this n: the whole repository every n weeks (1: all "
        "of it every week)")


class Notify(BaseModel):
    """Where this customer's alerts go (failed runs, ERROR checks, a stale tier) and the
    Dagster UI address their links point at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack: SlackDestination | None = Field(
        None, description="default: the drill's drill.slack; neither: alerts are only logged")
    webserver_base_url: str | None = Field(
        None, description="the Dagster UI as the operators open it, e.g. "
        "http://backup-host:3000; links in alerts start here")

    @field_validator("webserver_base_url")
    @classmethod
    def _v_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webserver_base_url {value!r} must be an http:// or https:// URL")
        return value.rstrip("/")


def alert_destination(customer: Customer) -> SlackDestination | None:
    """Given a customer, return where its alerts go: `notify.slack`, else the drill's
    `drill.slack`, else None (alerts are then only logged)."""
    drill = getattr(customer, "drill", None)
    return customer.notify.slack or (drill.slack if drill is not None else None)


def webserver_base_url(site: Site, customer_name: str | None) -> str | None:
    """Given the site and a customer (None: a site-wide alert), return the Dagster UI address
    for links: the customer's `notify.webserver_base_url`, else the first one any customer
    gives (one UI serves the whole site), else None."""
    if customer_name in site.customers:
        own = site.customers[customer_name].notify.webserver_base_url
        if own:
            return own
    return next((c.notify.webserver_base_url for _, c in sorted(site.customers.items())
                 if c.notify.webserver_base_url), None)


def alert_destinations(site: Site, name: str | None) -> list[SlackDestination]:
    """Given the site and whom an alert is about (a customer this site backs up, a ring peer,
    or None for the site), return where it goes: that customer's destination; for a peer or
    the site, every distinct destination any customer has. [] when none is configured."""
    if name in site.customers and site.customers[name].backs_up:
        own = alert_destination(site.customers[name])
        return [own] if own is not None else []
    found: dict[str, SlackDestination] = {}
    for _, customer in sorted(site.customers.items()):
        dest = alert_destination(customer)
        if dest is not None:
            found.setdefault(dest.model_dump_json(), dest)
    return list(found.values())
