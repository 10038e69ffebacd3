"""Guard for Pydantic AI: every tool call of an `Agent` goes Guard's guarded path.

```python
from guard import Guard
from guard_pydantic_ai import ToolGuard
from pydantic_ai import Agent, DeferredToolRequests

guard = Guard(policies="policies", db="sqlite:///guard.db")
tools = ToolGuard(guard, team="funnel")
agent = Agent(model, tools=[...], capabilities=[tools.capability()], output_type=[str, DeferredToolRequests])
with guard.run("funnel", source_event_id="lead-42"):
    agent.run_sync("a new lead signed up")
```

`tools.wrap(toolset)` guards one toolset (a `FunctionToolset`, an MCP server, ...) instead of every tool of the
agent. A refused or failed call reaches the model as a failed or denied tool return (`[guard] <reason>`),
recorded in Guard's ledger first; a call waiting for a reviewer ends the run with `DeferredToolRequests`.
"""

from __future__ import annotations

try:
    import pydantic_ai  # noqa: F401  # pyright: ignore[reportUnusedImport]  # imported only to fail early with the install command
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("guard_pydantic_ai needs Pydantic AI: pip install 'guard-middleware[pydantic-ai]'") from exc

from .bridge import ToolBridge
from .toolset import GuardCapability, GuardedToolset, ToolGuard

__all__ = ["GuardCapability", "GuardedToolset", "ToolBridge", "ToolGuard"]
