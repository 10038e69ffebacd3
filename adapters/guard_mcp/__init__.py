"""Guard for MCP 2.x: a proxy server in front of any MCP server that guards every `tools/call`.

```sh
python -m guard_mcp --policies policies --db sqlite:///guard.db --team growth --event lead-42 -- \\
    python my_crm_server.py
```

The client talks MCP to the proxy over stdio; the proxy talks MCP to the upstream server it starts. Tool
annotations (`readOnlyHint`, `idempotentHint`, ...) only *suggest* a class for a new policy
(`suggest_policy`); the team's policy alone decides, and a tool it does not name is denied.
"""

from __future__ import annotations

try:
    import mcp  # noqa: F401  # pyright: ignore[reportUnusedImport]  # imported only to fail early with the install command
    import mcp_types  # noqa: F401  # pyright: ignore[reportUnusedImport]  # imported only to fail early with the install command
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("guard_mcp needs the MCP SDK 2.x: pip install 'guard-middleware[mcp]'") from exc

from .annotations import suggest_class, suggest_policy
from .proxy import IDEMPOTENCY_META_KEYS, GuardProxy, serve_stdio

__all__ = ["IDEMPOTENCY_META_KEYS", "GuardProxy", "serve_stdio", "suggest_class", "suggest_policy"]
