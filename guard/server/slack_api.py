"""The two calls the approval service makes to Slack: `views.open` (the dialog asking a rejecting reviewer for the
reason) and a POST to an interaction's `response_url` (the message updated with the outcome).

One small client, so that the base URL and the hosts a `response_url` may point at are settings: tests start a
loopback HTTP server and point the client at it. A `response_url` outside `response_prefixes` is never called
(a signed request names it, but a wrong setting must not make the service post anywhere).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx

__all__ = ["SLACK_API_URL", "SlackApi", "SlackApiError"]

SLACK_API_URL = "https://slack.com/api"
_RESPONSE_PREFIXES = ("https://hooks.slack.com/",)


class SlackApiError(Exception):
    """Slack refused a call (`ok: false` with its error code), answered non-2xx, or could not be reached."""


@dataclass(frozen=True, slots=True)
class SlackApi:
    """Where Slack's Web API is (`base_url`) and which `response_url`s may be posted to (by prefix)."""

    base_url: str = SLACK_API_URL
    response_prefixes: tuple[str, ...] = _RESPONSE_PREFIXES
    timeout: float = 5.0

    @classmethod
    def from_env(cls) -> SlackApi:
        """`GUARD_SLACK_API_URL` (default Slack's own) and `GUARD_SLACK_RESPONSE_PREFIXES` (comma-separated)."""
        prefixes = tuple(p.strip() for p in os.environ.get("GUARD_SLACK_RESPONSE_PREFIXES", "").split(",") if p.strip())
        return cls(os.environ.get("GUARD_SLACK_API_URL") or SLACK_API_URL, prefixes or _RESPONSE_PREFIXES)

    def open_view(self, token: str, trigger_id: str, view: Mapping[str, Any]) -> None:
        """Open a modal for the user whose button press carried `trigger_id` (valid for 3 seconds)."""
        try:
            response = httpx.post(
                f"{self.base_url.rstrip('/')}/views.open",
                timeout=self.timeout,
                headers={"Authorization": f"Bearer {token}"},
                json={"trigger_id": trigger_id, "view": dict(view)},
            )
        except httpx.HTTPError as exc:
            raise SlackApiError(f"views.open unreachable: {type(exc).__name__}") from None
        if response.status_code // 100 != 2:
            raise SlackApiError(f"views.open answered HTTP {response.status_code}")
        body: Any = response.json()
        answer = cast(dict[str, Any], body) if isinstance(body, dict) else {}
        if answer.get("ok") is not True:
            error = answer.get("error")
            raise SlackApiError(f"views.open refused: {error or 'no ok in the answer'}")

    def respond(self, response_url: str, message: Mapping[str, Any]) -> None:
        """Post `message` to an interaction's `response_url` (replace the original, or an ephemeral reply)."""
        if not response_url.startswith(self.response_prefixes):
            raise SlackApiError("the response_url is not one Slack gives (see GUARD_SLACK_RESPONSE_PREFIXES)")
        try:
            response = httpx.post(response_url, json=dict(message), timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise SlackApiError(f"response_url unreachable: {type(exc).__name__}") from None
        if response.status_code // 100 != 2:
            raise SlackApiError(f"response_url answered HTTP {response.status_code}")
