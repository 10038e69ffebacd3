"""`guard_tool(guard, tool)`: any LangChain `BaseTool`, guarded wherever it is used (an agent, a chain, a call).

The wrapper has the wrapped tool's name, description and argument schema, so a model sees the same tool.
Invoked with a tool call (`{"name", "args", "id", "type": "tool_call"}`, as `ToolNode` does), the tool call's id
is Guard's call id and a refused or failed call comes back as LangChain's error `ToolMessage`. Invoked with
plain arguments (no tool call id), a refusal raises Guard's typed outcome instead: Python callers get the
error, not prose. In deferred approval mode `ApprovalPending` propagates (use `GuardMiddleware` for LangGraph's
pause and resume).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from langchain_core.messages import ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from guard import CallOutcomeError, Guard

from .bridge import ToolBridge, as_tool_message, refusal_message

__all__ = ["GuardedLangChainTool", "guard_tool"]


def _split(tool: BaseTool, tool_input: Any) -> tuple[dict[str, Any], str | None]:
    """The model's arguments (injected state and runtime left out: they are not the model's) and the call id."""
    if isinstance(tool_input, dict) and cast(dict[str, Any], tool_input).get("type") == "tool_call":
        call = cast(ToolCall, tool_input)
        args, call_id = dict(call["args"]), call["id"]
    else:
        args, call_id = dict(cast(Mapping[str, Any], tool_input)), None
    schema: Any = tool.tool_call_schema
    fields: Any = getattr(schema, "model_fields", None)
    if isinstance(fields, dict):
        args = {k: v for k, v in args.items() if k in fields}
    return args, call_id


def _with_args(tool_input: Any, asked: Mapping[str, Any], run: Mapping[str, Any]) -> Any:
    """The tool input with the arguments Guard runs (a reviewer's edit of the model's), rest unchanged."""
    if run == asked:
        return tool_input

    def injected(given: Mapping[str, Any]) -> dict[str, Any]:  # what the model did not send (state, runtime)
        return {k: v for k, v in given.items() if k not in asked}

    if isinstance(tool_input, dict) and cast(dict[str, Any], tool_input).get("type") == "tool_call":
        call = cast(ToolCall, tool_input)
        return {**call, "args": {**injected(call["args"]), **run}}
    return {**injected(cast(Mapping[str, Any], tool_input)), **run}


class GuardedLangChainTool(BaseTool):
    """A `BaseTool` whose every invocation goes Guard's guarded path before the wrapped tool runs.

    `bridge` holds the guarded tool behind the policy name (one per Guard and name, shared with `GuardMiddleware`):
    declare its compensation and reconcile check there.
    """

    inner: BaseTool
    bridge: ToolBridge

    model_config = {"arbitrary_types_allowed": True}  # pydantic config, not shared state

    def _run(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - `invoke` is overridden
        raise NotImplementedError("GuardedLangChainTool runs through invoke()")

    def _finish(self, out: Any, recorded: Any, call_id: str | None) -> Any:
        if call_id is None:
            if isinstance(out, ToolMessage):
                return out.content
            return out if out is not None else recorded
        return as_tool_message(out, recorded, tool_call_id=call_id, name=self.name)

    def _refused(self, err: CallOutcomeError, call_id: str | None) -> Any:
        if call_id is None:
            raise err
        return refusal_message(err, tool_call_id=call_id, name=self.name)

    def invoke(
        self, input: str | dict[str, Any] | ToolCall, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        args, call_id = _split(self.inner, input)
        try:
            _, out, recorded = self.bridge.call(
                args, call_id, lambda run: self.inner.invoke(_with_args(input, args, run), config, **kwargs)
            )
        except CallOutcomeError as err:
            return self._refused(err, call_id)
        return self._finish(out, recorded, call_id)

    async def ainvoke(
        self, input: str | dict[str, Any] | ToolCall, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        args, call_id = _split(self.inner, input)
        try:
            _, out, recorded = await self.bridge.acall(
                args, call_id, lambda run: self.inner.ainvoke(_with_args(input, args, run), config, **kwargs)
            )
        except CallOutcomeError as err:
            return self._refused(err, call_id)
        return self._finish(out, recorded, call_id)


def guard_tool(
    guard: Guard, tool: BaseTool, *, name: str | None = None, external_ids: Mapping[str, str] | None = None
) -> GuardedLangChainTool:
    """Guard `tool` under the policy tool `name` (default: the tool's own name)."""
    bridge = ToolBridge.for_name(
        guard, name or tool.name, external_ids=external_ids, fallback=lambda args: tool.invoke(dict(args))
    )
    return GuardedLangChainTool(
        name=tool.name, description=tool.description, args_schema=tool.args_schema, inner=tool, bridge=bridge
    )
