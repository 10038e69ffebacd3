"""MCP tool annotations as *suggestions* for a policy owner; never an input to a decision.

Annotations are hints the upstream server makes about itself (the MCP spec says so): a server can call a
payment tool read-only. So they only pre-fill a draft policy, the strictest reading winning; the proxy
classifies every call by the team's policy alone.
"""

from __future__ import annotations

from collections.abc import Iterable

import mcp_types as types

__all__ = ["suggest_class", "suggest_policy"]


def suggest_class(tool: types.Tool) -> str:
    """The side-effect class a policy owner might start from: `read` only when the server says read-only and
    not destructive, `idempotent` when it says idempotent and not destructive, else `irreversible`."""
    hints = tool.annotations
    if hints is None:
        return "irreversible"
    if hints.read_only_hint is True and hints.destructive_hint is not True:
        return "read"
    if hints.idempotent_hint is True and hints.destructive_hint is not True:
        return "idempotent"
    return "irreversible"


def suggest_policy(team: str, tools: Iterable[types.Tool]) -> str:
    """A draft policy (YAML) for `team` with one rule per tool; irreversible tools wait for an `owner` role.
    Review it before use: it is built from the server's own claims."""
    lines = [f"team: {team}", "# Draft from MCP tool annotations (hints, not facts): review every rule.",
             "reviewers: {}", "rules:"]
    for tool in tools:
        cls = suggest_class(tool)
        lines += [f"  - name: {tool.name.replace('.', '-').replace('_', '-')}", f"    tools: [{tool.name}]",
                  f"    class: {cls}"]
        if cls == "irreversible":
            lines.append("    approval: {roles: [owner]}")
    return "\n".join(lines) + "\n"
