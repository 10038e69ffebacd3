"""The `_meta` keys Guard's MCP proxy reads and writes, all under the `guard/` prefix.

- `guard/idempotency_key` (request, both ways): the key of the call. A client may send it (or the bare
  `idempotency_key`) to name its own key; the proxy always sends Guard's key for the call upstream under this
  one name, so an upstream server that deduplicates too can use it (`upstream_key` reads it).
- `guard/outcome` (result, proxy -> client): on an error result Guard made (denied, waiting for approval,
  rejected, expired, failed, in doubt), the typed outcome: `outcome`, `state`, `run_id`, `call_id`, and for a
  wait `approval_id`. Its text content says the same in words. Guard never puts its facts in
  `structuredContent`, which belongs to the tool and its declared `outputSchema`.

A client's protocol envelope (`io.modelcontextprotocol/*`: its protocol version, info and capabilities on
2026-07-28 connections) describes the client's connection to the proxy, not the proxy's to the upstream: it is
never forwarded. Every other key the client sent (`progressToken`, its own namespaced keys) is.

- `traceparent` (and `tracestate`), request, client -> proxy -> upstream: with OpenTelemetry installed, the
  client's trace context is the parent of Guard's span for the call (the SDK's server middleware,
  `OpenTelemetryMiddleware`, on by default in mcp 2.x, makes it current for the handler), and the upstream gets
  the W3C trace context of Guard's span (`guard.trace_context()`) in place of the client's: one trace runs
  client -> Guard -> upstream (`tests/adapters/test_mcp_trace.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from mcp_types import RequestParamsMeta

from guard import trace_context

__all__ = [
    "IDEMPOTENCY_META_KEY",
    "IDEMPOTENCY_META_KEYS",
    "OUTCOME_META_KEY",
    "client_key",
    "forward_meta",
    "upstream_key",
]

IDEMPOTENCY_META_KEY = "guard/idempotency_key"
IDEMPOTENCY_META_KEYS = (IDEMPOTENCY_META_KEY, "idempotency_key")  # what a client may send, in this order
OUTCOME_META_KEY = "guard/outcome"
_ENVELOPE_PREFIX = "io.modelcontextprotocol/"


def client_key(meta: Mapping[str, Any] | None) -> str | None:
    """The idempotency key a client named for its call, if any."""
    for name in IDEMPOTENCY_META_KEYS:
        value = (meta or {}).get(name)
        if isinstance(value, str) and value:
            return value
    return None


def forward_meta(meta: Mapping[str, Any] | None, *, key: str | None = None) -> RequestParamsMeta | None:
    """The `_meta` the proxy sends upstream for a client's request: the client's own keys without its
    connection envelope, and Guard's idempotency key for a guarded call (in place of any the client sent)."""
    kept = {
        name: value
        for name, value in (meta or {}).items()
        if not name.startswith(_ENVELOPE_PREFIX) and name not in IDEMPOTENCY_META_KEYS
    }
    if key:
        kept[IDEMPOTENCY_META_KEY] = key
    kept.update(trace_context())  # W3C `traceparent` of Guard's span for the call: the upstream's spans join its trace
    return cast(RequestParamsMeta, kept) if kept else None


def upstream_key(meta: Mapping[str, Any] | None) -> str | None:
    """For an upstream server: the idempotency key Guard sent with a `tools/call` (`ctx.meta` in the SDK)."""
    value = (meta or {}).get(IDEMPOTENCY_META_KEY)
    return value if isinstance(value, str) and value else None
