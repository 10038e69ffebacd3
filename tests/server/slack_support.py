"""For the Slack tests: a loopback HTTP server standing in for Slack (its Web API, response URLs and the team's
incoming webhook), and requests signed exactly as Slack signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

from guard.testing import poll

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the example secret of Slack's documentation
BOT_TOKEN = "xoxb-test-token"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeSlack:
    """What the loopback server received, in order; `views_ok` says what views.open answers."""

    url: str = ""
    received: list[Received] = field(default_factory=list[Received])
    views_ok: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str, count: int = 1) -> list[Received]:
        """The requests to `path`, once there are `count` of them (polled with a deadline)."""

        def arrived() -> list[Received]:
            with self.lock:
                found = [r for r in self.received if r.path == path]
            return found if len(found) >= count else []

        return poll(arrived, what=f"{count} request(s) to {path}")

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.received]


@contextmanager
def fake_slack() -> Generator[FakeSlack]:
    state = FakeSlack()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw or b"null"))
                )
            answer: dict[str, Any] = {"ok": state.views_ok} if self.path.endswith("/views.open") else {"ok": True}
            if not state.views_ok:
                answer["error"] = "expired_trigger_id"
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def signed(
    payload: dict[str, Any], *, secret: str = SIGNING_SECRET, at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an interaction as Slack posts it: form-encoded `payload`, signed `v0`."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def press(user: str, action_id: str, value: str, response_url: str, trigger_id: str = "trig-1") -> dict[str, Any]:
    """A block_actions payload: `user` pressed the button `action_id` carrying `value`."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "team": {"id": "T0001"},
        "trigger_id": trigger_id,
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "guard:x", "value": value}],
    }


def submit(user: str, metadata: str, reason: str | None) -> dict[str, Any]:
    """A view_submission payload: `user` submitted the reason dialog."""
    return {
        "type": "view_submission",
        "user": {"id": user},
        "team": {"id": "T0001"},
        "view": {
            "callback_id": "guard_reject_reason",
            "private_metadata": metadata,
            "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
        },
    }
