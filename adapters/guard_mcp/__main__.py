"""`python -m guard_mcp --policies DIR --db URL --team TEAM [--event ID | --run-id ID] -- COMMAND [ARGS...]`"""

from __future__ import annotations

import argparse
import os
import sys

import anyio
from mcp.client.stdio import StdioServerParameters

from guard import Guard

from .proxy import serve_stdio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m guard_mcp", description="Guard proxy in front of an MCP server")
    parser.add_argument("--policies", default="policies")
    parser.add_argument("--db", default=None, help="ledger URL (default GUARD_DATABASE_URL, else sqlite:///guard.db)")
    parser.add_argument("--team", required=True)
    parser.add_argument("--event", default=None, help="source event id: the run is <team>:<event>")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--approval", choices=["block", "defer"], default="defer")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("upstream", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...] of the upstream server")
    ns = parser.parse_args(argv)
    command = [a for a in ns.upstream if a != "--"] if ns.upstream[:1] == ["--"] else ns.upstream
    if not command:
        parser.error("name the upstream server after --")
    with Guard(policies=ns.policies, db=ns.db, approval=ns.approval, log_level=ns.log_level) as guard:
        # The upstream server gets this process's environment (the SDK's default passes only a safe few).
        upstream = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
        anyio.run(lambda: serve_stdio(guard, upstream, team=ns.team, run_id=ns.run_id, source_event_id=ns.event))


if __name__ == "__main__":
    main(sys.argv[1:])
