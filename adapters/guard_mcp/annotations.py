"""MCP tool annotations as *suggestions* for a policy owner; never an input to a decision.

Annotations are hints the upstream server makes about itself (the MCP spec says so): a server can call a
payment tool read-only. So they only pre-fill a draft policy (`python -m guard_mcp policy-init`), the
strictest reading winning; the proxy classifies every call by the team's policy alone, and a loaded policy
is never loosened by what a tool says about itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import mcp_types as types

__all__ = ["DRAFT_APPROVER_ROLE", "suggest_class", "suggest_policy"]

DRAFT_APPROVER_ROLE = "owner"


def suggest_class(tool: types.Tool) -> str:
    """The side-effect class a policy owner might start from, never looser than the safest reading:
    `read` only when the server says read-only (and not also destructive); `idempotent` only when it says
    idempotent and explicitly not destructive (the spec's default for `destructiveHint` is true: an
    idempotent delete is still a delete); anything else, missing hints included, `irreversible`."""
    hints = tool.annotations
    if hints is None:
        return "irreversible"
    if hints.read_only_hint is True and hints.destructive_hint is not True:
        return "read"
    if hints.idempotent_hint is True and hints.destructive_hint is False:
        return "idempotent"
    return "irreversible"


def _hints(tool: types.Tool) -> str:
    hints = tool.annotations
    if hints is None:
        return "no annotations"
    said = {
        "readOnlyHint": hints.read_only_hint,
        "destructiveHint": hints.destructive_hint,
        "idempotentHint": hints.idempotent_hint,
        "openWorldHint": hints.open_world_hint,
    }
    text = ", ".join(f"{name}={json.dumps(value)}" for name, value in said.items() if value is not None)
    return text or "no hints"


def _exact(tool: str) -> str:
    """The tool name as a policy pattern that matches only itself (glob characters escaped)."""
    return re.sub(r"([*?\[])", r"[\1]", tool)


def _rule_name(tool: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", tool).strip("-_.")[:90] or "tool"
    base = base if base[0].isalnum() else f"t{base}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def suggest_policy(team: str, tools: Iterable[types.Tool], *, server: str | None = None) -> str:
    """A draft policy (YAML, valid for `guard policy validate`) for `team`, one rule per tool.

    Irreversible tools wait for the `owner` role, held by a placeholder reviewer `change-me` for the policy
    owner to replace. Review it before use: it is built from the server's own claims, and a tool it does not
    list is denied like any tool no rule names.
    """
    tools = list(tools)
    source = f"the MCP server {server!r}" if server else "the MCP server"
    lines = [
        f"# DRAFT policy for team {team}: suggested by `python -m guard_mcp policy-init` from the tool",
        f"# annotations {source} reports about itself ({len(tools)} tools). Review every rule before use.",
        "# Annotations are hints, not facts: a server can call any tool read-only. Each tool gets the strictest",
        "# class its hints allow: read only for readOnlyHint (not destructive), idempotent for idempotentHint",
        "# (not destructive); anything else, missing hints included, is irreversible and waits for approval.",
        "# A tool no rule names is denied. Validate with `guard policy validate`; add a <team>.cases.yaml.",
        f"team: {team}",
        f"description: {json.dumps(f'Draft from the tool annotations of {source}; to review')}",
        f"# Who approves irreversible calls: replace `change-me` with the people holding {DRAFT_APPROVER_ROLE}.",
        "reviewers:",
        f"  change-me: [{DRAFT_APPROVER_ROLE}]",
        "rules:",
    ]
    taken: set[str] = set()
    for tool in tools:
        cls = suggest_class(tool)
        lines += [
            f"  - name: {_rule_name(tool.name, taken)}",
            f"    # suggested from {_hints(tool)}",
            f"    tools: [{json.dumps(_exact(tool.name))}]",
            f"    class: {cls}",
        ]
        if cls == "irreversible":
            lines.append(f"    approval: {{roles: [{DRAFT_APPROVER_ROLE}]}}")
    if not tools:
        lines[-1] = "rules: []"
    return "\n".join(lines) + "\n"
