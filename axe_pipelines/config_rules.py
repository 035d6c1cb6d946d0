"""Rules of customers.yaml that catch at `axe config validate` what would otherwise fail at
03:00: duplicate keys (YAML lets the last one win silently), relative paths (resolved against
whatever folder axe was started from), host names ssh would read as options, database names
libpq would read as connection strings, a cold sub-folder that climbs out of its volume, ring
tiers without peers, the cold password spelled as tier A's, and files that are not there yet.

The field rules are pydantic `Annotated` types config.py uses; `duplicate_keys` works on the
parsed YAML nodes (so it knows the YAML path and line); `site_problems` and `site_warnings`
look across customers once the models are built.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel

from axe_pipelines.config_errors import ConfigError
from axe_pipelines.secrets import FileSource, SecretSource

if TYPE_CHECKING:
    from axe_pipelines.config import Customer, Site


# --- duplicate keys ----------------------------------------------------------------------------


def load_yaml(text: str, path: Path | str) -> Any:
    """Given the text of customers.yaml (read from `path`), return its data. Raise
    ConfigError with one line per key given twice in one mapping (its YAML path and lines),
    or yaml.YAMLError if it is not YAML."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        problems = list(duplicate_keys(node)) if node is not None else []
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    if problems:
        raise ConfigError(path, problems)
    return data


def duplicate_keys(node: yaml.Node, path: str = "") -> Iterator[str]:
    """Given a composed YAML node, yield one line per mapping key given twice: its dotted path,
    the lines of both, and that the last one would silently win."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name != "<<":
                here = f"{path}.{name}" if path else name
                line = key.start_mark.line + 1
                if name in seen:
                    yield (f"{here}: key given twice (lines {seen[name]} and {line}); YAML "
                           f"would silently keep only the last one: keep one")
                else:
                    seen[name] = line
                yield from duplicate_keys(value, here)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from duplicate_keys(item, f"{path}[{index}]")


# --- field rules -------------------------------------------------------------------------------


def _absolute(value: Path) -> Path:
    if not value.expanduser().is_absolute():
        raise ValueError(f"{str(value)!r} is a relative path; give an absolute path (or one "
                         f"starting with ~): a relative one would depend on the folder axe is "
                         f"started from")
    return value


def _absolute_glob(value: str) -> str:
    _absolute(Path(value))
    return value


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253 or not all(_LABEL.match(p) for p in name.split(".")):
        raise ValueError(f"{value!r} is not a host name or IP address (letters, digits and "
                         f"'-' in dot-separated labels, e.g. realchoice-macmini.tail090015."
                         f"ts.net, or 100.114.161.51)")
    return value


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (IPv4 like 100.114.161.51 or "
                         f"IPv6); put a host name in ssh_fqdn") from None
    return value


def _user(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$", value):
        raise ValueError(f"{value!r} is not a user name (letters, digits, '.', '_', '-'; not "
                         f"starting with '-')")
    return value


def _dbname(value: str | None) -> str | None:
    if value is not None and ("=" in value or value.startswith(("postgres://",
                                                                "postgresql://"))):
        raise ValueError(f"{value!r} would be read by libpq as a connection string (it "
                         f"contains '=' or starts with postgres:// or postgresql://); give "
                         f"the plain database name")
    return value


def _subdir(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$", value):
        raise ValueError(f"{value!r} must be one folder name inside the volume (letters, "
                         f"digits, '.', '_', '-'; not '.', '..' or starting with '.' or '-'), "
                         f"e.g. restic-repo")
    return value


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]
AbsoluteGlob = Annotated[str, AfterValidator(_absolute_glob)]
HostName = Annotated[str, AfterValidator(_host)]
IpAddress = Annotated[str, AfterValidator(_ip)]
UserName = Annotated[str, AfterValidator(_user)]
DbName = Annotated[str | None, AfterValidator(_dbname)]
SubdirName = Annotated[str, AfterValidator(_subdir)]


def same_source(a: SecretSource, b: SecretSource) -> bool:
    """Given two password sources, return True when they are the same source, however spelled:
    password files compared by their resolved path (`~`, `..`, symlinks), others by value."""
    if isinstance(a, FileSource) and isinstance(b, FileSource):
        return os.path.realpath(a.file.expanduser()) == os.path.realpath(b.file.expanduser())
    return a == b


# --- across customers --------------------------------------------------------------------------


def top_level_problem(name: str, body: Any) -> str | None:
    """Given a top-level key and its value, return its problem when it cannot be a customer
    (a setting put at the top level, or a misspelled key), else None."""
    from axe_pipelines.config import Customer

    if body is None or (isinstance(body, dict) and name not in Customer.model_fields):
        return None
    return (f"{name}: unknown customer setting or misspelled key (the top level holds "
            f"customer names, each a mapping of {', '.join(Customer.model_fields)}; a "
            f"setting goes under its customer)")


def site_problems(customers: dict[str, Customer]) -> list[str]:
    """Given the parsed customers, return the problems only visible across them: a ring tier
    naming peers without a ring_backup block, or with no peer at all."""
    peers = sorted(n for n, c in customers.items() if c.ring_backup is not None)
    known = ", ".join(peers) or "none: no customer has a ring_backup block"
    problems = []
    for name, customer in customers.items():
        ring = customer.tiers.ring if customer.tiers else None
        if ring is None:
            continue
        if ring.peers is None and not [p for p in peers if p != name]:
            problems.append(f"{name}.tiers.ring: no ring peer to push to (ring peers: {known}); "
                            f"add the peer's ring_backup block or remove tiers.ring")
        elif ring.peers is not None:
            unknown = [p for p in ring.peers if p not in peers or p == name]
            if unknown or not ring.peers:
                problems.append(f"{name}.tiers.ring.peers: "
                                + (f"unknown peer(s) {', '.join(map(repr, unknown))}"
                                   if unknown else "names no peer")
                                + f" (ring peers: {known})")
    return problems


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, BaseModel):
        for field in type(value).model_fields:
            yield from _walk(getattr(value, field), f"{path}.{field}")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def _file_warning(path: Path, what: str) -> str | None:
    full = path.expanduser()
    if not full.is_absolute():
        return f"{what} {path} is a relative path: it is looked up from the current folder"
    if full.is_dir():
        return f"{what} {full} is a directory, not a file"
    if not full.exists():
        return f"{what} {full} does not exist (yet); the tier using it fails until it does"
    return None


def site_warnings(site: Site) -> list[str]:
    """Given a valid Site, return one warning per password file or excludes file that is not
    a file now (missing, a directory, relative): they may appear later, so they do not make
    the file invalid, but every run needing them fails until they do. Also per server with
    both `host` and `exec` (the tools run where `exec` puts them, so the host is looked up
    from there)."""
    warnings = []
    for name, customer in site.customers.items():
        for server_name, server in customer.servers.items():
            if server.host is not None and server.exec:
                warnings.append(f"{name}.servers.{server_name}: both host and exec: the tools "
                                f"run through `{' '.join(server.exec[:2])}`, so host "
                                f"{server.host!r} is looked up from there, not from this "
                                f"machine; give one of them (exec alone uses the container's "
                                f"own socket)")
        for path, value in _walk(customer, name):
            if isinstance(value, FileSource):
                found = _file_warning(value.file, "password file")
                path += ".file"
            elif path.endswith(".excludes_file") and isinstance(value, Path):
                found = _file_warning(value, "excludes file")
            else:
                continue
            if found:
                warnings.append(f"{path}: {found}")
    return warnings
