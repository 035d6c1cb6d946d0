"""Where a notification goes (`SlackDestination`) and how it gets there (`send`).

Two kinds of destination: an incoming webhook (its URL is the secret) or a bot token with a
channel (Slack Web API `chat.postMessage`). Both secrets come from a password source and are
resolved only when a message is sent; neither ever reaches a log line, an exception or the
returned `Delivery`, which names the destination by its source ("Slack webhook (environment
variable SLACK_WEBHOOK)").

`send` never raises for an outage or a refused message: a notification must not change the
result of the drill or the run it reports on. It tries at most `retries` times (the first
included): again after a refused or reset connection, a timeout, HTTP 5xx or 429 (waiting
Retry-After, capped); at once it gives up on any other answer (a revoked webhook, an invalid
token), since those do not heal by waiting. Every attempt is bounded by `timeout_s` in wall
time — connect, send and answer together — so a hanging Slack holds a caller at most about
`retries x timeout_s` plus the short backoff between attempts.

Plain HTTP over the standard library (no proxy support: a site behind one points `base_url`
at a relay); redirects are not followed, so a token never travels to another host.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from axe_pipelines.notify.message import Message, slack_payload
from axe_pipelines.secrets import SecretError, SecretSource

log = logging.getLogger(__name__)

SLACK_API = "https://slack.com/api"
MAX_ANSWER_BYTES = 64 * 1024  # Slack's answers are small; a larger one is not Slack's
# chat.postMessage answers HTTP 200 with these when Slack itself had a moment: worth a retry.
TRANSIENT_API_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"})


class SlackDestination(BaseModel):
    """A Slack destination: `webhook` (an incoming-webhook URL from a password source), or
    `token` (a bot token from a password source) with `channel` for chat.postMessage."""

    # Not config._Model: config.py will import this module to plug it in (import cycle).
    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: SecretSource | None = Field(
        None, description="password source holding the incoming-webhook URL (it is a secret)")
    token: SecretSource | None = Field(
        None, description="password source holding a bot token (xoxb-…) for chat.postMessage")
    channel: str | None = Field(
        None, pattern=r"^\S{1,80}$", description="with token: channel name (#ops) or id")
    base_url: str | None = Field(
        None, description="API: default https://slack.com/api; webhook: replaces the URL's "
        "scheme, host and port (a relay, or a local server in tests)")
    timeout_s: float = Field(10, gt=0, le=120, description="wall-time bound on one attempt")
    retries: int = Field(3, ge=1, le=10, description="attempts at most, the first included")
    backoff_s: float = Field(1.0, ge=0, le=60,
                             description="wait before the second attempt, doubled after each")
    max_retry_after_s: float = Field(30, ge=0, le=600,
                                     description="cap on a 429/503 Retry-After wait")

    @field_validator("base_url")
    @classmethod
    def _v_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {value!r} must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _v_kind(self) -> SlackDestination:
        if (self.webhook is None) == (self.token is None):
            raise ValueError("a Slack destination has exactly one of: webhook, token")
        if self.token is not None and not self.channel:
            raise ValueError("a Slack bot token needs a channel (e.g. channel: \"#ops\")")
        if self.webhook is not None and self.channel:
            raise ValueError("a webhook posts to its own channel: drop channel, or use token")
        return self

    def describe(self) -> str:
        """Given this destination, return its name for messages: kind and password source,
        never the secret."""
        if self.webhook is not None:
            return f"Slack webhook ({self.webhook.describe()})"
        assert self.token is not None
        return f"Slack chat.postMessage to {self.channel} ({self.token.describe()})"


@dataclass(frozen=True)
class Delivery:
    """What became of one message: `delivered`, how many `attempts` it took, and the last
    failure as one line naming the destination (never its secret)."""

    destination: str
    delivered: bool
    attempts: int
    last_error: str | None = None
    elapsed_s: float = 0.0

    def __str__(self) -> str:
        if self.delivered:
            return f"{self.destination}: delivered (attempt {self.attempts})"
        return self.last_error or f"{self.destination}: not delivered"


@dataclass(frozen=True)
class _Answer:
    """One attempt's outcome: done, or why not and whether another attempt may help."""

    ok: bool
    error: str = ""
    retry: bool = False
    wait_s: float | None = None  # the server's Retry-After, when it gave one


class _Request:
    """The resolved target of one message: URL parts, headers and body. Holds the secret, so
    it has no repr that shows it and never leaves this module."""

    def __init__(self, url: str, headers: dict[str, str], body: bytes, secret: str,
                 api: bool):
        self.url, self.headers, self.body, self.secret, self.api = url, headers, body, secret, api

    def __repr__(self) -> str:
        return "<Slack request>"


def send(dest: SlackDestination, message: Message) -> Delivery:
    """Given a destination and a message, post the message and return its Delivery. Retries a
    transient failure with backoff (bounded by `dest.retries` attempts of `dest.timeout_s`
    each); logs one warning when it gives up. Never raises for an outage, a refused message
    or a password source that cannot be read."""
    name = dest.describe()
    started = time.monotonic()
    try:
        request = _resolve(dest, message)
    except SecretError as exc:
        return _given_up(name, 0, f"cannot read the secret: {exc}", started)
    if isinstance(request, str):
        return _given_up(name, 0, request, started)
    for attempt in range(1, dest.retries + 1):
        answer = _attempt(request, dest.timeout_s)
        if answer.ok:
            log.debug("%s: delivered on attempt %d", name, attempt)
            return Delivery(name, True, attempt, None, time.monotonic() - started)
        log.debug("%s: attempt %d failed: %s", name, attempt, answer.error)
        if not answer.retry or attempt == dest.retries:
            return _given_up(name, attempt, answer.error, started)
        time.sleep(_wait_s(dest, attempt, answer.wait_s))
    raise AssertionError("unreachable: the loop returns")  # pragma: no cover


def _given_up(name: str, attempts: int, error: str, started: float) -> Delivery:
    tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
    line = " ".join(f"{name}: not delivered{tries}: {error}".split())
    log.warning("%s", line)
    return Delivery(name, False, attempts, line, time.monotonic() - started)


def _wait_s(dest: SlackDestination, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, dest.max_retry_after_s)
    return dest.backoff_s * 2 ** (attempt - 1)


def _resolve(dest: SlackDestination, message: Message) -> _Request | str:
    """The request to make, or why none can be made (a one-line reason without the secret)."""
    payload = slack_payload(message)
    headers = {"Content-Type": "application/json; charset=utf-8",
               "User-Agent": "axe-pipelines"}
    if dest.webhook is not None:
        secret = dest.webhook.resolve().strip()
        parts = urlsplit(secret)
        if parts.scheme not in ("http", "https") or not parts.netloc or _unsafe(secret):
            return "the webhook URL it holds is not an http(s) URL"
        url = dest.base_url + _path_and_query(parts) if dest.base_url else secret
        return _Request(url, headers, json.dumps(payload).encode(), secret, api=False)
    assert dest.token is not None
    secret = dest.token.resolve().strip()
    if not secret or _unsafe(secret):
        # http.client would refuse the header with the value in its error message.
        return "the token it holds is empty or has spaces or control characters"
    headers["Authorization"] = f"Bearer {secret}"
    body = json.dumps({"channel": dest.channel, **payload}).encode()
    url = (dest.base_url or SLACK_API) + "/chat.postMessage"
    return _Request(url, headers, body, secret, api=True)


def _unsafe(secret: str) -> bool:
    """Whether the secret has a character that cannot go into a URL or a header as is."""
    return any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in secret)


def _path_and_query(parts: SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _attempt(request: _Request, timeout_s: float) -> _Answer:
    """One POST, at most `timeout_s` seconds of wall time in all."""
    parts = urlsplit(request.url)
    try:
        port = parts.port
    except ValueError:
        return _Answer(False, "the URL has a bad port")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", port, timeout=timeout_s)
    deadline = _Deadline(conn, timeout_s)
    try:
        conn.connect()
        if conn.sock is not None:  # what connecting used up is not given again to the reads
            conn.sock.settimeout(max(deadline.left(), 0.001))
        conn.request("POST", _path_and_query(parts), body=request.body, headers=request.headers)
        response = conn.getresponse()
        status, reason = response.status, response.reason
        retry_after = response.getheader("Retry-After")
        text = response.read(MAX_ANSWER_BYTES).decode("utf-8", "replace")
        if deadline.finish():  # what was read before the cut is a torn answer, not an answer
            raise TimeoutError
    except (OSError, http.client.HTTPException) as exc:
        if deadline.finish() or isinstance(exc, TimeoutError):
            return _Answer(False, f"no answer within {timeout_s:g} s", retry=True)
        return _connection_failure(exc, request.secret)
    finally:
        deadline.finish()
        conn.close()
    return _judge(request, status, reason, retry_after, _scrub(text, request.secret))


class _Deadline:
    """Ends an exchange after its time is up. A socket timeout bounds each read, not the whole
    exchange (a server dripping bytes could hold on for ever): at the deadline a timer shuts
    the socket, which wakes the blocked read in the sending thread."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float):
        self._conn = conn
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._done = False
        self._expired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return self._end - time.monotonic()

    def finish(self) -> bool:
        """Stop the timer; return whether it had already cut the exchange."""
        with self._lock:
            self._done = True
            self._timer.cancel()
            return self._expired

    def _fire(self) -> None:
        with self._lock:
            if self._done:  # the answer was complete just in time
                return
            self._expired = True
            sock = self._conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _connection_failure(exc: BaseException, secret: str) -> _Answer:
    """A failure before any answer: worth a retry unless it is a certificate problem."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _Answer(False, f"TLS certificate not trusted: {exc.verify_message}")
    if isinstance(exc, ConnectionRefusedError):
        return _Answer(False, "connection refused", retry=True)
    if isinstance(exc, socket.gaierror):
        return _Answer(False, f"cannot resolve the host name ({exc.strerror})", retry=True)
    detail = getattr(exc, "strerror", None) or _scrub(str(exc), secret) or "no detail"
    return _Answer(False, f"connection failed: {type(exc).__name__}: {detail}", retry=True)


def _judge(request: _Request, status: int, reason: str, retry_after: str | None,
           text: str) -> _Answer:
    """Decides what an HTTP answer means: delivered, worth another attempt, or refused."""
    first_line = " ".join(text.strip().splitlines()[0].split())[:200] if text.strip() else ""
    said = f" ({first_line})" if first_line else ""
    if status == 429 or status >= 500:
        return _Answer(False, f"HTTP {status} {reason}{said}", retry=True,
                       wait_s=_retry_after_s(retry_after))
    if status != 200:
        return _Answer(False, f"HTTP {status} {reason}{said}")
    if not request.api:
        return _Answer(True)  # a webhook answers 200 "ok"; any refusal is a 4xx
    try:
        answer: Any = json.loads(text)
    except ValueError:
        return _Answer(False, f"chat.postMessage answered HTTP 200 with no JSON{said}")
    if isinstance(answer, dict) and answer.get("ok") is True:
        return _Answer(True)
    error = str(answer.get("error", "no error given")) if isinstance(answer, dict) else "?"
    error = " ".join(error.split())[:100]
    return _Answer(False, f"Slack refused the message: {error}",
                   retry=error in TRANSIENT_API_ERRORS)


def _retry_after_s(value: str | None) -> float | None:
    # Slack sends whole seconds; the HTTP-date form is not worth a parser here.
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _scrub(text: str, secret: str) -> str:
    """The text with the secret (and a webhook URL's path, which is the secret part) masked."""
    for part in (secret, urlsplit(secret).path if "://" in secret else ""):
        if len(part) >= 8:
            text = text.replace(part, "***")
    return text
