"""The tier settings of customers.yaml (`tiers.local`, `tiers.ring`, `tiers.cold`) and the
strict base model every customers.yaml model uses (unknown keys are errors, values frozen).
The rest of the model is in config.py."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from axe_pipelines import config_rules as rules
from axe_pipelines.config_ops import CareSettings
from axe_pipelines.cron import check_cron, check_timezone
from axe_pipelines.secrets import SecretSource


class StrictModel(BaseModel):
    """A customers.yaml mapping: unknown keys are errors, values are frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalTier(StrictModel, CareSettings):
    """Tier A: the local repository, its password, the nightly schedule and freshness."""

    repository: rules.AbsolutePath
    password: SecretSource
    schedule: str = "0 3 * * *"
    timezone: str | None = None
    freshness_hours: float = Field(26, gt=0)
    parallel_servers: int = Field(2, ge=1, le=16)
    parallel_items: int = Field(2, ge=1, le=8, description="items of one server backed up at "
                                "once (issue 12: two measured faster than one on two cores)")
    # Bounds of tier A (issue 8): a hung disk or pipe fails the item instead of the night.
    timeout_s: float = Field(43200, gt=0, description="wall bound on one restic call")
    idle_timeout_s: float = Field(300, gt=0, description="a restic call (with its pg_dump) "
                                  "whose bytes read stay put this long is stopped (restic "
                                  "counts a chunk of up to 8 MiB when it is done)")
    wait_timeout_s: float = Field(3600, gt=0, description="how long a run waits for a live "
                                  "run holding the repository's pool slot, then fails")

    _v_cron = field_validator("schedule")(check_cron)

    @field_validator("timezone")
    @classmethod
    def _v_tz(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)


class RingTier(StrictModel, CareSettings):
    """Tier B: `restic copy` of the night's set to ring peers over sftp (issue 3)."""

    schedule: str = "30 3 * * *"
    peer_check_schedule: str = Field(
        "15 */6 * * *", description="when the peer_now check looks at each peer between the "
        "nightly pushes (ssh, and the latest set there)")
    peers: list[str] | None = Field(
        None, description="ring peers (customers with ring_backup) to push to; default: all")
    password: SecretSource | None = Field(
        None, description="password of our repository at the peer; default: the peer's "
        "ring_backup.password, else tier A's")
    timeout_s: float = Field(3600, gt=0, description="bound on one restic call at the peer")
    connect_timeout_s: int = Field(10, ge=1, le=300)
    alive_interval_s: int = Field(10, ge=1, le=300,
                                  description="ssh ServerAliveInterval: a dead link fails "
                                  "after interval x alive_count_max seconds")
    alive_count_max: int = Field(3, ge=1, le=30)
    retries: int = Field(2, ge=0, le=10, description="retries of a failed run (transient faults)")
    retry_delay_s: float = Field(300, ge=0)
    inbound_freshness_hours: float = Field(26, gt=0)

    _v_cron = field_validator("schedule", "peer_check_schedule")(check_cron)


QUARTER_DAYS = 92  # the longest quarter (Jul-Sep, Oct-Dec)


class ColdTier(StrictModel, CareSettings):
    """Tier C: rotating cold SSDs, synced by a sensor when mounted (issue 3)."""

    password: SecretSource = Field(description="kept apart from tier A's (the runbook keeps "
                                   "it on paper, not in the vault)")
    mount_glob: rules.AbsoluteGlob = "/Volumes/axe-cold-*"
    volumes: int = Field(3, ge=1, le=12)
    repo_subdir: rules.SubdirName = "restic-repo"
    accept_plain_folders: bool = Field(
        False, description="count a folder that is not a mount point as a volume (tests, demo)")
    rotation_start_year: int = Field(
        2026, ge=2000, le=2100, description="Q1 of this year expects volume #1; from then on "
        "every quarter moves on to the next volume, wrapping over `volumes`")
    rotation_start: str | None = Field(
        None, pattern=r"^\d{4}-Q[1-4]$", description="the quarter that expects volume #1, "
        "e.g. 2026-Q4 for a site whose first sync is in Oct-Dec 2026 (instead of "
        "rotation_start_year, which means its Q1)")
    rotation_grace_days: float = Field(
        14, ge=0, description="slack on top of the rotation period before a volume is overdue")
    rotation_days: float | None = Field(
        None, gt=0, description="a volume not synced for this long is overdue; default: its "
        "rotation period (volumes x 92 days, the longest quarter) + rotation_grace_days")
    timeout_s: float = Field(3600, gt=0, description="bound on one restic call on a volume")
    sensor_interval_s: int = Field(30, ge=5)

    @property
    def rotation_period_days(self) -> float:
        """How long a volume waits for its next turn: one quarter per volume in the rotation
        (92 days, the longest quarter)."""
        return self.volumes * QUARTER_DAYS

    @property
    def overdue_days(self) -> float:
        """Return after how many days without a sync a volume is overdue."""
        return self.rotation_days or self.rotation_period_days + self.rotation_grace_days

    @property
    def rotation_origin(self) -> str:
        """Return the quarter that expects volume #1, `YYYY-Qn`: `rotation_start`, else Q1 of
        `rotation_start_year`."""
        return self.rotation_start or f"{self.rotation_start_year}-Q1"

    @model_validator(mode="after")
    def _v_one_start(self) -> ColdTier:
        if {"rotation_start", "rotation_start_year"} <= self.model_fields_set:
            raise ValueError("give rotation_start (e.g. 2026-Q4) or rotation_start_year, not "
                             "both: they say the same thing")
        return self


class Tiers(StrictModel):
    """The tiers of a customer we back up: local always, ring and cold when configured."""

    local: LocalTier
    ring: RingTier | None = None
    cold: ColdTier | None = None

    @model_validator(mode="after")
    def _v_cold_password(self) -> Tiers:
        if self.cold is not None and rules.same_source(self.cold.password, self.local.password):
            raise ValueError(
                f"cold.password is the same source as local.password "
                f"({self.local.password.describe()}); the cold SSDs' password must be kept "
                f"apart from tier A's (the runbook keeps it on paper, off the vault): give "
                f"tiers.cold.password its own source")
        return self
