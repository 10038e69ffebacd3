"""`ToolBridge`: Guard's `FrameworkBridge` for Pydantic AI, and what the ledger records of a tool's return.

Guard runs a registered function; Pydantic AI runs a tool through its toolsets (argument validation done,
`RunContext` injected, inner wrappers, an MCP server's round trip). The bridge (in Guard's core) joins them: the
toolset hands the framework's execution of *this* call to `acall` with the call's id and arguments, and Guard's
body awaits it. So classify, brakes, `offered`, dedupe, the gate, `started`, retries and `completed` / `failed`
all happen around the framework's own execution, and a call Guard refuses or deduplicates never reaches it. One
bridge per Guard and policy tool name: every `ToolGuard` on the same Guard shares it.

What Pydantic AI adds here: the ledger records the tool's return as JSON (a `ToolReturn`'s `return_value`; a
model or dataclass as its JSON form), so a policy's `external_ids` fields can be read from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic_ai.messages import ToolReturn
from pydantic_core import to_jsonable_python

from guard import BridgedCall, CompensationKind, FrameworkBridge, Guard

__all__ = ["Answer", "CompensationKind", "ToolBridge", "recordable"]

Answer = BridgedCall  # a guarded call's end: (ran, out, recorded); the name this adapter has always used


def recordable(out: Any) -> Any:
    """The JSON value Guard records for a tool's return."""
    if isinstance(out, ToolReturn):
        out = out.return_value  # pyright: ignore[reportUnknownMemberType]  # ToolReturn is generic in its value
    return to_jsonable_python(out, fallback=repr)


class ToolBridge(FrameworkBridge):
    """The guarded tool behind one policy tool name, for Pydantic AI calls of any tool under that name.

    A `FrameworkBridge` (see there: `acall`, `fallback`, `.compensation(name=...)`, `.reconcile`, `.verify`,
    `.handoff(role)`) that records Pydantic AI's returns with `recordable`. The framework's calls are async only
    (`acall`); the sync guarded tool runs `fallback` for recovery and operators. Get it with
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
            guard, name, record=recordable, external_ids=external_ids, fallback=fallback, framework="Pydantic AI"
        )
