"""Tool definition binding: an approval covers the tool as the reviewer saw it, not whatever it became later.

Guard binds an approval to the canonical hash of the call's arguments. For a call the policy holds for a
human, the proxy adds one argument, `guard/tool_definition`: the hash of the upstream tool's canonical
definition (name, title, description, input and output schema, annotations) at the moment of the call. The
reviewer sees it with the arguments; the upstream server never does (the proxy takes it out before forwarding).
When the upstream changes the tool, the same call has another argument hash, so the old approval does not
cover it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import mcp_types as types

from guard import args_hash

__all__ = ["BINDING_FIELD", "args_by_name", "bind", "definition_hash", "unbind"]

BINDING_FIELD = "guard/tool_definition"
# What a reviewer relies on when approving a call: what the tool says it does and what it takes.
_BOUND_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


def definition_hash(tool: types.Tool | None) -> str:
    """`sha256:<hex>` of the tool's canonical definition; `unlisted` for a tool the server does not list."""
    if tool is None:
        return "unlisted"
    data = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    return args_hash({name: data[name] for name in _BOUND_FIELDS if name in data})


def bind(args: Mapping[str, Any], definition: str) -> dict[str, Any]:
    """The arguments Guard records and the approval binds to: the call's own plus the definition hash."""
    return {**args, BINDING_FIELD: definition}


def unbind(args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments the upstream tool gets: the binding taken out."""
    return {name: value for name, value in args.items() if name != BINDING_FIELD}


def args_by_name(schema: Mapping[str, Any], sources: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Arguments for an upstream tool of input `schema`, each property taken by name from the first source that
    has it; and the required properties no source had (a look-up or compensation that cannot be asked)."""
    properties = cast(Mapping[str, Any], schema.get("properties") or {})
    args: dict[str, Any] = {}
    for name in properties:
        for source in sources:
            if name in source:
                args[name] = source[name]
                break
    missing = [name for name in cast(list[str], schema.get("required") or []) if name not in args]
    return args, missing
