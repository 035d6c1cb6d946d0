"""config_rules.py: each rule `axe config validate` applies so that what would fail at 03:00
fails (or warns) when customers.yaml is read, naming the YAML path and what is allowed."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from axe_pipelines.config import ConfigError, load_config, parse_config
from axe_pipelines.config_rules import site_warnings
from axe_pipelines.peer import link

LOCAL = {"repository": "/r", "password": {"env": "X"}}
PEER = {"ssh_user": "realchoice", "ssh_fqdn": "realchoice.invalid", "ssh_ip": "192.0.2.10",
        "receive_dir_at_peer": "/peer-backups/axe/", "receive_dir_at_self": "/srv/in"}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def customer(**settings: Any) -> dict[str, Any]:
    return {"axe": {"tiers": {"local": LOCAL}, **settings}}


def test_a_key_given_twice_in_one_mapping_is_refused_with_its_path_and_lines(tmp_path: Path):
    path = tmp_path / "customers.yaml"
    path.write_text(textwrap.dedent("""\
        axe:
          databases:
            frame:
              server: frame-postgres
              server: index-postgres
          tiers:
            local: {repository: /r, password: {env: X}}
        axe:
          timezone: UTC
        """))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        "axe.databases.frame.server: key given twice (lines 4 and 5); YAML would silently "
        "keep only the last one: keep one",
        "axe: key given twice (lines 1 and 8); YAML would silently keep only the last one: "
        "keep one"]
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("settings", "where"), [
    ({"folders": {"files": {"path": "files"}}}, "axe.folders.files.path"),
    ({"folders": {"files": {"path": "/f", "excludes_file": "excl"}}},
     "axe.folders.files.excludes_file"),
    ({"tiers": {"local": {**LOCAL, "repository": "backups/local"}}},
     "axe.tiers.local.repository"),
    ({"tiers": {"local": LOCAL, "cold": {"password": {"env": "C"}, "mount_glob": "cold-*"}}},
     "axe.tiers.cold.mount_glob"),
])
def test_relative_paths_are_refused(settings: dict[str, Any], where: str):
    (line,) = problems({"axe": {"tiers": {"local": LOCAL}, **settings}})
    assert line.startswith(f"{where}: ") and "is a relative path; give an absolute path (or " \
        "one starting with ~)" in line


def test_a_relative_receive_dir_is_refused_and_home_paths_are_fine():
    (line,) = problems({"realchoice": {"ring_backup": {**PEER, "receive_dir_at_self": "in"}}})
    assert line.startswith("realchoice.ring_backup.receive_dir_at_self: 'in' is a relative path")
    site = parse_config(customer(folders={"files": {"path": "~/.local/files"}}))
    assert site.customer("axe").folders["files"].path == Path("~/.local/files")


def test_password_and_excludes_files_that_are_not_files_are_warnings(tmp_path: Path):
    good = tmp_path / "pw"
    good.write_text("x\n")
    site = parse_config({"axe": {
        "servers": {"db": {"host": "h", "password": {"file": str(tmp_path)}}},
        "folders": {"files": {"path": "/f", "excludes_file": str(tmp_path / "excl")}},
        "tiers": {"local": {**LOCAL, "password": {"file": str(good)}},
                  "cold": {"password": {"file": str(tmp_path / "cold-pw")}}}}})
    assert site_warnings(site) == [
        f"axe.servers.db.password.file: password file {tmp_path} is a directory, not a file",
        f"axe.folders.files.excludes_file: excludes file {tmp_path / 'excl'} does not exist "
        f"(yet); the tier using it fails until it does",
        f"axe.tiers.cold.password.file: password file {tmp_path / 'cold-pw'} does not exist "
        f"(yet); the tier using it fails until it does"]


@pytest.mark.parametrize(("field", "value", "says"), [
    ("ssh_fqdn", "-oProxyCommand=touch /tmp/x", "is not a host name or IP address"),
    ("ssh_fqdn", "realchoice macmini", "is not a host name or IP address"),
    ("ssh_fqdn", "a..b", "is not a host name or IP address"),
    ("ssh_ip", "realchoice.invalid", "is not an IP address (IPv4 like 100.114.161.51 or IPv6)"),
    ("ssh_ip", "100.114.161.256", "is not an IP address"),
    ("ssh_user", "-oProxyCommand=x", "is not a user name"),
])
def test_ssh_addresses_that_are_no_host_or_ip_are_refused(field: str, value: str, says: str):
    (line,) = problems({"realchoice": {"ring_backup": {**PEER, field: value}}})
    assert line.startswith(f"realchoice.ring_backup.{field}: {value!r} {says}")


def test_good_ssh_addresses_and_ssh_gets_the_host_after_a_double_dash():
    site = parse_config({**customer(tiers={"local": LOCAL, "ring": {}}),
                         "realchoice": {"ring_backup": {**PEER, "ssh_fqdn": "100.114.161.51",
                                                        "ssh_ip": "fd7a:115c::1"}},
                         "other": {"ring_backup": {**PEER, "ssh_fqdn": "mac-mini.ts.net."}}})
    argv = link(site, "axe", "realchoice").ssh_argv("100.114.161.51")
    assert argv[-2:] == ["--", "100.114.161.51"]
    sftp = link(site, "axe", "realchoice").repository("fd7a:115c::1").extra_args[1]
    assert sftp.endswith("-s -- fd7a:115c::1 sftp")


def test_a_ring_tier_needs_known_peers():
    assert problems(customer(tiers={"local": LOCAL, "ring": {}})) == [
        "axe.tiers.ring: no ring peer to push to (ring peers: none: no customer has a "
        "ring_backup block); add the peer's ring_backup block or remove tiers.ring"]
    peer = {"realchoice": {"ring_backup": PEER}}
    assert problems({**customer(tiers={"local": LOCAL, "ring": {"peers": ["realchoise"]}}),
                     **peer}) == ["axe.tiers.ring.peers: unknown peer(s) 'realchoise' (ring "
                                  "peers: realchoice)"]
    assert problems({**customer(tiers={"local": LOCAL, "ring": {"peers": []}}), **peer}) == [
        "axe.tiers.ring.peers: names no peer (ring peers: realchoice)"]
    assert parse_config({**customer(tiers={"local": LOCAL, "ring": {}}), **peer})


def test_the_cold_password_spelled_another_way_is_still_tier_as(tmp_path: Path,
                                                                   monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "local").write_text("x\n")
    (tmp_path / "link").symlink_to(tmp_path / "keys" / "local")
    local = {"repository": "/r", "password": {"file": str(tmp_path / "keys" / "local")}}
    for spelled in ("~/keys/local", f"{tmp_path}/keys/../keys/local", str(tmp_path / "link")):
        found = problems({"axe": {"tiers": {"local": local,
                                            "cold": {"password": {"file": spelled}}}}})
        assert len(found) == 1 and found[0].startswith(
            "axe.tiers: cold.password is the same source as local.password"), spelled
    (tmp_path / "keys" / "cold").write_text("y\n")
    assert parse_config({"axe": {"tiers": {"local": local, "cold": {
        "password": {"file": str(tmp_path / "keys" / "cold")}}}}})


def test_host_and_exec_together_is_a_warning():
    site = parse_config(customer(servers={
        "frame-postgres": {"host": "127.0.0.1", "exec": ["docker", "exec", "-i", "pg"]},
        "index-postgres": {"exec": ["docker", "exec", "-i", "pg"]}}))
    assert site_warnings(site) == [
        "axe.servers.frame-postgres: both host and exec: the tools run through `docker exec`, "
        "so host '127.0.0.1' is looked up from there, not from this machine; give one of them "
        "(exec alone uses the container's own socket)"]


@pytest.mark.parametrize("dbname", ["host=evil dbname=frame", "postgresql://evil/frame",
                                    "postgres://x"])
def test_a_dbname_libpq_would_read_as_a_connection_string_is_refused(dbname: str):
    (line,) = problems(customer(servers={"s": {"host": "h"}},
                                databases={"frame": {"server": "s", "dbname": dbname}}))
    assert line == (f"axe.databases.frame.dbname: {dbname!r} would be read by libpq as a "
                    f"connection string (it contains '=' or starts with postgres:// or "
                    f"postgresql://); give the plain database name")


def test_cron_ranges_of_names_are_accepted():
    site = parse_config(customer(tiers={"local": {**LOCAL, "schedule": "0 3 * * mon-fri"}}))
    assert site.customer("axe").tiers.local.schedule == "0 3 * * mon-fri"
    (line,) = problems(customer(tiers={"local": {**LOCAL, "schedule": "0 3 * * mon-fry"}}))
    assert line == ("axe.tiers.local.schedule: cron '0 3 * * mon-fry': cannot read 'mon-fry' "
                    "in the day of week field (numbers 0-7; names: sun-sat)")


def test_an_unknown_top_level_key_says_so():
    found = problems({**customer(), "timezone": "Asia/Seoul", "tiers": {"local": LOCAL}})
    assert [p.split(" (")[0] for p in found] == [
        "timezone: unknown customer setting or misspelled key",
        "tiers: unknown customer setting or misspelled key"]
    assert "the top level holds customer names" in found[0]
    assert not any("valid dictionary" in p for p in found)


@pytest.mark.parametrize("subdir", ["..", ".", "...", "-x", ".hidden", "a/b", "../x"])
def test_a_cold_subdir_that_is_not_one_folder_inside_the_volume_is_refused(subdir: str):
    (line,) = problems(customer(tiers={"local": LOCAL, "cold": {
        "password": {"env": "C"}, "repo_subdir": subdir}}))
    assert line.startswith("axe.tiers.cold.repo_subdir: ") and "one folder name inside " \
        "the volume" in line
