"""A local HTTP server standing in for Slack: it records what axe posts and answers the way
Slack does, or the way Slack fails.

    with SlackCatcher("ok") as slack:            # or "500", "429", "hang", "api_error", "refused"
        webhook = slack.webhook_url("T0/B0/secret")   # an incoming webhook on loopback
        api = slack.api_url                           # base_url for chat.postMessage
        ...
        [caught] = slack.requests
        caught.json["text"]

Webhook paths (anything but `…/chat.postMessage`) answer like a webhook (200 "ok", errors as
4xx text); `…/chat.postMessage` answers like the Web API (JSON with "ok"). `script` gives the
modes of the first requests, then `mode` answers the rest ("500 then ok" is
`SlackCatcher("ok", script=["500"])`). "hang" answers nothing; "drip" starts an answer and
sends one byte of it every 50 ms, never finishing (each read on its own is quick, so only a
bound on the whole exchange ends it). "refused" is a loopback port nobody listens on. Bounded:
at most `max_requests` are recorded, bodies are read up to 1 MiB, a hang lasts at most `hang_s`
and ends when the catcher stops.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("ok", "500", "429", "hang", "drip", "api_error", "refused")
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Caught:
    """One request the catcher received, and the mode that answered it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    mode: str

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def is_api(self) -> bool:
        return _is_api(self.path)


def _is_api(path: str) -> bool:
    return path.split("?")[0].rstrip("/").endswith("/chat.postMessage")


class SlackCatcher:
    """A threaded HTTP server on 127.0.0.1 (a free port) answering like Slack in `mode`."""

    def __init__(self, mode: str = "ok", *, script: Sequence[str] = (), retry_after: str = "1",
                 hang_s: float = 30.0, api_error: str = "invalid_auth",
                 max_requests: int = 1000):
        for m in (mode, *script):
            if m not in MODES:
                raise ValueError(f"unknown mode {m!r}; one of {', '.join(MODES)}")
        if "refused" in script:
            raise ValueError("'refused' is a whole-catcher mode, not a scripted answer")
        self.mode = mode
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.api_error = api_error
        self.max_requests = max_requests
        self._script = list(script)
        self._caught: list[Caught] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> SlackCatcher:
        """Start listening (or, for "refused", pick a port nobody listens on); return self."""
        if self.mode == "refused":
            with socket.socket() as s:  # bound and closed again: connecting is refused
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            return self
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True  # a hanging handler never blocks stop()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"slack-catcher-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: hanging requests end, the port closes."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackCatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where to post ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """A `base_url` for chat.postMessage (posts go to <api_url>/chat.postMessage)."""
        return f"{self.url}/api"

    def webhook_url(self, secret_path: str = "T000/B000/XXXXXXXX") -> str:
        """An incoming-webhook URL on this catcher (the path is the webhook's secret)."""
        return f"{self.url}/services/{secret_path}"

    # -- what arrived -------------------------------------------------------------------------

    @property
    def requests(self) -> list[Caught]:
        with self._lock:
            return list(self._caught)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Caught]:
        """Wait until `count` requests arrived (a sensor in another process posts them);
        return them all. Raise AssertionError if they do not arrive within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._caught) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"Slack catcher: {len(self._caught)} of {count} requests in {timeout} s")
                self._arrived.wait(left)
            return list(self._caught)

    # -- answering ----------------------------------------------------------------------------

    def _next_mode(self) -> str:
        with self._lock:
            return self._script.pop(0) if self._script else self.mode

    def _record(self, caught: Caught) -> None:
        with self._arrived:
            if len(self._caught) < self.max_requests:
                self._caught.append(caught)
            self._arrived.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                body = self.rfile.read(length)
                mode = catcher._next_mode()
                catcher._record(Caught(self.path, dict(self.headers.items()), body,
                                       time.monotonic(), mode))
                catcher._answer(self, mode, _is_api(self.path))

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the tests read `requests`, not stderr

        return Handler

    def _answer(self, handler: BaseHTTPRequestHandler, mode: str, api: bool) -> None:
        if mode == "hang":
            self._stopping.wait(self.hang_s)
            handler.close_connection = True
            return
        if mode == "drip":
            self._drip(handler)
            return
        headers: dict[str, str] = {}
        body: dict[str, Any] | str
        if mode == "ok":
            status, body = 200, {"ok": True, "channel": "C0AXE", "ts": "1.000100"} if api else "ok"
        elif mode == "500":
            status, body = 500, "internal_error"
        elif mode == "429":
            status, body = 429, {"ok": False, "error": "ratelimited"} if api else "rate_limited"
            headers["Retry-After"] = self.retry_after
        elif api:  # api_error: the Web API says no in a 200
            status, body = 200, {"ok": False, "error": self.api_error}
        else:  # api_error: a revoked webhook
            status, body = 403, "invalid_token"
        if isinstance(body, dict):
            data, kind = json.dumps(body).encode(), "application/json; charset=utf-8"
        else:
            data, kind = body.encode(), "text/plain; charset=utf-8"
        handler.send_response(status)
        for name, value in {**headers, "Content-Type": kind,
                            "Content-Length": str(len(data))}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _drip(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        deadline = time.monotonic() + self.hang_s
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            while time.monotonic() < deadline and not self._stopping.wait(0.05):
                handler.wfile.write(b"X")
                handler.wfile.flush()
        except OSError:
            pass  # the client gave up and closed: what the test wants
