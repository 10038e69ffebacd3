"""The proxy and the policy draft, from the command line.

```sh
python -m guard_mcp --policies DIR --db URL --team TEAM [--event ID | --run-id ID]
    [--serve stdio|http --host H --port P --path /mcp] [--compensate TOOL=COMPENSATING_TOOL ...]
    [--reconcile TOOL=LOOKUP_TOOL ...] [--call-timeout SECONDS] [--on-exit keep|complete]
    [--max-sessions N] [--session-wait SECONDS] [--session-idle SECONDS]
    (--upstream-url http://host:port/mcp | -- COMMAND [ARGS...])
python -m guard_mcp policy-init --team TEAM (--upstream-url URL | -- COMMAND [ARGS...]) > policies/TEAM.yaml
```
"""

from __future__ import annotations

import argparse
import sys

import anyio

from guard import Guard

from .annotations import suggest_policy
from .compensate import parse_compensation, parse_pair
from .places import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE, DEFAULT_SESSION_WAIT
from .proxy import DEFAULT_CALL_TIMEOUT
from .serve import ProxyConfig, serve
from .upstream import HttpUpstream, Upstream, connect, list_all_tools, stdio_upstream


def _upstream_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--upstream-url", default=None, help="the upstream server's streamable HTTP endpoint (instead of -- COMMAND)"
    )
    parser.add_argument("upstream", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...] of the upstream server")


def _upstream(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> Upstream:
    command: list[str] = ns.upstream[1:] if ns.upstream[:1] == ["--"] else ns.upstream
    if ns.upstream_url and command:
        parser.error("name the upstream once: --upstream-url URL or -- COMMAND, not both")
    if ns.upstream_url:
        return HttpUpstream(ns.upstream_url)
    if not command:
        parser.error("name the upstream server: --upstream-url URL, or -- COMMAND [ARGS...]")
    return stdio_upstream(command)


def proxy_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m guard_mcp",
        description="Guard proxy in front of an MCP server (see also: python -m guard_mcp policy-init --help)",
    )
    parser.add_argument("--policies", default="policies")
    parser.add_argument("--db", default=None, help="ledger URL (default GUARD_DATABASE_URL, else sqlite:///guard.db)")
    parser.add_argument("--team", required=True)
    parser.add_argument("--event", default=None, help="source event id: the run is <team>:<event>")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--approval", choices=["block", "defer"], default="defer")
    parser.add_argument("--approval-timeout", type=float, default=300.0, help="seconds a blocking wait lasts")
    parser.add_argument("--serve", choices=["stdio", "http"], default="stdio", help="how clients reach the proxy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--path", default="/mcp")
    parser.add_argument(
        "--compensate",
        action="append",
        default=[],
        metavar="TOOL=COMPENSATING_TOOL",
        help="the upstream tool that compensates TOOL in a saga (repeatable)",
    )
    parser.add_argument(
        "--reconcile",
        action="append",
        default=[],
        metavar="TOOL=LOOKUP_TOOL",
        help="the upstream tool that finds TOOL's effect by its idempotency key, asked when a "
        "call's outcome is unknown (repeatable)",
    )
    parser.add_argument(
        "--call-timeout",
        type=float,
        default=DEFAULT_CALL_TIMEOUT,
        help="seconds an upstream tools/call may take; past it the outcome is unknown (in doubt)",
    )
    parser.add_argument(
        "--on-exit",
        choices=["keep", "complete"],
        default=None,
        help="what the proxy's end (the client gone, SIGTERM) does to its run: keep it running for "
        "the next connection of the same event (the default with --event or --run-id) or "
        "complete it (the default without: a run of the proxy's own)",
    )
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        metavar="N",
        help="upstream sessions the proxy holds open for its clients at once (with a stdio upstream, server "
        "processes): pooled ones of 2026-era requests, listen streams, handshake-era connections "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--session-wait",
        type=float,
        default=DEFAULT_SESSION_WAIT,
        metavar="SECONDS",
        help="seconds a request waits for a free upstream session at the limit before it gets an MCP error "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--session-idle",
        type=float,
        default=DEFAULT_SESSION_IDLE,
        metavar="SECONDS",
        help="at the limit, a streamable HTTP client session idle this long (no request in flight, no open "
        "stream) is ended to make room; its client's next request gets 404 and starts a new session "
        "(default: %(default)s)",
    )
    parser.add_argument("--log-level", default="warning")
    _upstream_args(parser)
    ns = parser.parse_args(argv)
    if ns.max_sessions < 1:
        parser.error("--max-sessions must be at least 1")
    if not ns.session_wait >= 0:
        parser.error("--session-wait must be a number of seconds >= 0")
    if not ns.session_idle > 0:
        parser.error("--session-idle must be a number of seconds > 0")
    upstream = _upstream(parser, ns)
    try:
        compensations = dict(parse_compensation(text) for text in ns.compensate)
        reconciles = dict(parse_pair(text, "--reconcile", "LOOKUP_TOOL") for text in ns.reconcile)
    except ValueError as exc:
        parser.error(str(exc))
    config = ProxyConfig(
        upstream=upstream,
        team=ns.team,
        run_id=ns.run_id,
        source_event_id=ns.event,
        transport=ns.serve,
        host=ns.host,
        port=ns.port,
        path=ns.path,
        compensations=compensations,
        on_exit=ns.on_exit,
        reconciles=reconciles,
        call_timeout=ns.call_timeout,
        max_sessions=ns.max_sessions,
        session_wait=ns.session_wait,
        session_idle=ns.session_idle,
    )
    with Guard(
        policies=ns.policies,
        db=ns.db,
        approval=ns.approval,
        approval_timeout=ns.approval_timeout,
        log_level=ns.log_level,
    ) as guard:
        anyio.run(serve, guard, config)


def policy_init_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m guard_mcp policy-init",
        description="Print a draft policy (YAML) from the tools an MCP server lists "
        "and their annotations: a suggestion to review, never looser "
        "than the safest reading.",
    )
    parser.add_argument("--team", required=True, help="the team the draft is for (the file is <team>.yaml)")
    _upstream_args(parser)
    ns = parser.parse_args(argv)
    _upstream(parser, ns)  # the same checks of the arguments as the proxy's
    command: list[str] = ns.upstream[1:] if ns.upstream[:1] == ["--"] else ns.upstream
    sys.stdout.write(draft_policy(team=ns.team, upstream_url=ns.upstream_url, command=command))


def draft_policy(*, team: str, upstream_url: str | None, command: list[str]) -> str:
    """The draft policy YAML for `team` from an upstream server's tools: the `mcp` source of
    `guard policy init` (entry point group `guard.policy_sources`)."""
    upstream: Upstream = HttpUpstream(upstream_url) if upstream_url else stdio_upstream(command)

    async def draft() -> str:
        async with connect(upstream) as session:
            server = session.server_info.name if session.server_info is not None else None
            return suggest_policy(team, await list_all_tools(session), server=server)

    return anyio.run(draft)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["policy-init"]:
        policy_init_main(args[1:])
    else:
        proxy_main(args)


if __name__ == "__main__":
    main()
