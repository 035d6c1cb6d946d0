"""axe_pipelines.notify.send over real HTTP against the local Slack stand-in
(tests/slack_catcher.py): delivery, bounded retries, timeouts, refusals, and that the webhook
URL and the bot token never show in what send returns or logs."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from axe_pipelines.notify import Delivery, Message, SlackDestination, drill_message, send
from tests.slack_catcher import SlackCatcher

HOOK_ENV = "AXE_TEST_SLACK_WEBHOOK"
TOKEN_ENV = "AXE_TEST_SLACK_TOKEN"
# Distinctive, so a leak anywhere is found by a plain substring search.
HOOK_SECRET = "hooksecret" + secrets.token_hex(12)
BOT_TOKEN = "xoxb-" + secrets.token_hex(16)
FAST = {"timeout_s": 0.5, "retries": 3, "backoff_s": 0.05}


@pytest.fixture
def caplog_all(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def webhook_dest(slack: SlackCatcher, monkeypatch: pytest.MonkeyPatch,
                 **extra: Any) -> SlackDestination:
    monkeypatch.setenv(HOOK_ENV, slack.webhook_url(f"T0AXE/B0AXE/{HOOK_SECRET}"))
    return SlackDestination.model_validate({"webhook": {"env": HOOK_ENV}, **FAST, **extra})


def api_dest(slack: SlackCatcher, monkeypatch: pytest.MonkeyPatch,
             **extra: Any) -> SlackDestination:
    monkeypatch.setenv(TOKEN_ENV, BOT_TOKEN)
    return SlackDestination.model_validate(
        {"token": {"env": TOKEN_ENV}, "channel": "#ops", "base_url": slack.api_url,
         **FAST, **extra})


def drill_report() -> Message:
    rows = [{"database": "frame", "tier": "local", "rto_s": 4.2},
            {"database": "index", "tier": "cold", "rto_s": 9.0}]
    return drill_message("axe", False, rows, ["index: local failed (pack truncated)"],
                         url="http://mini:3000/runs/r1")


def assert_no_secret(*things: object, logs: str = "") -> None:
    for thing in (*things, logs):
        for text in (str(thing), repr(thing)):
            assert HOOK_SECRET not in text and BOT_TOKEN not in text, text


def timed_send(dest: SlackDestination, message: Message) -> tuple[Delivery, float]:
    started = time.monotonic()
    delivery = send(dest, message)
    return delivery, time.monotonic() - started


def test_webhook_ok_posts_summary_and_table_once(monkeypatch, caplog_all) -> None:
    with SlackCatcher("ok") as slack:
        delivery = send(webhook_dest(slack, monkeypatch), drill_report())
        [caught] = slack.requests
    assert (delivery.delivered, delivery.attempts, delivery.last_error) == (True, 1, None)
    assert caught.path == f"/services/T0AXE/B0AXE/{HOOK_SECRET}"
    assert caught.headers["Content-Type"] == "application/json; charset=utf-8"
    body = caught.json
    assert body["text"] == ":red_circle: axe: restore drill FAILED (2 items)"
    table = body["blocks"][1]["text"]["text"]
    assert "database  tier   rto_s\n" in table and "index     cold   9.0" in table
    assert "• index: local failed (pack truncated)" in body["blocks"][2]["text"]["text"]
    assert "channel" not in body  # a webhook has its own channel
    assert not [r for r in caplog_all.records if r.levelno >= logging.WARNING]
    assert_no_secret(delivery, logs=caplog_all.text)


def test_api_ok_sends_token_in_header_and_channel_in_body(monkeypatch, caplog_all) -> None:
    with SlackCatcher("ok") as slack:
        delivery = send(api_dest(slack, monkeypatch), Message("hello", ok=True))
        [caught] = slack.requests
    assert delivery.delivered and delivery.attempts == 1
    assert caught.path == "/api/chat.postMessage"
    assert caught.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert caught.json["channel"] == "#ops" and caught.json["text"].endswith("hello")
    assert_no_secret(delivery, logs=caplog_all.text)


def test_500_then_ok_is_delivered_on_the_second_attempt(monkeypatch) -> None:
    with SlackCatcher("ok", script=["500"]) as slack:
        delivery = send(webhook_dest(slack, monkeypatch), drill_report())
        assert [c.mode for c in slack.requests] == ["500", "ok"]
    assert delivery.delivered and delivery.attempts == 2 and delivery.last_error is None


def test_always_500_gives_up_after_retries_with_one_line_and_one_warning(
        monkeypatch, caplog_all) -> None:
    with SlackCatcher("500") as slack:
        delivery, took = timed_send(webhook_dest(slack, monkeypatch), drill_report())
        assert len(slack.requests) == 3
    assert not delivery.delivered and delivery.attempts == 3
    assert delivery.last_error == (
        f"Slack webhook (environment variable {HOOK_ENV}): not delivered after 3 attempts: "
        "HTTP 500 Internal Server Error (internal_error)")
    assert took < 0.05 + 0.1 + 1.0  # the two backoffs and a little
    warnings = [r for r in caplog_all.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [delivery.last_error]
    assert_no_secret(delivery, logs=caplog_all.text)


def test_429_waits_retry_after_then_delivers(monkeypatch) -> None:
    with SlackCatcher("ok", script=["429"], retry_after="1") as slack:
        delivery = send(api_dest(slack, monkeypatch), Message("x", ok=True))
        first, second = slack.requests
    assert delivery.delivered and delivery.attempts == 2
    assert second.at - first.at >= 0.95  # Retry-After, not the 0.05 s backoff


def test_429_retry_after_is_capped(monkeypatch) -> None:
    with SlackCatcher("429", retry_after="120") as slack:
        dest = webhook_dest(slack, monkeypatch, retries=2, max_retry_after_s=0.2)
        delivery, took = timed_send(dest, Message("x", ok=True))
        assert len(slack.requests) == 2
    assert not delivery.delivered and "HTTP 429" in (delivery.last_error or "")
    assert took < 1.5


@pytest.mark.parametrize("mode", ["hang", "drip"])
def test_a_hanging_slack_holds_at_most_timeout_times_attempts(monkeypatch, caplog_all,
                                                              mode: str) -> None:
    with SlackCatcher(mode, hang_s=20) as slack:
        delivery, took = timed_send(webhook_dest(slack, monkeypatch), drill_report())
        assert len(slack.requests) == 3
    assert not delivery.delivered and delivery.attempts == 3
    assert (delivery.last_error or "").endswith("not delivered after 3 attempts: "
                                                "no answer within 0.5 s")
    assert took < 0.5 * 3 + 0.05 + 0.1 + 0.5
    assert_no_secret(delivery, logs=caplog_all.text)


def test_refused_connection_gives_up_fast(monkeypatch, caplog_all) -> None:
    with SlackCatcher("refused") as slack:
        delivery, took = timed_send(webhook_dest(slack, monkeypatch), drill_report())
    assert not delivery.delivered and delivery.attempts == 3
    assert (delivery.last_error or "").endswith("connection refused")
    assert took < 1.0
    assert_no_secret(delivery, logs=caplog_all.text)


def test_api_error_is_not_retried_and_names_slacks_word(monkeypatch, caplog_all) -> None:
    with SlackCatcher("api_error") as slack:
        delivery = send(api_dest(slack, monkeypatch), drill_report())
        assert len(slack.requests) == 1
    assert not delivery.delivered and delivery.attempts == 1
    assert delivery.last_error == (
        f"Slack chat.postMessage to #ops (environment variable {TOKEN_ENV}): not delivered "
        "after 1 attempt: Slack refused the message: invalid_auth")
    assert_no_secret(delivery, logs=caplog_all.text)


def test_revoked_webhook_is_not_retried(monkeypatch) -> None:
    with SlackCatcher("api_error") as slack:
        delivery = send(webhook_dest(slack, monkeypatch), drill_report())
        assert len(slack.requests) == 1
    assert not delivery.delivered
    assert (delivery.last_error or "").endswith("HTTP 403 Forbidden (invalid_token)")


def test_base_url_redirects_a_real_looking_webhook_to_loopback(monkeypatch) -> None:
    monkeypatch.setenv(HOOK_ENV, f"https://hooks.slack.com/services/T1/B1/{HOOK_SECRET}")
    with SlackCatcher("ok") as slack:
        dest = SlackDestination.model_validate(
            {"webhook": {"env": HOOK_ENV}, "base_url": slack.url, **FAST})
        delivery = send(dest, Message("x", ok=True))
        [caught] = slack.requests
    assert delivery.delivered and caught.path == f"/services/T1/B1/{HOOK_SECRET}"


@pytest.mark.parametrize(("kind", "value"), [
    ("webhook", None),
    ("webhook", f"not-a-url-{HOOK_SECRET}"),
    ("webhook", f"http://127.0.0.1:9/services/{HOOK_SECRET}\r\nX-Evil: 1"),
    ("token", f"{BOT_TOKEN}\r\nX-Evil: 1"),
], ids=["unset", "not-a-url", "crlf-in-url", "crlf-in-token"])  # ids: the values are random, and
# xdist workers must collect the same names
def test_unusable_secret_is_a_failed_delivery_not_an_exception(
        monkeypatch, caplog_all, kind: str, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(HOOK_ENV, raising=False)
    else:
        monkeypatch.setenv(HOOK_ENV, value)
    config = {"webhook": {"env": HOOK_ENV}} if kind == "webhook" else {
        "token": {"env": HOOK_ENV}, "channel": "#ops", "base_url": "http://127.0.0.1:9"}
    dest = SlackDestination.model_validate({**config, **FAST})
    delivery = send(dest, Message("x", ok=True))
    assert not delivery.delivered and delivery.attempts == 0
    assert f"(environment variable {HOOK_ENV}): not delivered: " in (delivery.last_error or "")
    assert_no_secret(delivery, dest, logs=caplog_all.text)


def test_transient_api_error_is_retried(monkeypatch) -> None:
    with SlackCatcher("ok", script=["api_error"], api_error="internal_error") as slack:
        delivery = send(api_dest(slack, monkeypatch), Message("x", ok=True))
        assert [c.mode for c in slack.requests] == ["api_error", "ok"]
    assert delivery.delivered and delivery.attempts == 2


def test_no_mode_leaks_a_secret(monkeypatch, caplog_all) -> None:
    seen: list[object] = []
    for mode in ("ok", "500", "429", "api_error", "refused"):
        with SlackCatcher(mode, retry_after="0") as slack:
            for dest in (webhook_dest(slack, monkeypatch), api_dest(slack, monkeypatch)):
                seen += [dest, send(dest, drill_report())]
    assert_no_secret(*seen, logs=caplog_all.text)
