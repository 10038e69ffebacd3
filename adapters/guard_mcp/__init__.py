"""Guard for MCP 2.x: a proxy server in front of any MCP server that guards every `tools/call`.

```sh
python -m guard_mcp --policies policies --db sqlite:///guard.db --team growth --event lead-42 -- \\
    python my_crm_server.py
python -m guard_mcp --serve http --port 8765 ... --upstream-url http://127.0.0.1:8000/mcp
python -m guard_mcp policy-init --team crm -- python my_crm_server.py > policies/crm.yaml
```

The client talks MCP to the proxy over stdio or streamable HTTP; the proxy talks MCP to the upstream server
(a command it starts, over stdio, or a streamable HTTP URL). A call the policy holds for a human is bound to
the upstream tool's definition: a tool changed after its approval waits for a new one. Tool annotations
(`readOnlyHint`, `idempotentHint`, ...) only *suggest* a class for a new policy (`policy-init`,
`suggest_policy`); the team's policy alone decides, and a tool it does not name is denied.
"""

from __future__ import annotations

try:
    import mcp  # noqa: F401  # pyright: ignore[reportUnusedImport]  # imported only to fail early with the install command
    import mcp_types  # noqa: F401  # pyright: ignore[reportUnusedImport]  # imported only to fail early with the install command
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("guard_mcp needs the MCP SDK 2.x: pip install 'guard-middleware[mcp]'") from exc

from .annotations import suggest_class, suggest_policy
from .compensate import compensation_args, declare_compensation
from .definitions import BINDING_FIELD, definition_hash
from .meta import IDEMPOTENCY_META_KEY, IDEMPOTENCY_META_KEYS, OUTCOME_META_KEY, upstream_key
from .places import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE, DEFAULT_SESSION_WAIT, SessionLimitReached
from .proxy import GuardProxy, ToolReportedError, UpstreamAnswered
from .serve import ProxyConfig, serve
from .upstream import HttpUpstream, Upstream, connect, list_tools_as_sent, stdio_upstream

__all__ = [
    "BINDING_FIELD",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_SESSION_IDLE",
    "DEFAULT_SESSION_WAIT",
    "IDEMPOTENCY_META_KEY",
    "IDEMPOTENCY_META_KEYS",
    "OUTCOME_META_KEY",
    "GuardProxy",
    "HttpUpstream",
    "ProxyConfig",
    "SessionLimitReached",
    "ToolReportedError",
    "Upstream",
    "UpstreamAnswered",
    "compensation_args",
    "connect",
    "declare_compensation",
    "definition_hash",
    "list_tools_as_sent",
    "serve",
    "stdio_upstream",
    "suggest_class",
    "suggest_policy",
    "upstream_key",
]
