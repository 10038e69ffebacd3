"""Guard for LangChain 1.x: every tool call of a `create_agent` agent goes Guard's guarded path.

```python
from guard import Guard
from guard_langchain import GuardMiddleware

guard = Guard(policies="policies", db="sqlite:///guard.db")
agent = create_agent(model, tools, middleware=[GuardMiddleware(guard, team="funnel")])
with guard.run("funnel", source_event_id="lead-42"):
    agent.invoke({"messages": [...]})
```

`guard_tool(guard, tool)` guards one `BaseTool` wherever it is used. A refused or failed call reaches the
model as LangChain's error tool message (`status="error"`), recorded in Guard's ledger first.
"""

from __future__ import annotations

try:
    import langchain.agents  # noqa: F401  # pyright: ignore[reportUnusedImport]  # imported only to fail early with the install command
    import langchain_core.tools  # noqa: F401  # pyright: ignore[reportUnusedImport]  # imported only to fail early with the install command
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("guard_langchain needs LangChain 1.x: pip install 'guard-middleware[langchain]'") from exc

from .bridge import ToolBridge, ToolReportedError
from .middleware import GuardMiddleware
from .tools import GuardedLangChainTool, guard_tool

__all__ = ["GuardMiddleware", "GuardedLangChainTool", "ToolBridge", "ToolReportedError", "guard_tool"]
