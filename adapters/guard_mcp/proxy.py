"""`GuardProxy`: an MCP server that forwards to an upstream MCP server, every `tools/call` guarded by Guard.

One proxy is one Guard run (`run_id`, or `<team>:<source_event_id>`; a reconnect with the same event resumes
the run, and every call it already made returns its recorded result). Per `tools/call`:

- the upstream tool's name is the policy tool name, its arguments are what the policy classifies;
- the idempotency key is `_meta["guard/idempotency_key"]` (or `_meta["idempotency_key"]`) when the client
  sends one, else Guard's default (run id + tool + argument hash): a call sent again runs nothing twice; the
  key goes upstream as `_meta["guard/idempotency_key"]` (`meta.py`), with the client's other `_meta` keys;
- a call the policy holds for a human is bound to the upstream tool's current definition (`definitions.py`):
  when the tool changed since the call was offered, the earlier approval does not cover it; the call waits
  for a new approval (or, if it already ran under the old definition, is refused: it never runs twice);
- an allowed call is forwarded upstream inside Guard's path and its result recorded; an upstream result with
  `isError` is recorded as a failure (the policy decides: retry, compensate, halt) and reaches the client as
  the upstream sent it, every content item kept, Guard's outcome and words added in `_meta["guard/outcome"]`;
- a denial, rejection, expiry, failure or pending approval (deferred mode) is answered with an MCP tool
  error result (`isError: true`) whose text is Guard's reason and whose `_meta["guard/outcome"]` names the
  outcome; it has no `structuredContent`, so a client that checks results against the tool's `outputSchema`
  shows Guard's reason instead of a schema error.

The proxy is a server of the SDK's lowlevel `Server`, which serves both protocol eras on one connection (the
2025 `initialize` handshake and the 2026-07-28 per-request envelope), on stdio and streamable HTTP alike.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from guard import (
    ApprovalPending,
    CallFailed,
    CallOutcomeError,
    CallState,
    Guard,
    GuardedTool,
    IdempotencyConflict,
    OutcomeUnknown,
    RunNotRunning,
    RunState,
    Verdict,
    args_hash,
    current_call,
    current_run,
)

from .definitions import BINDING_FIELD, bind, definition_hash, unbind
from .links import Link, Links
from .meta import OUTCOME_META_KEY, client_key, forward_meta
from .places import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE, DEFAULT_SESSION_WAIT
from .relay import Relay, identity
from .sdk import client_connection
from .upstream import Upstream, list_all_tools, list_tools_as_sent

__all__ = ["DEFAULT_CALL_TIMEOUT", "GuardProxy", "ToolReportedError", "UpstreamAnswered"]

DEFAULT_CALL_TIMEOUT = 300.0  # seconds an upstream tools/call may take when the proxy is not told otherwise


@dataclass(slots=True)
class _Served:
    """The client's `tools/call` being served: its `_meta` and whether it sent `arguments` at all (Guard's tool
    function sees only the arguments), and the upstream's own error result, if it answered with one."""

    params: types.CallToolRequestParams
    link: Link
    answered: types.CallToolResult | None = None


_SERVED: ContextVar[_Served | None] = ContextVar("guard_mcp_served", default=None)
# An earlier call under a stale definition that never ran and was not refused (it waits, was approved, or expired,
# e.g. withdrawn when its tool changed before): a new approval may be asked for.
_NEVER_RAN = (CallState.AWAITING_APPROVAL, CallState.APPROVED, CallState.EXPIRED)


class UpstreamAnswered(Exception):
    """The upstream answered the call with an error: a failure for Guard, never retried (`retryable`): the tool
    ran and answered, and running it again gets the same answer. Retries of a repeat-safe class are for calls
    that got no answer (a lost connection, a timeout)."""

    retryable = False


class ToolReportedError(UpstreamAnswered):
    """The upstream tool answered with `isError: true`: recorded by Guard as a failure. The client gets the
    upstream's result as it was sent, with Guard's outcome added in `_meta["guard/outcome"]`."""

    def __init__(self, message: str, result: types.CallToolResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def passed_on(answered: types.CallToolResult, text: str, outcome: Mapping[str, Any]) -> types.CallToolResult:
    """The upstream tool's own error result, unchanged but for Guard's outcome (and its words) in `_meta`."""
    return answered.model_copy(
        update={"meta": {**(answered.meta or {}), OUTCOME_META_KEY: {**outcome, "message": text}}}
    )


def error_result(text: str, outcome: Mapping[str, Any]) -> types.CallToolResult:
    """An MCP tool error result: Guard's reason as text, the typed outcome in `_meta["guard/outcome"]`."""
    return types.CallToolResult(
        content=[types.TextContent(text=f"[guard] {text}")], is_error=True, _meta={OUTCOME_META_KEY: dict(outcome)}
    )


def result_text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _outcome(err: CallOutcomeError) -> dict[str, Any]:
    return {"outcome": type(err).__name__, "state": err.state, "run_id": err.run_id, "call_id": err.call_id}


class GuardProxy:
    """Forwards `tools/list` and guards `tools/call` to `upstream` (an initialized client session).

    Args:
        guard: the Guard whose policies classify and whose ledger records every call.
        upstream: an initialized client session to the upstream server.
        team: the team whose policy classifies the calls (the run's team).
        keeps_run_open: whether the run outlives the proxy (`serve.py`); only the wording of a refusal uses it.
        call_timeout: seconds an upstream `tools/call` may take (None: no bound). A call that gets no answer in
            time, or whose connection is lost, raises `OutcomeUnknown`: its reconcile check looks it up, else a
            call that is not a `read` is `in_doubt`, never `failed`.
        upstream_spec: where `upstream` came from; each handshake-era client connection then gets an upstream
            session of its own, and each request of a 2026-era client one lent from a pool while it is served
            (`links.py`, started by `links.start`). None: every client shares `upstream`.
        max_sessions: how many upstream sessions the proxy holds open for its clients at once (pooled ones in use
            or idle, listen streams, handshake-era connections; `places.py`).
        session_wait: seconds a request waits for one of those places; then it gets a JSON-RPC error naming the
            limit (`SessionLimitReached`), and nothing was sent upstream.
        session_idle: seconds a handshake-era streamable HTTP client session must have been idle (no request in
            flight, no open stream) before a request that finds every place taken ends it to take its place (its
            client's next request gets 404 and starts a new session); `serve.py` watches its HTTP app for that
            (`Links.watch_http`).

    Raises:
        ConfigurationError: `max_sessions` below 1, a negative `session_wait`, or a `session_idle` not above 0.
    """

    def __init__(
        self,
        guard: Guard,
        upstream: ClientSession,
        *,
        team: str,
        name: str = "guard-proxy",
        keeps_run_open: bool = True,
        call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        upstream_spec: Upstream | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        session_wait: float = DEFAULT_SESSION_WAIT,
        session_idle: float = DEFAULT_SESSION_IDLE,
    ) -> None:
        self.guard = guard
        self.call_timeout = call_timeout
        self.upstream = upstream
        self.team = team
        self.keeps_run_open = keeps_run_open
        # Set when the run could not be entered (halted, pending review): every call is answered with why.
        self.stopped: RunNotRunning | None = None
        self._tools: dict[str, GuardedTool] = {}
        self.links = Links(
            upstream_spec,
            upstream,
            self._tools_changed,
            max_sessions=max_sessions,
            session_wait=session_wait,
            session_idle=session_idle,
            log=guard.log,
        )
        self.relay = Relay(guard, self.links)
        with warnings.catch_warnings():  # the upstream's logging capability is relayed though deprecated in 2026
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            self.server: Server[Any] = _RelayingServer(
                upstream.server_capabilities,
                **{**identity(upstream, name), **self.relay.handlers()},
                on_list_tools=self._list_tools,
                on_call_tool=self._call_tool,
            )
        self.server.middleware.append(self._tools_as_listed)
        if upstream_spec is not None:
            self.server.add_request_handler("server/discover", types.RequestParams, self._discover)

    async def _discover(
        self,
        ctx: ServerRequestContext[Any],
        params: types.RequestParams | None,
    ) -> types.DiscoverResult:
        """`server/discover` (the 2026-07-28 era's handshake), answered as the SDK does, with the change flags the
        upstream announces in that era (learned from its own discover, once): its listen streams deliver them."""
        modern = await self.links.modern_capabilities()
        server = self.server
        if isinstance(server, _RelayingServer):
            server.modern = modern if modern is not None else types.ServerCapabilities()
        return types.DiscoverResult(
            supported_versions=list(MODERN_PROTOCOL_VERSIONS),
            capabilities=server.get_capabilities(protocol_version=ctx.protocol_version),
            instructions=server.instructions,
        )

    def _tools_changed(self) -> None:
        """An upstream said its tools changed. Nothing is cached to drop: a held call's definition is listed
        afresh (`_definition`), so an approval bound to the old definition stays unusable."""
        self.guard.log.info("upstream tools changed")

    def guarded(self, name: str) -> GuardedTool:
        """The guarded tool that forwards `name` upstream (created on first use, one per name)."""
        tool = self._tools.get(name)
        if tool is None:
            primary = self.upstream

            async def forward(**args: Any) -> Any:
                call = current_call()  # Guard's key for this call, handed on for servers that deduplicate too
                key = call.idempotency_key if call is not None else None
                served = _SERVED.get()
                request = served.params if served is not None else None
                link = served.link if served is not None else self.links.primary
                upstream = link.session or primary
                sent = unbind(args)
                params = types.CallToolRequestParams(
                    name=name,
                    arguments=None if request is not None and request.arguments is None and not sent else sent,
                    _meta=forward_meta(request.meta if request is not None else None, key=key),
                )
                # Sent as a plain request: the proxy does not judge the upstream's result against its declared
                # output schema (the client behind it may, and the tool has already run).
                try:
                    with link.awaiting_answer():
                        result = await upstream.send_request(
                            types.CallToolRequest(params=params),
                            types.CallToolResult,
                            request_read_timeout_seconds=self.call_timeout,
                        )
                except MCPError as exc:
                    if exc.code not in (CONNECTION_CLOSED, REQUEST_TIMEOUT):  # the upstream answered: a failure
                        raise UpstreamAnswered(f"MCPError: {exc.message}") from exc
                    raise _unanswered(name, exc.message) from exc
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
                    raise _unanswered(name, f"{type(exc).__name__}: {exc}") from exc
                except anyio.get_cancelled_exc_class() as exc:
                    # The client cancelled the call (the SDK has told the upstream, `notifications/cancelled` for
                    # this request), or the proxy is stopping: the upstream may have run it. Recorded as such
                    # (`in_doubt` for an effect), not as a task's cancellation; the cancellation itself goes on at
                    # the next await of the cancelled request.
                    raise _unanswered(name, "the call was cancelled (by the client, or the proxy stopping)") from exc
                if result.is_error:
                    if served is not None:
                        served.answered = result
                    raise ToolReportedError(result_text(result) or "the upstream tool answered isError", result)
                return result.model_dump(mode="json", by_alias=True, exclude_none=True)

            tool = self.guard.tool(forward, name=name)
            self._tools[name] = tool
        return tool

    async def _list_tools(
        self,
        ctx: ServerRequestContext[Any],
        params: types.PaginatedRequestParams | None,
    ) -> types.ListToolsResult:
        return types.ListToolsResult.model_validate(await self._listing(ctx, ctx.params))

    async def _tools_as_listed(self, ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        """`tools/list` of a handshake-era client answered with the upstream's listing as it was sent (a server
        middleware: the SDK's server would check the listing against its own schema of a tool, stricter than the
        client behind the proxy may be); every other request goes on to its handler."""
        connection = client_connection(ctx)
        if (
            ctx.method != "tools/list"
            or ctx.request_id is None
            or not connection.initialize_accepted
            or connection.protocol_version in MODERN_PROTOCOL_VERSIONS
        ):
            # Before the handshake the SDK's gate answers; a 2026-era result needs the SDK's own envelope.
            return await call_next(ctx)
        return await self._listing(ctx, ctx.params)

    async def _listing(self, ctx: ServerRequestContext[Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
        forwarded = dict(params or {})
        meta = forward_meta(forwarded.pop("_meta", None))
        if meta:
            forwarded["_meta"] = meta
        async with self.links.serving(ctx) as link:
            assert link.session is not None  # `serving` lends only an open link
            with link.awaiting_answer():
                return await list_tools_as_sent(link.session, forwarded or None)

    async def _call_tool(
        self,
        ctx: ServerRequestContext[Any],
        params: types.CallToolRequestParams,
    ) -> types.CallToolResult:
        args: dict[str, Any] = dict(params.arguments or {})
        if BINDING_FIELD in args:
            return error_result(
                f"the argument name {BINDING_FIELD!r} is reserved for Guard; nothing ran",
                {"outcome": "ReservedArgument"},
            )
        if self.stopped is not None:
            return error_result(_stopped_text(self.stopped), _outcome(self.stopped))
        async with self.links.serving(ctx) as link:
            return await self._served_call(params, args, link)

    async def _served_call(
        self, params: types.CallToolRequestParams, args: dict[str, Any], link: Link
    ) -> types.CallToolResult:
        served = _Served(params, link)
        token = _SERVED.set(served)
        try:
            recorded = await self._guarded_call(params.name, args, client_key(params.meta))
        except RunNotRunning as err:
            return error_result(self._closed_text(err), _outcome(err))
        except ApprovalPending as err:
            return error_result(
                err.message,
                {
                    "outcome": "ApprovalPending",
                    "approval_id": err.approval_id,
                    "run_id": err.run_id,
                    "call_id": err.call_id,
                },
            )
        except CallFailed as err:
            if served.answered is not None:  # the tool's own error result: passed on as the upstream sent it
                return passed_on(served.answered, err.message, _outcome(err))
            return error_result(err.message, _outcome(err))
        except CallOutcomeError as err:
            return error_result(err.message, _outcome(err))
        finally:
            _SERVED.reset(token)
        if isinstance(recorded, types.CallToolResult):
            return recorded
        return types.CallToolResult.model_validate(recorded)

    async def _guarded_call(self, name: str, args: dict[str, Any], key: str | None) -> Any:
        tool = self.guarded(name)
        if self.guard.policies.classify(self.team, name, args).verdict is not Verdict.APPROVE:
            return await tool.acall_with(args, key=key)
        # Held for a human: bind the approval to the tool as it is defined upstream right now. The key stays
        # that of the arguments alone, so a changed definition meets the earlier call instead of slipping by.
        try:
            key = key or self._default_key(name, args)
        except TypeError:  # arguments with no exact hash: Guard records the refusal and runs nothing
            return await tool.acall_with(args, key=key)
        definition = await self._definition(name)
        bound = bind(args, definition)
        try:
            return await tool.acall_with(bound, key=key, call_id=self._call_id(key))
        except IdempotencyConflict as err:
            earlier = self.guard.call_record(err.call_id) if err.call_id else None
            if (
                earlier is None
                or earlier.tool != name
                or not self._same_call_other_definition(earlier.args_hash, name, args, earlier.args)
            ):
                raise
            if earlier.state not in _NEVER_RAN:
                # It ran (or was refused) as the tool was defined then: never again under the same key.
                return error_result(
                    f"{name} changed upstream since call {earlier.call_id} with these arguments ended "
                    f"{earlier.state} under its earlier definition; it is not run or offered again (send a new "
                    "idempotency key for a new attempt)",
                    {
                        "outcome": "DefinitionChanged",
                        "state": earlier.state,
                        "run_id": earlier.run_id,
                        "call_id": earlier.call_id,
                    },
                )
            self.guard.log.warning(
                "tool definition changed since the call was offered; its approval does not "
                "cover the new definition: asking again",
                tool=name,
                stale_call=earlier.call_id,
                definition=definition,
            )
            # The earlier request no longer describes what would run: out of the reviewers' queue.
            self._withdraw(earlier.call_id, name)
            # A new call under a key of its own (arguments and definition): it waits for a new approval.
            key = f"{key}@{definition.removeprefix('sha256:')[:16]}"
            return await tool.acall_with(bound, key=key, call_id=self._call_id(key))

    def _closed_text(self, err: RunNotRunning) -> str:
        """Why a new call in a run that is no longer running is refused, and what to do."""
        run = self.guard.run_record(err.run_id)
        if run is None or run.state != RunState.COMPLETED:
            return _stopped_text(err)
        event = f"event {run.source_event_id!r}" if run.source_event_id else f"run {run.run_id}"
        return (
            f"{err.message}: {event} was finished earlier (its proxy ended with --on-exit complete). Calls it "
            "made return their recorded results; a new call needs a run of its own: start the proxy with a "
            "new --event (or --run-id), or keep an event's run open across connections (the default "
            "--on-exit keep)"
        )

    def _withdraw(self, call_id: str, name: str) -> None:
        """End the earlier call of a tool that changed upstream: its request leaves the reviewers' queue, or, if it
        was approved already, the call expires (it never runs on an approval of another definition)."""
        approval = self.guard.approval_of(call_id)
        if approval is not None:
            self.guard.withdraw_approval(
                approval.approval_id,
                actor="guard-mcp",
                reason=f"superseded: {name} changed upstream; a new approval was asked for "
                "the tool as it is defined now",
            )

    async def _definition(self, name: str) -> str:
        """The hash of `name`'s definition as the upstream lists it now (listed afresh for each held call)."""
        served = _SERVED.get()
        tools = await list_all_tools((served.link.session if served is not None else None) or self.upstream)
        return definition_hash(next((t for t in tools if t.name == name), None))

    def _default_key(self, name: str, args: Mapping[str, Any]) -> str:
        # The hash Guard records (keyed when the arguments hold secrets): the key never lets a secret be guessed.
        return "mcp:" + _digest(_run_id(), name, self._args_hash(name, args))

    def _args_hash(self, name: str, args: Mapping[str, Any]) -> str:
        run = current_run()
        return self.guard.args_hash(run.team, name, args) if run is not None else args_hash(args)

    def _same_call_other_definition(
        self, recorded_hash: str, name: str, args: Mapping[str, Any], recorded: Mapping[str, Any]
    ) -> bool:
        """True when the recorded call had exactly these arguments, bound to another tool definition."""
        old = recorded.get(BINDING_FIELD)
        return isinstance(old, str) and recorded_hash == self._args_hash(name, bind(args, old))

    def _call_id(self, key: str) -> str:
        """A held call's id, from its run and key: the same call sent again (a retry, a reconnect) is offered
        under the same id, so after a decision it gets that decision (a rejection and its reason) instead of
        a new request for approval. A new attempt after a rejection needs a new idempotency key."""
        return "mcp-call-" + _digest(_run_id(), key)


def _unanswered(name: str, why: str) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"{name}: the upstream server sent no answer ({why}); its effect may or may not have happened"
    )


def _stopped_text(err: RunNotRunning) -> str:
    return (
        f"nothing ran: {err.message}. An operator decides what happens to the run (retry, compensate or "
        "finish it by hand); reconnect after that"
    )


def _run_id() -> str:
    run = current_run()
    return run.run_id if run is not None else ""


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class _RelayingServer(Server[Any]):
    """The lowlevel `Server`, announcing the upstream's change notifications (`listChanged`, `subscribe`) as the
    upstream does, in either era: the proxy passes them on (`link.py`, and `listen.py` in the 2026-07-28 era)."""

    def __init__(self, upstream: types.ServerCapabilities | None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        caps = upstream or types.ServerCapabilities()
        self._relayed = NotificationOptions(
            prompts_changed=bool(caps.prompts and caps.prompts.list_changed),
            resources_changed=bool(caps.resources and caps.resources.list_changed),
            tools_changed=bool(caps.tools and caps.tools.list_changed),
        )
        # The upstream's own capabilities in the 2026-07-28 era (`GuardProxy._discover` learns them); None: unknown.
        self.modern: types.ServerCapabilities | None = None

    def get_capabilities(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
        *,
        protocol_version: str | None = None,
    ) -> types.ServerCapabilities:
        """The SDK's capabilities; for the 2026-07-28 era (where the SDK derives every change flag from whether
        `subscriptions/listen` is served), the upstream's own flags in that era once they are known (`modern`): its
        listen streams are what the proxy relays (an upstream without that era has none to relay)."""
        caps = super().get_capabilities(
            notification_options, experimental_capabilities, extensions, protocol_version=protocol_version
        )
        modern = self.modern
        if protocol_version not in MODERN_PROTOCOL_VERSIONS or modern is None:
            return caps  # the handshake era's flags come from `create_initialization_options`
        return caps.model_copy(
            update={
                "tools": caps.tools
                and caps.tools.model_copy(update={"list_changed": bool(modern.tools and modern.tools.list_changed)}),
                "prompts": caps.prompts
                and caps.prompts.model_copy(
                    update={"list_changed": bool(modern.prompts and modern.prompts.list_changed)}
                ),
                "resources": caps.resources
                and caps.resources.model_copy(
                    update={
                        "list_changed": bool(modern.resources and modern.resources.list_changed),
                        "subscribe": bool(modern.resources and modern.resources.subscribe),
                    }
                ),
            }
        )

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or self._relayed, experimental_capabilities, extensions
        )
