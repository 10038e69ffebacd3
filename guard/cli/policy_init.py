"""`guard policy init`: a first policy for a team, to review before it guards anything.

Without a source it prints a skeleton that denies everything (the starting point of every policy). With an
upstream (`-- COMMAND...` or `--upstream-url`), an installed policy source drafts one from the tools that server
lists: sources are entry points of the group `guard.policy_sources` (the MCP adapter registers `mcp`), so the
core never imports an adapter. A draft only suggests: a tool's own annotations can never loosen a policy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from guard.cli.common import fail

__all__ = ["init"]

GROUP = "guard.policy_sources"

SKELETON = """\
# Draft policy for team {team}: review it, then `guard policy validate policies/{team}.yaml`.
# A tool no rule matches is denied: start from nothing allowed and add what the agent may do.
team: {team}
description: What this team's agent does, in one sentence.
secrets: []                  # argument names to redact everywhere (password, token, ... always are)
reviewers: {{}}               # name: [roles] of the people who may approve held calls
rules:
  - name: reads
    tools: [example.lookup]  # exact names or globs
    class: read              # read | idempotent | compensable | irreversible
  # - name: big-invoice
  #   tools: [billing.create_invoice]
  #   when: {{amount_cents: {{gt: 50000}}}}
  #   class: compensable
  #   approval: {{roles: [finance], expires_after: 30m}}
  #   on_failure: compensate
"""


def init(
    ctx: typer.Context,
    team: Annotated[str, typer.Option(help="The team the policy is for (the file is policies/<team>.yaml).")],
    source: Annotated[str, typer.Option("--from", help="The policy source for an upstream server.")] = "mcp",
    upstream_url: Annotated[str | None, typer.Option(help="The upstream server's URL (instead of -- COMMAND).")] = None,
) -> None:
    """Print a first policy: a deny-everything skeleton, or a draft from an MCP server's tools
    (`guard policy init --team crm -- python crm_server.py`). Review it before use."""
    command = list(ctx.args)
    if not command and upstream_url is None:
        typer.echo(SKELETON.format(team=team), nl=False)
        return
    from importlib.metadata import entry_points  # scans every installed package: only when asked

    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if source not in found:
        hint = "pip install 'guard-middleware[mcp]'" if source == "mcp" else f"install the {source} adapter"
        fail(f"no policy source {source!r} is installed ({', '.join(sorted(found)) or 'none'} are): {hint}", 2)
    draft: Any = found[source].load()
    try:
        text = draft(team=team, upstream_url=upstream_url, command=command)
    except Exception as exc:  # noqa: BLE001 (another package's source: any failure is a failed read, said)
        fail(
            f"could not read the tools of the upstream server ({type(exc).__name__}: {exc}); check that "
            "`-- COMMAND` starts an MCP server, or that --upstream-url answers"
        )
    typer.echo(str(text), nl=False)
