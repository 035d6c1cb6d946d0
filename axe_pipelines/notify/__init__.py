"""Notifications to the operators' Slack: a plain room (no Dagster) shared by the restore
drill (one report per drill) and the alert sensors (one message per failed run, failed check
or stale tier, deduplicated across ticks).

Configuration, a `slack:` block (for customers.yaml's `notify:`); the secret — the webhook URL
or the bot token — always comes from a password source, never inline:

    notify:
      slack:
        webhook: {keychain: axe.slack.webhook}   # or {env: …}, {command: […]}, {file: …}
        timeout_s: 10            # wall-time bound on one attempt
        retries: 3               # attempts at most, the first included
        backoff_s: 1             # then 2, 4 … between attempts
        max_retry_after_s: 30    # cap on Slack's Retry-After

    notify:
      slack:
        token: {env: AXE_SLACK_BOT_TOKEN}        # a bot token (xoxb-…), chat.postMessage
        channel: "#ops"
        base_url: https://slack.com/api          # the default; tests point it at loopback

Use: build a `Message` (or take one from the builders), `send(dest, message)` → `Delivery`;
`send` never raises for an outage, it logs one warning and says so in the Delivery.
"""

from axe_pipelines.notify.builders import (
    check_failure_message,
    dagster_asset_url,
    dagster_run_url,
    drill_message,
    format_age,
    freshness_message,
    one_line_reason,
    run_failure_message,
)
from axe_pipelines.notify.dedup import (
    dedupe,
    dump_sent_keys,
    event_key,
    load_sent_keys,
    new_events,
    remember,
)
from axe_pipelines.notify.message import Message, slack_payload
from axe_pipelines.notify.slack import Delivery, SlackDestination, send

__all__ = [
    "Delivery",
    "Message",
    "SlackDestination",
    "check_failure_message",
    "dagster_asset_url",
    "dagster_run_url",
    "dedupe",
    "drill_message",
    "dump_sent_keys",
    "event_key",
    "format_age",
    "freshness_message",
    "load_sent_keys",
    "new_events",
    "one_line_reason",
    "remember",
    "run_failure_message",
    "send",
    "slack_payload",
]
