"""A server's `wal:` block in customers.yaml (issue 13): continuous WAL archiving into a spool
folder, pushed into tier A every few minutes. Without it a server has no WAL archiving and
nothing about it changes. README "Point-in-time recovery" shows the server side."""

from __future__ import annotations

from pydantic import Field, model_validator

from axe_pipelines import config_rules as rules
from axe_pipelines.config_tiers import StrictModel


class WalArchiving(StrictModel):
    """Where the server's archive_command puts WAL files, and how often axe pushes them."""

    spool: rules.AbsolutePath = Field(description="the spool folder as axe sees it (for an "
                                      "exec: server, the host side of the container's "
                                      "mounted volume)")
    server_spool: rules.AbsolutePath | None = Field(
        None, description="the same folder as the server sees it (inside its container); "
        "default: spool")
    push_every_minutes: int = Field(5, ge=1, le=60, description="how often the pusher backs "
                                    "the spool up into tier A")
    freshness_minutes: int | None = Field(
        None, ge=1, description="the RPO: the WAL asset is stale when no WAL arrived for this "
        "long; default: 2 x push_every_minutes + 5")
    archive_timeout_s: int = Field(60, ge=1, le=3600, description="the server's "
                                   "archive_timeout axe doctor expects at most")
    batch_files: int = Field(256, ge=1, le=4096, description="WAL files per snapshot")
    replay_timeout_s: float = Field(3600, gt=0, description="a point-in-time restore fails "
                                    "when the staging cluster has not reached the target "
                                    "time within this long")

    @property
    def rpo_minutes(self) -> int:
        """Return after how many minutes without new WAL the WAL asset is stale."""
        return self.freshness_minutes or 2 * self.push_every_minutes + 5

    @property
    def spool_on_server(self) -> str:
        """Return the spool's path as the server (and its archive_command) sees it."""
        return str(self.server_spool or self.spool)

    @model_validator(mode="after")
    def _v_rpo(self) -> WalArchiving:
        if self.freshness_minutes is not None and self.freshness_minutes <= \
                self.push_every_minutes:
            raise ValueError(f"freshness_minutes ({self.freshness_minutes}) must be more than "
                             f"push_every_minutes ({self.push_every_minutes}): WAL arrives "
                             f"only that often")
        return self


def wal_problems(customers: dict) -> list[str]:
    """Given the parsed customers (name -> Customer), return the WAL settings that cannot
    work: a server with `wal:` in a customer without tier A, or two servers sharing one
    spool (their segment names collide)."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name, customer in customers.items():
        for server_name, server in customer.servers.items():
            if server.wal is None:
                continue
            where = f"{name}.servers.{server_name}.wal"
            if customer.tiers is None:
                problems.append(f"{where}: WAL is pushed into tier A; add tiers.local")
            spool = str(server.wal.spool.expanduser())
            if spool in seen:
                problems.append(f"{where}.spool: {spool} is also the spool of {seen[spool]}; "
                                f"give each server a spool of its own")
            seen.setdefault(spool, f"{name}.servers.{server_name}")
    return problems
