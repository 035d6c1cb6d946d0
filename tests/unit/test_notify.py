"""axe_pipelines.notify without a network: the destination model, the Slack payload, the
one-line reason, the message builders and the dedup of alerts across sensor ticks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from axe_pipelines.notify import (
    Message,
    SlackDestination,
    check_failure_message,
    dagster_asset_url,
    dagster_run_url,
    dedupe,
    drill_message,
    dump_sent_keys,
    event_key,
    format_age,
    freshness_message,
    load_sent_keys,
    new_events,
    one_line_reason,
    remember,
    run_failure_message,
    slack_payload,
)
from axe_pipelines.notify.message import HEADER_LIMIT, SECTION_LIMIT, table_text

SEOUL = ZoneInfo("Asia/Seoul")

# What Dagster 1.13 writes for a step whose ItemFailed was raised from a CalledProcessError
# (SerializableErrorInfo.to_string(), captured from a real run of the formatter).
DAGSTER_STEP_ERROR = """\
dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred while executing op "x":

Stack Trace:
  File "/venv/site-packages/dagster/_core/execution/plan/utils.py", line 56, in op_execution_error_boundary
  File "/work/axe_pipelines/ring.py", line 15, in f

The above exception was caused by the following exception:
axe_pipelines.errors.ItemFailed: tier B: cannot reach peer (ssh exit 255); retry at 03:30

Stack Trace:
  File "/work/axe_pipelines/ring.py", line 12, in f

The above exception was caused by the following exception:
subprocess.CalledProcessError: Command '['ssh']' returned non-zero exit status 255.

Stack Trace:
  File "/usr/lib/python3.11/subprocess.py", line 571, in run
    raise CalledProcessError(retcode, process.args,
"""  # noqa: E501

# The step's failure after RetryRequested ran out (execute_plan.py: "Exceeded max_retries").
DAGSTER_MAX_RETRIES = """\
Exceeded max_retries of 2

Stack Trace:
  File "/venv/site-packages/dagster/_core/execution/plan/execute_plan.py", line 245, in x

The above exception was caused by the following exception:
axe_pipelines.errors.ItemFailed: tier B: restic copy to realchoice failed (exit 1): Fatal: wrong password

Stack Trace:
  File "/work/axe_pipelines/ring.py", line 300, in push
"""  # noqa: E501

PYTHON_CHAINED = """\
Traceback (most recent call last):
  File "/work/axe_pipelines/cold.py", line 10, in sync
    os.statvfs(path)
FileNotFoundError: [Errno 2] No such file or directory: '/Volumes/axe-cold-2'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/work/axe_pipelines/cold.py", line 12, in sync
    raise Unusable("tier C: /Volumes/axe-cold-2 vanished mid-sync") from exc
axe_pipelines.errors.Unusable: tier C: /Volumes/axe-cold-2 vanished mid-sync; remount and rerun
"""


# -- SlackDestination ---------------------------------------------------------------------------

def test_destination_webhook_and_token_shapes() -> None:
    hook = SlackDestination.model_validate({"webhook": {"env": "SLACK_WEBHOOK"}})
    assert (hook.timeout_s, hook.retries, hook.base_url) == (10, 3, None)
    assert hook.describe() == "Slack webhook (environment variable SLACK_WEBHOOK)"
    bot = SlackDestination.model_validate(
        {"token": {"keychain": "axe.slack"}, "channel": "#ops",
         "base_url": "http://127.0.0.1:9/api/"})
    assert bot.base_url == "http://127.0.0.1:9/api"
    assert bot.describe() == "Slack chat.postMessage to #ops (macOS Keychain item 'axe.slack')"


@pytest.mark.parametrize(("config", "says"), [
    ({}, "exactly one of: webhook, token"),
    ({"webhook": {"env": "A"}, "token": {"env": "B"}, "channel": "#x"}, "exactly one of"),
    ({"token": {"env": "B"}}, "needs a channel"),
    ({"webhook": {"env": "A"}, "channel": "#ops"}, "drop channel"),
    ({"webhook": "https://hooks.slack.com/services/T/B/inline"}, "password source"),
    ({"webhook": {"env": "A"}, "base_url": "ftp://x"}, "http:// or https://"),
    ({"webhook": {"env": "A"}, "retries": 0}, "greater than or equal to 1"),
    ({"webhook": {"env": "A"}, "colour": "red"}, "Extra inputs"),
])
def test_destination_rejects(config: dict, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        SlackDestination.model_validate(config)


# -- payload ------------------------------------------------------------------------------------

def test_payload_has_status_summary_table_bullets_link() -> None:
    message = Message("axe: restore drill passed (2 items)", ok=True,
                      columns=["database", "tier"], rows=[["frame", "local"], ["hive", "cold"]],
                      bullets=["hive: local failed (pack truncated), served by cold"],
                      bullets_title="Fallbacks", link="http://ui:3000/runs/r1|x")
    payload = slack_payload(message)
    assert payload["text"] == ":large_green_circle: axe: restore drill passed (2 items)"
    header, table, bullets, link = payload["blocks"]
    assert header["type"] == "header" and header["text"]["text"] == payload["text"]
    assert table["text"]["text"] == (
        "```\ndatabase  tier\n--------------\nframe     local\nhive      cold\n```")
    assert bullets["text"]["text"] == (
        "*Fallbacks*\n• hive: local failed (pack truncated), served by cold")
    assert link["text"]["text"] == "<http://ui:3000/runs/r1%7Cx|Open in Dagster>"
    json.dumps(payload)  # what is posted


def test_failed_status_and_minimal_message() -> None:
    payload = slack_payload(Message("frame dump failed", ok=False))
    assert payload["text"].startswith(":red_circle: ")
    assert [b["type"] for b in payload["blocks"]] == ["header"]


def test_table_aligns_wide_characters_and_neutralises_markup() -> None:
    text = table_text(["db", "note"], [["인덱스", "a`b`c"], ["x", "<!channel> & co"]])
    lines = text.splitlines()
    # Hangul takes two columns in monospace: "인덱스" (6 columns) pads like "x" + 5 spaces.
    assert lines[3].startswith("인덱스  a'b'c")
    assert lines[4] == "x       &lt;!channel&gt; &amp; co"
    assert "`" not in text.strip("`")


def test_long_table_is_cut_under_the_section_limit_with_a_count() -> None:
    rows = [[f"db{i:04}", "x" * 60, str(i)] for i in range(500)]
    payload = slack_payload(Message("many", ok=True, columns=["db", "snapshot", "n"], rows=rows))
    text = payload["blocks"][1]["text"]["text"]
    assert len(text) <= SECTION_LIMIT and text.endswith("\n```")
    shown = sum(1 for line in text.splitlines() if line.startswith("db0"))
    assert f"… {500 - shown} more rows" in text
    assert 0 < shown < 500
    assert "x" * 41 not in text  # a long cell is cut to the cell width


def test_escaping_never_pushes_a_section_over_the_limit() -> None:
    rows = [["&" * 40] * 6 for _ in range(300)]  # each & becomes &amp; (5 characters)
    bullets = ["<" * 800] * 50
    payload = slack_payload(Message("&" * 400, ok=False, columns=["c"] * 6, rows=rows,
                                    bullets=bullets))
    header, *sections = payload["blocks"]
    assert len(header["text"]["text"]) <= HEADER_LIMIT
    for section in sections:
        assert len(section["text"]["text"]) <= SECTION_LIMIT
    assert "more rows" in sections[0]["text"]["text"]
    assert sections[1]["text"]["text"].endswith("more")


def test_one_row_too_many_says_row() -> None:
    rows = [["r" * 40] * 5 for _ in range(15)]  # lines of 208 characters: 14 fit
    text = table_text([], rows)
    assert text.endswith("\n… 1 more row\n```") and len(text) <= SECTION_LIMIT
    assert sum(1 for line in text.splitlines() if line.startswith("r")) == 14


def test_short_table_is_not_cut() -> None:
    text = table_text(["a"], [["1"], ["2"]])
    assert "more" not in text and text.count("\n") == 5


# -- one_line_reason ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "reason"), [
    (DAGSTER_STEP_ERROR, "tier B: cannot reach peer (ssh exit 255); retry at 03:30"),
    (DAGSTER_MAX_RETRIES,
     "tier B: restic copy to realchoice failed (exit 1): Fatal: wrong password"),
    (PYTHON_CHAINED, "tier C: /Volumes/axe-cold-2 vanished mid-sync; remount and rerun"),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
     "KeyError: 'frame'\n", "KeyError: 'frame'"),
    ("tier A: repository locked\n  lock held by pid 42 on host mini\n",
     "tier A: repository locked"),
    ("first line\nsecond line", "first line"),
    ("  padded   words  ", "padded words"),
    ('Execution of run for "axe_tier_b" failed. Steps failed: [\'b\'].',
     'Execution of run for "axe_tier_b" failed. Steps failed: [\'b\'].'),
    ("Exceeded max_retries of 3\n", "Exceeded max_retries of 3"),
    ("", "no reason given"),
    (None, "no reason given"),
])
def test_one_line_reason(text: str | None, reason: str) -> None:
    assert one_line_reason(text) == reason


def test_one_line_reason_is_bounded() -> None:
    reason = one_line_reason("x" * 5000)
    assert len(reason) == 300 and reason.endswith("…")


# -- builders -----------------------------------------------------------------------------------

def test_run_failure_message() -> None:
    url = dagster_run_url("http://mini:3000/", "abc-123")
    assert url == "http://mini:3000/runs/abc-123"
    message = run_failure_message("axe", "axe_tier_b", "axe/tier_b/realchoice",
                                  DAGSTER_MAX_RETRIES, url)
    assert message.summary == "axe: axe_tier_b failed at axe/tier_b/realchoice"
    assert not message.ok and message.link == url
    assert message.bullets == ("reason: tier B: restic copy to realchoice failed (exit 1): "
                               "Fatal: wrong password",)
    assert run_failure_message("axe", "j", None, None, None).summary == "axe: j failed"
    assert dagster_run_url(None, "abc") is None


def test_check_failure_message() -> None:
    url = dagster_asset_url("http://mini:3000", "axe/tier_a/local", view="checks")
    assert url == "http://mini:3000/assets/axe/tier_a/local?view=checks"
    message = check_failure_message("axe", "axe/tier_a/local", "coverage", "error",
                                    "index-postgres is not in the set\n  (configured: 4)", url)
    assert message.summary == "axe: check coverage ERROR on axe/tier_a/local"
    assert message.bullets == ("index-postgres is not in the set",)
    assert message.link == url and not message.ok


def test_freshness_message_failed_and_recovered() -> None:
    last = datetime(2026, 5, 20, 3, 0, 42, tzinfo=SEOUL)
    failed = freshness_message("axe", "axe/tier_b/realchoice", "FAIL", last, None,
                               now=last + timedelta(hours=30))
    assert failed.summary == "axe: axe/tier_b/realchoice freshness FAIL" and not failed.ok
    assert failed.bullets == ("last updated 2026-05-20 03:00+09:00 (30 h ago)",)
    again = freshness_message("axe", "axe/tier_b/realchoice", "pass", last, None)
    assert again.ok and again.summary.endswith("fresh again")
    assert again.bullets == ("last updated 2026-05-20 03:00+09:00",)
    never = freshness_message("axe", "axe/tier_c/cold", "FAIL", None, None)
    assert never.bullets == ("never updated",)


def test_drill_message_table_from_rows() -> None:
    rows = [{"database": "frame", "tier": "local", "rto_s": 12.345, "checks": "5/5"},
            {"database": "index", "tier": "cold", "rto_s": None, "fallback": "yes"}]
    message = drill_message("axe", False, rows, ["index: local failed (pack truncated)"])
    assert message.summary == "axe: restore drill FAILED (2 items)"
    assert message.columns == ("database", "tier", "rto_s", "checks", "fallback")
    assert message.rows == (("frame", "local", "12.3", "5/5", "-"),
                            ("index", "cold", "-", "-", "yes"))
    assert message.bullets_title == "Fallbacks"
    ok = drill_message("axe", True, rows[:1], [])
    assert ok.ok and ok.summary == "axe: restore drill passed (1 item)" and not ok.bullets_title


@pytest.mark.parametrize(("seconds", "said"), [
    (-5, "0 s"), (45, "45 s"), (700, "12 min"), (30 * 3600, "30 h"), (9 * 86400, "9 d")])
def test_format_age(seconds: float, said: str) -> None:
    assert format_age(seconds) == said


# -- dedup --------------------------------------------------------------------------------------

def _key(event: dict) -> str:
    return event_key("run", event["run"], event["step"])


def test_dedupe_sends_each_event_once_across_ticks() -> None:
    tick1 = [{"run": "r1", "step": "b"}, {"run": "r1", "step": "b"}, {"run": "r2", "step": "a"}]
    send1, cursor = dedupe(None, tick1, _key)
    assert send1 == [tick1[0], tick1[2]]
    assert cursor == ["run:r1:b", "run:r2:a"]
    stored = dump_sent_keys(cursor)
    tick2 = tick1 + [{"run": "r3", "step": "a"}]
    send2, cursor = dedupe(load_sent_keys(stored), tick2, _key)
    assert send2 == [{"run": "r3", "step": "a"}]
    assert cursor == ["run:r1:b", "run:r2:a", "run:r3:a"]
    assert dedupe(cursor, tick2, _key) == ([], cursor)


def test_remember_keeps_the_newest_and_moves_a_repeat_to_the_end() -> None:
    assert remember(["a", "b", "c"], ["d", "e"], keep=3) == ["c", "d", "e"]
    assert remember(["a", "b", "c"], ["a"]) == ["b", "c", "a"]
    keys = remember(None, [f"k{i}" for i in range(2000)])
    assert len(keys) == 500 and keys[-1] == "k1999"
    with pytest.raises(ValueError, match="at least 1"):
        remember([], ["a"], keep=0)


def test_new_events_then_remember_only_the_delivered() -> None:
    events = ["check:coverage:e1", "check:coverage:e2"]
    fresh = new_events(["check:coverage:e1"], events, str)
    assert fresh == ["check:coverage:e2"]
    assert remember(["check:coverage:e1"], []) == ["check:coverage:e1"]  # e2 not delivered


@pytest.mark.parametrize("cursor", [None, "", "not json", '{"a": 1}', "[1, 2]"])
def test_unreadable_cursor_means_nothing_sent(cursor: str | None) -> None:
    assert load_sent_keys(cursor) == []


def test_cursor_round_trip_is_compact_json() -> None:
    keys = ["run:r1:b", "check:axe/tier_a/local:coverage:42"]
    assert dump_sent_keys(keys) == '["run:r1:b","check:axe/tier_a/local:coverage:42"]'
    assert load_sent_keys(dump_sent_keys(keys)) == keys
