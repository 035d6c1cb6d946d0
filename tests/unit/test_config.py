"""config.py, cron.py and config_errors.py without files on disk: name rules, cron and zone
checks, how validation errors are worded, which customers a command backs up."""

from __future__ import annotations

import re

import pytest

from axe_pipelines.config import ConfigError, parse_config
from axe_pipelines.cron import check_cron, check_timezone

LOCAL = {"repository": "/r", "password": {"env": "X"}}


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


@pytest.mark.parametrize("cron", ["0 3 * * *", "30 3 * * 1-5", "15 */6 * * *",
                                  "0,30 0-23/2 1,15 1-12 0-7", "0 3 * * mon-fri",
                                  "0 3 1 JAN,apr-jun sun"])
def test_good_cron_expressions(cron):
    assert check_cron(cron) == cron


@pytest.mark.parametrize(("cron", "says"), [
    ("0 3 * *", "must have 5 fields"),
    ("0 24 * * *", "'24' is outside 0-23 (hour)"),
    ("61 3 * * *", "'61' is outside 0-59 (minute)"),
    ("0 3 0 * *", "'0' is outside 1-31 (day of month)"),
    ("0 3 * 13 *", "'13' is outside 1-12 (month)"),
    ("0 3 * * 8", "'8' is outside 0-7 (day of week)"),
    ("*/0 3 * * *", "bad step '0' in the minute field"),
    ("0 3 * * mun", "cannot read 'mun' in the day of week field (numbers 0-7; names: "
                    "sun-sat)"),
    ("0 1-2-3 * * *", "cannot read '1-2-3' in the hour field"),
])
def test_bad_cron_expressions_name_the_field(cron, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        check_cron(cron)


def test_time_zones():
    assert check_timezone("Asia/Seoul") == "Asia/Seoul"
    for bad in ("Asia/Sooul", "KST+9", "../etc"):
        with pytest.raises(ValueError, match="use an IANA name like Asia/Seoul"):
            check_timezone(bad)


def test_name_rules_for_customers_servers_databases_and_folders():
    assert problems({"Axe": {}}) == ["Axe: customer names are lower-case letters, digits, "
                                     "'-' or '_'"]
    found = problems({"axe": {"servers": {"Frame_PG": {}}, "tiers": {"local": LOCAL}}})
    assert found == ["axe.servers: name 'Frame_PG' must be lower-case letters, digits, '-' "
                     "or '_'"]
    assert problems([]) == ["the file must be a mapping of customer name to settings"]


def test_errors_name_the_dotted_path_without_the_password_sources_tag():
    found = problems({"axe": {"tiers": {"local": {"repository": "/r",
                                                  "password": {"env": "bad name"}}}}})
    assert len(found) == 1 and found[0].startswith("axe.tiers.local.password.env: ")
    assert problems({"axe": {"tiers": {"local": {"password": {"env": "X"}}}}}) == [
        "axe.tiers.local.repository: required field is missing"]
    assert problems({"axe": {"tiers": {"local": LOCAL}, "folder": {}}}) == [
        "axe.folder: unknown key (check the spelling; see README 'customers.yaml')"]


def test_a_config_error_is_one_headline_and_one_line_per_problem():
    err = ConfigError("/etc/axe/customers.yaml", ["a: bad", "b: worse"])
    assert str(err) == "/etc/axe/customers.yaml: 2 problem(s):\n  - a: bad\n  - b: worse"
    assert err.exit_code == 2


def test_which_customers_a_command_backs_up():
    site = parse_config({"axe": {"tiers": {"local": LOCAL}},
                         "axe-b": {"tiers": {"local": {**LOCAL, "repository": "/b"}}},
                         "realchoice": {"ring_backup": {
                             "ssh_user": "u", "ssh_fqdn": "p.invalid",
                             "receive_dir_at_peer": "/in/", "receive_dir_at_self": "/in"}}})
    assert site.to_back_up() == ["axe", "axe-b"] and site.to_back_up("axe-b") == ["axe-b"]
    with pytest.raises(ConfigError, match="realchoice: has no tiers.local; nothing to back up"):
        site.to_back_up("realchoice")
    with pytest.raises(ConfigError, match=r"unknown customer 'nope' \(customers: axe, axe-b, "
                                          r"realchoice\)"):
        site.to_back_up("nope")
    peers_only = parse_config({"realchoice": {"ring_backup": {
        "ssh_user": "u", "ssh_fqdn": "p.invalid", "receive_dir_at_peer": "/in/",
        "receive_dir_at_self": "/in"}}})
    with pytest.raises(ConfigError, match="no customer has tiers.local; nothing to back up"):
        peers_only.to_back_up()


def test_cold_rotation_limits():
    cold = parse_config({"axe": {"tiers": {"local": LOCAL, "cold": {
        "password": {"file": "/p"}, "volumes": 4}}}}).customer("axe").tiers.cold
    assert cold.rotation_period_days == 4 * 92 and cold.overdue_days == 4 * 92 + 14
    assert cold.model_copy(update={"rotation_days": 100}).overdue_days == 100
