"""`subscriptions/listen` (2026-07-28) through the proxy: each client stream is the upstream's own stream, relayed.

A 2026-era client learns of list changes and resource updates only on a `subscriptions/listen` request it opened:
the response to that request is the stream (an acknowledgement first, then the notifications it asked for, each
stamped with the request's id under `_meta["io.modelcontextprotocol/subscriptionId"]`), and the server answers
the request only when it ends the stream gracefully. The proxy serves each such request with an upstream session
of its own (`Links.listening`, in the 2026-07-28 era: a handshake-era session cannot listen) on which it opens the
same listen upstream, with the client's filter, through the SDK's client driver (`mcp.client.subscriptions.listen`):

- the client's acknowledgement is sent once the upstream acknowledged, with the filter the upstream honored;
- every event of the upstream's stream goes to this client's stream alone, stamped with the client's id: one
  upstream stream per client stream, so no event meant for one client's filter reaches another's;
- the upstream ending its stream gracefully ends the client's gracefully (the result); the upstream's stream
  dropping ends the client's with an error (its driver calls that a lost subscription: re-listen and refetch);
- the client going away (its stream closed, or cancelled) cancels the handler: the upstream listen and its
  session end with it, and the session is never lent to another request (`Links.listens` counts it).

The upstream must speak the 2026-07-28 era: an upstream that does not (its `server/discover` fails) answers the
client's listen with its own error, and the proxy's `server/discover` announces no change flags for it. The proxy
serves the method when it may open upstream sessions of its own (`Links.upstream`). Each event is
relayed as the SDK's driver types it (the four kinds of the 2026-07-28 filter); events are level triggers, so the
driver merges a repeat of one still waiting to be relayed, as it does for any client.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost, listen
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY, event_to_notification
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_REQUEST, REQUEST_TIMEOUT

from .links import Links

__all__ = ["Listening"]


class Listening:
    """The proxy's `subscriptions/listen` handler (a lowlevel `Server`'s `on_subscriptions_listen`).

    States of one call: opening (an upstream session, then the upstream listen) -> acknowledged (the client has
    the upstream's honored filter) -> relaying -> ended: gracefully with the upstream (the result), or by the
    client going away (cancelled), or with an error (`MCPError`: the upstream refused, could not be reached, or
    dropped its stream).
    """

    def __init__(self, links: Links) -> None:
        self.links = links

    async def __call__(
        self,
        ctx: ServerRequestContext[Any],
        params: types.SubscriptionsListenRequestParams,
    ) -> types.SubscriptionsListenResult:
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        wanted = params.notifications
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        try:
            async with (
                self.links.listening() as session,
                listen(
                    session,
                    tools_list_changed=bool(wanted.tools_list_changed),
                    prompts_list_changed=bool(wanted.prompts_list_changed),
                    resources_list_changed=bool(wanted.resources_list_changed),
                    resource_subscriptions=list(wanted.resource_subscriptions or ()),
                ) as upstream,
            ):
                await ctx.session.send_notification(
                    types.SubscriptionsAcknowledgedNotification(
                        params=types.SubscriptionsAcknowledgedNotificationParams(
                            notifications=upstream.honored, _meta=meta
                        )
                    ),
                    related_request_id=subscription_id,
                )
                async for event in upstream:
                    await ctx.session.send_notification(
                        event_to_notification(event, meta), related_request_id=subscription_id
                    )
        except SubscriptionLost as exc:
            raise MCPError(
                CONNECTION_CLOSED, "[guard] the upstream's subscription stream ended without its close; re-listen"
            ) from exc
        except TimeoutError as exc:
            raise MCPError(REQUEST_TIMEOUT, "[guard] the upstream did not acknowledge the subscription") from exc
        except ListenNotSupportedError as exc:
            raise MCPError(INTERNAL_ERROR, f"[guard] the upstream cannot listen: {exc}") from exc
        return types.SubscriptionsListenResult(_meta=meta)
