"""`GuardProxy`: an MCP server that forwards to an upstream MCP server, every `tools/call` guarded by Guard.

One proxy is one Guard run (`run_id`, or `<team>:<source_event_id>`; a reconnect with the same event resumes
the run, and every call it already made returns its recorded result). Per `tools/call`:

- the upstream tool's name is the policy tool name, its arguments are what the policy classifies;
- the idempotency key is `_meta["guard/idempotency_key"]` (or `_meta["idempotency_key"]`) when the client
  sends one, else Guard's default (run id + tool + argument hash): a call sent again runs nothing twice;
- a call the policy holds for a human is bound to the upstream tool's current definition (`definitions.py`):
  when the tool changed since the call was offered, the earlier approval does not cover it; the call waits
  for a new approval (or, if it already ran under the old definition, is refused: it never runs twice);
- an allowed call is forwarded upstream inside Guard's path and its result recorded; an upstream result with
  `isError` is recorded as a failure (the policy decides: retry, compensate, halt);
- a denial, rejection, expiry, failure or pending approval (deferred mode) is answered with an MCP tool
  error result (`isError: true`) whose text is Guard's reason and whose `structuredContent` names the outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server

from guard import (
    ApprovalPending,
    CallOutcomeError,
    CallState,
    Guard,
    GuardedTool,
    IdempotencyConflict,
    Verdict,
    args_hash,
    current_call,
    current_run,
)

from .definitions import BINDING_FIELD, bind, definition_hash, unbind
from .upstream import list_all_tools

__all__ = ["IDEMPOTENCY_META_KEYS", "GuardProxy", "ToolReportedError"]

IDEMPOTENCY_META_KEYS = ("guard/idempotency_key", "idempotency_key")
# An earlier call under a stale definition that never ran and was not refused (it waits, was approved, or expired,
# e.g. withdrawn when its tool changed before): a new approval may be asked for.
_NEVER_RAN = (CallState.AWAITING_APPROVAL, CallState.APPROVED, CallState.EXPIRED)


class ToolReportedError(Exception):
    """The upstream tool answered with `isError: true`: recorded by Guard as a failure."""


def error_result(text: str, outcome: Mapping[str, Any]) -> types.CallToolResult:
    """An MCP tool error result: Guard's reason as text, the typed outcome in `structuredContent.guard`."""
    return types.CallToolResult(content=[types.TextContent(text=f"[guard] {text}")], is_error=True,
                                structured_content={"guard": dict(outcome)})


def result_text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _meta_key(params: types.CallToolRequestParams) -> str | None:
    meta: Mapping[str, Any] = params.meta or {}
    for name in IDEMPOTENCY_META_KEYS:
        value = meta.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _outcome(err: CallOutcomeError) -> dict[str, Any]:
    return {"outcome": type(err).__name__, "state": err.state, "run_id": err.run_id, "call_id": err.call_id}


class GuardProxy:
    """Forwards `tools/list` and guards `tools/call` to `upstream` (an initialized client session).

    Args:
        guard: the Guard whose policies classify and whose ledger records every call.
        upstream: an initialized client session to the upstream server.
        team: the team whose policy classifies the calls (the run's team).
    """

    def __init__(self, guard: Guard, upstream: ClientSession, *, team: str, name: str = "guard-proxy") -> None:
        self.guard = guard
        self.upstream = upstream
        self.team = team
        self._tools: dict[str, GuardedTool] = {}
        self.server: Server[Any] = Server(name, on_list_tools=self._list_tools, on_call_tool=self._call_tool)

    def guarded(self, name: str) -> GuardedTool:
        """The guarded tool that forwards `name` upstream (created on first use, one per name)."""
        tool = self._tools.get(name)
        if tool is None:
            upstream = self.upstream

            async def forward(**args: Any) -> Any:
                call = current_call()  # Guard's key for this call, handed on for servers that deduplicate too
                key = call.idempotency_key if call is not None else None
                result = await upstream.call_tool(name, unbind(args), meta={IDEMPOTENCY_META_KEYS[0]: key} if key
                                                  else None)
                if result.is_error:
                    raise ToolReportedError(result_text(result) or "the upstream tool answered isError")
                return result.model_dump(mode="json", by_alias=True, exclude_none=True)

            tool = self.guard.tool(forward, name=name)
            self._tools[name] = tool
        return tool

    async def _list_tools(self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None,
                          ) -> types.ListToolsResult:
        return await self.upstream.list_tools(params=params)

    async def _call_tool(self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams,
                         ) -> types.CallToolResult:
        args: dict[str, Any] = dict(params.arguments or {})
        if BINDING_FIELD in args:
            return error_result(f"the argument name {BINDING_FIELD!r} is reserved for Guard; nothing ran",
                                {"outcome": "ReservedArgument"})
        try:
            recorded = await self._guarded_call(params.name, args, _meta_key(params))
        except ApprovalPending as err:
            return error_result(err.message, {"outcome": "ApprovalPending", "approval_id": err.approval_id,
                                              "run_id": err.run_id, "call_id": err.call_id})
        except CallOutcomeError as err:
            return error_result(err.message, _outcome(err))
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
            earlier = self.guard.ledger.get_call(err.call_id) if err.call_id else None
            if (earlier is None or earlier.tool != name
                    or not self._same_call_other_definition(earlier.args_hash, name, args, earlier.args)):
                raise
            if earlier.state not in _NEVER_RAN:
                # It ran (or was refused) as the tool was defined then: never again under the same key.
                return error_result(
                    f"{name} changed upstream since call {earlier.call_id} with these arguments ended "
                    f"{earlier.state} under its earlier definition; it is not run or offered again (send a new "
                    "idempotency key for a new attempt)",
                    {"outcome": "DefinitionChanged", "state": earlier.state, "run_id": earlier.run_id,
                     "call_id": earlier.call_id})
            self.guard.log.warning("tool definition changed since the call was offered; its approval does not "
                                   "cover the new definition: asking again", tool=name, stale_call=earlier.call_id,
                                   definition=definition)
            # The earlier request no longer describes what would run: out of the reviewers' queue.
            self._withdraw(earlier.call_id, name)
            # A new call under a key of its own (arguments and definition): it waits for a new approval.
            key = f"{key}@{definition.removeprefix('sha256:')[:16]}"
            return await tool.acall_with(bound, key=key, call_id=self._call_id(key))

    def _withdraw(self, call_id: str, name: str) -> None:
        """End the earlier call of a tool that changed upstream: its request leaves the reviewers' queue, or, if it
        was approved already, the call expires (it never runs on an approval of another definition)."""
        approval = self.guard.ledger.approval_for_call(call_id)
        if approval is not None:
            self.guard.ledger.withdraw(approval.approval_id, actor="guard-mcp",
                                       reason=f"superseded: {name} changed upstream; a new approval was asked for "
                                              "the tool as it is defined now")

    async def _definition(self, name: str) -> str:
        """The hash of `name`'s definition as the upstream lists it now (listed afresh for each held call)."""
        tools = await list_all_tools(self.upstream)
        return definition_hash(next((t for t in tools if t.name == name), None))

    def _default_key(self, name: str, args: Mapping[str, Any]) -> str:
        # The hash Guard records (keyed when the arguments hold secrets): the key never lets a secret be guessed.
        return "mcp:" + _digest(_run_id(), name, self._args_hash(name, args))

    def _args_hash(self, name: str, args: Mapping[str, Any]) -> str:
        run = current_run()
        return self.guard.args_hash(run.team, name, args) if run is not None else args_hash(args)

    def _same_call_other_definition(self, recorded_hash: str, name: str, args: Mapping[str, Any],
                                    recorded: Mapping[str, Any]) -> bool:
        """True when the recorded call had exactly these arguments, bound to another tool definition."""
        old = recorded.get(BINDING_FIELD)
        return isinstance(old, str) and recorded_hash == self._args_hash(name, bind(args, old))

    def _call_id(self, key: str) -> str:
        """A held call's id, from its run and key: the same call sent again (a retry, a reconnect) is offered
        under the same id, so after a decision it gets that decision (a rejection and its reason) instead of
        a new request for approval. A new attempt after a rejection needs a new idempotency key."""
        return "mcp-call-" + _digest(_run_id(), key)


def _run_id() -> str:
    run = current_run()
    return run.run_id if run is not None else ""


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
