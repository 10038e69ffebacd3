"""`ToolBridge`: Guard's `FrameworkBridge` for the OpenAI Agents SDK, and what the ledger records of a tool's output.

Guard runs a registered function; the Agents SDK runs a `FunctionTool` through `on_invoke_tool(ctx, json)`
(argument parsing and validation, context injection, the function in a worker thread when it is sync). The
bridge (in Guard's core) joins them: the adapter hands the SDK's execution of *this* call to `acall` with the
call's id and arguments, and Guard's body awaits it. So classify, brakes, `offered`, dedupe, the gate, `started`,
retries and `completed` / `failed` happen around the SDK's own execution, and a call Guard refuses or
deduplicates never reaches it. One bridge per Guard and policy tool name: every `GuardedTools` on the same Guard
shares it.

What the SDK adds here: the ledger records the tool's return value (a JSON object in a text is recorded as that
object, a pydantic model as its JSON form, so a policy's `external_ids` fields can be read from it). An
exception from the tool is a failure: Guard records it and its policy decides (retry, compensate, halt) - never
a success with sad prose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from guard import CompensationKind, FrameworkBridge, Guard

__all__ = ["CompensationKind", "ToolBridge", "recordable"]


def recordable(out: Any) -> Any:
    """The JSON value Guard records for a tool's output (a JSON object in a text becomes that object)."""
    model_dump: Any = getattr(out, "model_dump", None)  # a pydantic model returned by the tool
    if callable(model_dump):
        return model_dump(mode="json")
    return FrameworkBridge.parse_json_text(out)


class ToolBridge(FrameworkBridge):
    """The guarded tool behind one policy tool name, for SDK calls of any tool under that name.

    A `FrameworkBridge` (see there: `acall`, `fallback`, `.compensation(name=...)`, `.reconcile`, `.verify`,
    `.handoff(role)`) that records the SDK's outputs with `recordable`. The SDK's calls are async only (`acall`);
    the sync guarded tool runs `fallback` for recovery and operators. Get it with
    `ToolBridge.for_name(guard, name)`: one per Guard and name.
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
            guard, name, record=recordable, external_ids=external_ids, fallback=fallback, framework="Agents SDK"
        )
