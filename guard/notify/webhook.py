"""One webhook delivery: the Slack-compatible message, its HMAC-SHA256 signature, the POST with retries.

Signature: `X-Guard-Signature: v1=<hex>` = HMAC-SHA256(key, b"v1:" + timestamp + b":" + body), with
`X-Guard-Timestamp: <unix seconds>`, the way Slack signs its own requests. A receiver checks it with
`verify_signature` and refuses stale timestamps, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

__all__ = [
    "SIGNATURE",
    "TIMESTAMP",
    "Delivery",
    "DeliveryFailed",
    "post",
    "sign",
    "signed_headers",
    "target_of",
    "verify_signature",
]

SIGNATURE = "X-Guard-Signature"
TIMESTAMP = "X-Guard-Timestamp"


class DeliveryFailed(Exception):
    """The webhook did not answer 2xx (or could not be reached)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one delivery went: `ok`, the attempts it took, the last error (scrubbed of the URL)."""

    ok: bool
    attempts: int
    error: str | None = None


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(key, b"v1:" + str(timestamp).encode() + b":" + body, hashlib.sha256).hexdigest()


def verify_signature(
    key: bytes, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: float = 300.0
) -> bool:
    """True when `headers` carry a valid signature of `body` made within `tolerance` seconds of `now`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lowered.get(TIMESTAMP.lower(), ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(key, timestamp, body), lowered.get(SIGNATURE.lower(), ""))


def signed_headers(key: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        TIMESTAMP: str(timestamp),
        SIGNATURE: sign(key, timestamp, body),
        "User-Agent": "guard-notifier",
    }


def target_of(url: str) -> str:
    """What the ledger keeps of a webhook URL: its scheme and host (the path of a Slack webhook is a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def post(
    url: str, message: Mapping[str, Any], key: bytes, *, attempts: int = 3, timeout: float = 5.0, backoff: float = 0.2
) -> Delivery:
    """POST `message` as signed JSON, retrying failures with exponential backoff; never raises."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    tries = 0
    if urlsplit(url).scheme not in ("http", "https"):
        return Delivery(ok=False, attempts=0, error=f"{target_of(url)}: a webhook URL must be http:// or https://")

    def once() -> None:
        nonlocal tries
        tries += 1
        request = urllib.request.Request(  # noqa: S310 (http(s) checked above)
            url,
            data=body,
            method="POST",
            headers=signed_headers(key, int(time.time()), body),
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only)
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryFailed(f"unreachable: {reason}".replace(url, target_of(url))) from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"HTTP {status}")

    try:
        for attempt in Retrying(
            stop=stop_after_attempt(attempts),
            reraise=True,
            wait=wait_exponential(multiplier=backoff, max=5 * backoff),
            retry=retry_if_exception_type(DeliveryFailed),
        ):
            with attempt:
                once()
    except DeliveryFailed as exc:
        return Delivery(ok=False, attempts=tries, error=str(exc))
    return Delivery(ok=True, attempts=tries)
