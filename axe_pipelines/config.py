"""`customers.yaml`: the model (`Site`), loading and validation with errors that name the
field.

The file is a mapping of customer name to customer (README "customers.yaml" shows one). A
customer we back up has `servers`, `databases`, `folders` and `tiers`; a ring peer has the
seed's `ring_backup:` block, which parses unchanged. Unknown keys are errors. Cron and time
zone checks are in cron.py.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from axe_pipelines import config_rules as rules
from axe_pipelines.config_errors import ConfigError, format_error
from axe_pipelines.config_ops import Notify
from axe_pipelines.config_tiers import StrictModel, Tiers
from axe_pipelines.config_wal import WalArchiving, wal_problems
from axe_pipelines.cron import check_cron, check_timezone
from axe_pipelines.notify.slack import SlackDestination
from axe_pipelines.secrets import SecretSource

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
DEFAULT_TIMEZONE = "Asia/Seoul"
DEFAULT_CONFIG_PATHS = (Path("customers.yaml"), Path("~/.axe/customers.yaml"))




class Server(StrictModel):
    """A PostgreSQL server (or container) reached by host/port, a unix socket dir, or an exec
    prefix such as `docker exec -i -e PGPASSWORD frame-postgres`."""

    host: str | None = Field(None, description="host name, IP, or unix socket directory")
    port: int = Field(5432, ge=1, le=65535)
    user: str | None = None
    password: SecretSource | None = None
    exec: list[str] | None = Field(
        None, description="argv prefix that runs client tools where the server is"
    )
    bin_dir: Path | None = Field(
        None, description="folder of pg_dump/psql/pg_restore; default: PATH, then newest "
        "/usr/lib/postgresql/*/bin"
    )
    roles: bool = Field(True, description="back up roles with pg_dumpall --globals-only")
    dumpall: bool = Field(False, description="also keep a plain pg_dumpall of the whole server")
    container: str | None = Field(None, description="the seed's name for it, e.g. frame-postgres")
    maintenance_db: str = Field("postgres", min_length=1, description="database the roles and "
                                "pg_dumpall dumps connect through (not a backed-up one)")
    physical: bool = Field(False, description="also a physical base backup (pg_basebackup) "
                           "of the whole server into tier A (postgres/physical.py)")
    physical_schedule: str | None = Field(None, description="cron (the tier's zone) of the "
                                          "base backup's own job; default: with the nightly set")
    physical_max_age_hours: float | None = Field(
        None, gt=0, description="base_backup_current fails when the newest base backup is "
        "older; default: tiers.local.freshness_hours, or 192 (8 days) with physical_schedule")

    _v_physical_cron = field_validator("physical_schedule")(
        lambda v: check_cron(v) if v is not None else v)
    wal: WalArchiving | None = Field(None, description="continuous WAL archiving for "
                                     "point-in-time restores (config_wal.py)")


class IntegrityQuery(StrictModel):
    """A named SQL check whose result rows must equal `expect` (when given)."""

    name: str = Field(pattern=NAME_PATTERN)
    sql: str
    expect: list[list[Any]] | None = None


class IntegrityCommand(StrictModel):
    """A named check run as a command (an argv list, never a shell) whose exit status decides
    (0 passes). It gets the checked database in PGHOST, PGPORT, PGDATABASE, PGUSER (and
    PGPASSWORD) in its environment; its output is kept with the result."""

    name: str = Field(pattern=NAME_PATTERN)
    command: list[str] = Field(min_length=1)
    timeout: float = Field(300, gt=0)


class Database(StrictModel):
    """A database to dump nightly, on one of the customer's servers, with its integrity
    checks and what to run after a restore."""

    server: str
    dbname: rules.DbName = Field(None, description="database name; default: the entry's name")
    format: Literal["custom", "plain"] = "custom"
    integrity: list[IntegrityQuery | IntegrityCommand] = Field(default_factory=list)
    aliases: list[str] = Field(
        default_factory=list,
        description="other names `axe restore --target` accepts (the runbook's container "
        "name, e.g. frame-postgres); `<name>-postgres` is always accepted")
    post_restore: list[list[str]] = Field(
        default_factory=list,
        description="commands (argv lists) run after a restore of this database, e.g. "
        "[docker, compose, restart, frame-mcp-blue, frame-mcp-green]")
    checksum_tables: list[str] = Field(default_factory=list, description="tables whose "
                                       "content digest the dump records (drill compares)")


class Folder(StrictModel):
    """A folder to back up; a `required` one missing is a failed item and a coverage gap."""

    path: rules.AbsolutePath
    excludes_file: rules.AbsolutePath | None = None
    required: bool = True


class Drill(StrictModel):
    """The restore drill (issue 9): when, where it restores (default: a throwaway server it
    starts and removes), where its evidence goes, whom it tells; README "Restore drill"."""

    schedule: str = "0 3 15 1,4,7,10 *"  # Jan/Apr/Jul/Oct 15 03:00 in the tier's zone
    staging: Server | None = Field(None, description="an existing staging server instead")
    staging_port: int | None = Field(None, ge=1, le=65535)
    work_dir: Path | None = Field(None, description="staging and fetched copies; default: "
                                  "the system temp folder")
    evidence_dir: Path = Path("~/.axe/drills")
    slack: SlackDestination | None = None
    sample_files: int = Field(20, ge=1, description="folders: files hashed when the folder "
                              "is larger than sample_bytes (else every file)")
    sample_bytes: int = Field(256 << 20, ge=0)

    _v_cron = field_validator("schedule")(check_cron)


class RingBackup(StrictModel):
    """The seed's `ring_backup:` block, verbatim, plus optional ssh settings."""

    ssh_user: rules.UserName
    ssh_fqdn: rules.HostName
    ssh_ip: rules.IpAddress | None = None
    receive_dir_at_peer: str
    receive_dir_at_self: rules.AbsolutePath
    restic_version: str | None = None
    disk_available_gib: float | None = None
    bidirectional_ssh: bool = False
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_key: Path = Path("~/.ssh/id_ed25519")
    known_hosts: Path | None = None
    password: SecretSource | None = None


class Customer(StrictModel):
    """One entry of customers.yaml: a customer this site backs up, or a ring peer."""

    timezone: str = DEFAULT_TIMEZONE
    servers: dict[str, Server] = Field(default_factory=dict)
    databases: dict[str, Database] = Field(default_factory=dict)
    folders: dict[str, Folder] = Field(default_factory=dict)
    tiers: Tiers | None = None
    ring_backup: RingBackup | None = None
    drill: Drill = Field(default_factory=Drill)
    notify: Notify = Field(default_factory=Notify)  # alerts (config_ops.py)

    _v_tz = field_validator("timezone")(check_timezone)

    @field_validator("servers", "databases", "folders")
    @classmethod
    def _v_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(
                    f"name {name!r} must be lower-case letters, digits, '-' or '_'"
                )
        return value

    @model_validator(mode="after")
    def _v_refs(self) -> Customer:
        for name, db in self.databases.items():
            if db.server not in self.servers:
                known = ", ".join(sorted(self.servers)) or "none defined"
                raise ValueError(
                    f"databases.{name}.server: unknown server {db.server!r} (servers: {known})"
                )
        if (self.databases or self.folders) and self.tiers is None:
            raise ValueError("tiers.local is required for a customer with databases or folders")
        return self

    @property
    def backs_up(self) -> bool:
        """True for a customer whose data this site backs up (it has tier A)."""
        return self.tiers is not None

    def database_name(self, db: str) -> str:
        """Given a database's config name, return its name on the server (`dbname`)."""
        return self.databases[db].dbname or db


class Site(StrictModel):
    """The whole customers.yaml of this site (and where it was read from)."""

    customers: dict[str, Customer]
    path: Path | None = None

    def customer(self, name: str) -> Customer:
        """Given a customer name, return that customer. Raise ConfigError listing the known
        ones when there is none by that name."""
        if name not in self.customers:
            known = ", ".join(sorted(self.customers))
            raise ConfigError(self.path or "customers.yaml",
                              [f"unknown customer {name!r} (customers: {known})"])
        return self.customers[name]

    def backed_up_customers(self) -> list[str]:
        """Return the names of the customers this site backs up (they have tier A), sorted."""
        return sorted(name for name, c in self.customers.items() if c.backs_up)

    def to_back_up(self, wanted: str | None = None) -> list[str]:
        """Given `--customer` (None: all), return the customers a command backs up. Raise
        ConfigError when that customer is unknown or has no tier A, or when none has."""
        if wanted:
            if not self.customer(wanted).backs_up:
                raise ConfigError(self.path or "customers.yaml",
                                  [f"{wanted}: has no tiers.local; nothing to back up"])
            return [wanted]
        names = self.backed_up_customers()
        if not names:
            raise ConfigError(self.path or "customers.yaml",
                              ["no customer has tiers.local; nothing to back up"])
        return names

    def peers(self) -> dict[str, RingBackup]:
        """Return every ring peer (a customer with a ring_backup block) by name."""
        return {n: c.ring_backup for n, c in self.customers.items() if c.ring_backup}


def tier_timezone(customer: Customer) -> str:
    """Given a customer with tier A, return the zone its schedules and logical times use."""
    assert customer.tiers is not None
    return customer.tiers.local.timezone or customer.timezone


def freshness_window(customer: Customer) -> timedelta:
    """Given a customer with tier A, return how old its newest set may be before it is stale."""
    assert customer.tiers is not None
    return timedelta(hours=customer.tiers.local.freshness_hours)


def repository_id(location: str | Path) -> str:
    """Given a repository location, return a short stable id for it (Dagster pools and run
    tags)."""
    return hashlib.sha1(str(location).encode()).hexdigest()[:10]


def parse_config(data: Any, path: Path | str = "customers.yaml") -> Site:
    """Given already-loaded YAML data, return the Site. Raise ConfigError with one line per
    bad field (its dotted path and what is wrong)."""
    if not isinstance(data, dict) or not data:
        raise ConfigError(path, ["the file must be a mapping of customer name to settings"])
    problems: list[str] = []
    customers: dict[str, Customer] = {}
    for name, body in data.items():
        if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
            problems.append(f"{name}: customer names are lower-case letters, digits, '-' or '_'")
            continue
        if misplaced := rules.top_level_problem(name, body):
            problems.append(misplaced)
            continue
        try:
            customers[name] = Customer.model_validate(body if body is not None else {})
        except ValidationError as exc:
            seen: set[str] = set()
            for err in exc.errors():
                line = f"{name}.{format_error(err)}"
                if line not in seen:
                    seen.add(line)
                    problems.append(line)
    if problems or (problems := rules.site_problems(customers) + _label_clashes(customers)
                                     + wal_problems(customers)):
        raise ConfigError(path, problems)
    return Site(customers=customers, path=Path(path))


def _label_clashes(customers: dict[str, Customer]) -> list[str]:
    # node_labels plans tier A (backup.py), which imports this module: import it when used.
    from axe_pipelines.node_labels import label_clashes

    return label_clashes(customers)


def load_config(path: Path | str | None = None) -> Site:
    """Given `--config` (or None), load customers.yaml from it, else $AXE_CONFIG,
    ./customers.yaml or ~/.axe/customers.yaml, and return the Site. Raise ConfigError when
    none is found, it is not YAML (with line and column), or a field is bad."""
    candidates = [Path(path)] if path else []
    if not candidates and os.environ.get("AXE_CONFIG"):
        candidates = [Path(os.environ["AXE_CONFIG"])]
    if not candidates:
        candidates = [p.expanduser() for p in DEFAULT_CONFIG_PATHS]
    for candidate in candidates:
        candidate = candidate.expanduser()
        if candidate.is_file():
            break
    else:
        tried = ", ".join(str(c) for c in candidates)
        raise ConfigError(tried, ["no customers.yaml found; pass --config or set AXE_CONFIG"])
    try:
        data = rules.load_yaml(candidate.read_text(), candidate)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ConfigError(candidate, [f"not valid YAML at {where}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(candidate, [f"not valid YAML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError(candidate, [f"cannot read: {exc.strerror}"]) from None
    return parse_config(data, candidate)
