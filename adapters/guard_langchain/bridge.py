"""`ToolBridge`: Guard's `FrameworkBridge` for LangChain, and how a guarded call's end becomes a tool message.

Guard runs a registered function; LangChain runs a tool through its `ToolNode` (argument validation, injected
state, callbacks, inner middleware). The bridge (in Guard's core) joins them: the adapter hands LangChain's
execution of *this* call to `call` / `acall` with the tool call's id and arguments, and Guard's body runs it. So
classify, brakes, `offered`, dedupe, the gate, `started`, retries and `completed` / `failed` all happen around
the framework's own execution, and a call Guard refuses or deduplicates never reaches it. One bridge per Guard
and policy tool name: every `GuardMiddleware` and `guard_tool` on the same Guard shares it.

What LangChain adds here: the ledger records the tool message's content (a JSON object in a text content is
recorded as that object, so a policy's `external_ids` fields can be read from it); a deduplicated call gets a
tool message rebuilt from that record. A tool message with `status="error"` is a failure (`ToolReportedError`):
Guard records it as one and its policy decides (retry, compensate, halt) - never a success with sad prose.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.types import Command

from guard import CallOutcomeError, FrameworkBridge, Guard

__all__ = ["ToolBridge", "ToolReportedError", "as_tool_message", "refusal_message"]


class ToolReportedError(Exception):
    """The tool answered with an error tool message (`status="error"`): recorded by Guard as a failure."""


def _record(out: Any) -> Any:
    """The JSON value Guard records for a framework output."""
    if isinstance(out, Command):
        return {"command": "state update"}  # a LangGraph Command updates the graph; only that it did is recorded
    return FrameworkBridge.parse_json_text(out.content if isinstance(out, ToolMessage) else out)


def _check(out: Any) -> None:
    if isinstance(out, ToolMessage) and out.status == "error":
        raise ToolReportedError(out.text)


class ToolBridge(FrameworkBridge):
    """The guarded tool behind one policy tool name, for LangChain calls of any tool under that name.

    A `FrameworkBridge` (see there: `call` / `acall`, `fallback`, `.compensation(name=...)`, `.reconcile`,
    `.verify`, `.handoff(role)`) that records LangChain's outputs and fails on an error tool message. Get it
    with `ToolBridge.for_name(guard, name)`: one per Guard and name.
    """

    def __init__(
        self,
        guard: Guard,
        name: str,
        *,
        external_ids: Mapping[str, str] | None = None,
        fallback: Callable[[Mapping[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(
            guard,
            name,
            record=_record,
            check=_check,
            external_ids=external_ids,
            fallback=fallback,
            framework="LangChain",
        )


def _content(recorded: Any) -> str | list[str | dict[str, Any]]:
    if isinstance(recorded, str):
        return recorded
    if isinstance(recorded, list):
        return recorded  # pyright: ignore[reportUnknownVariableType]  # content blocks, recorded as they came
    return json.dumps(recorded, ensure_ascii=False)


def as_tool_message(
    out: ToolMessage | Command[Any] | None, recorded: Any, *, tool_call_id: str, name: str
) -> ToolMessage | Command[Any]:
    """What the agent gets: LangChain's own output when the tool ran now, else one rebuilt from the record."""
    if out is not None:
        return out
    return ToolMessage(
        content=_content(recorded), tool_call_id=tool_call_id, name=name, artifact={"guard": {"deduplicated": True}}
    )


def refusal_message(err: CallOutcomeError, *, tool_call_id: str, name: str) -> ToolMessage:
    """A refused or failed call as LangChain's error tool message; the typed outcome rides in the artifact."""
    return ToolMessage(
        content=f"[guard] {err.message}",
        tool_call_id=tool_call_id,
        name=name,
        status="error",
        artifact={
            "guard": {
                "outcome": type(err).__name__,
                "state": err.state,
                "run_id": err.run_id,
                "call_id": err.call_id,
                "tool": err.tool,
            }
        },
    )
