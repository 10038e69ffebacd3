"""`guard serve` and `guard tokens ...`: the approval service and the reviewer tokens it accepts.

A token names a reviewer; what they may decide comes from the team policies (`reviewers:`) when they act.
Only the token's SHA-256 is stored: `tokens create` prints the secret once, and nothing can show it again.
The server (FastAPI, uvicorn) is imported only by `serve`, so the other commands start without it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from guard.cli.choices import LOG_LEVELS
from guard.cli.common import (
    By,
    DbOption,
    JsonFlag,
    PoliciesDir,
    ago,
    echo,
    emit,
    fail,
    guarded_command,
    open_ledger,
    operator_name,
    policy_dir,
)
from guard.policy import PolicySet

__all__ = ["serve", "tokens_app"]

tokens_app = typer.Typer(help="Reviewer tokens for the approval service (`guard serve`).", no_args_is_help=True)


@tokens_app.command("create")
@guarded_command
def create(
    reviewer: Annotated[
        str, typer.Option("--reviewer", help="The reviewer, as named under `reviewers:` in a team policy.")
    ],
    label: Annotated[str | None, typer.Option(help="What the token is for (kept, shown by list).")] = None,
    by: By = None,
    db: DbOption = None,
    policies: PoliciesDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a token for a reviewer and print its secret once (only its hash is kept)."""
    teams = [t for t, p in PolicySet.load_dir(policy_dir(policies)).policies.items() if reviewer in p.reviewers]
    if not teams:
        fail(f"no team policy lists {reviewer!r} under `reviewers:`; a token for them could decide nothing", 2)
    ledger = open_ledger(db)
    token, secret = ledger.create_token(reviewer, by=operator_name(by), label=label)
    if as_json:
        emit(token.to_dict() | {"token": secret, "teams": teams})
        return
    echo(f"token {token.token_id} for {reviewer} (reviewer of {', '.join(teams)}):")
    echo(f"  {secret}")
    echo(
        "Keep it now: it is not stored and cannot be shown again. Revoke it with "
        f"`guard tokens revoke {token.token_id}`."
    )


@tokens_app.command("list")
@guarded_command
def list_tokens(
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List tokens (never their secrets), oldest first."""
    tokens = open_ledger(db).list_tokens(include_revoked=include_revoked)
    if as_json:
        emit([t.to_dict() for t in tokens])
        return
    if not tokens:
        echo("no tokens")
        return
    now = time.time()
    for t in tokens:
        state = "active" if t.active else f"revoked by {t.revoked_by}"
        echo(
            f"{t.token_id}  {t.reviewer:<14} created {ago(t.created_at, now)} by {t.created_by}  [{state}]"
            + (f"  {t.label}" if t.label else "")
        )


@tokens_app.command("revoke")
@guarded_command
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token id (see `guard tokens list`).")],
    by: By = None,
    db: DbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a token: it stops working at once, in the API and in every page session made with it."""
    token = open_ledger(db).revoke_token(token_id, by=operator_name(by))
    if as_json:
        emit(token.to_dict())
        return
    echo(f"token {token.token_id} of {token.reviewer} is revoked")


@guarded_command
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = 8700,
    public_url: Annotated[
        str | None,
        typer.Option(
            help="The page's address as reviewers reach it, for the links in notifications.",
            show_default="http://HOST:PORT",
        ),
    ] = None,
    db: DbOption = None,
    policies: PoliciesDir = None,
    log_level: Annotated[
        str,
        typer.Option(
            parser=LOG_LEVELS,
            metavar="LEVEL",
            help="uvicorn log level: critical, error, warning, info, debug or trace.",
        ),
    ] = "info",
    seal_every: Annotated[
        float | None,
        typer.Option(
            "--seal-every",
            envvar="GUARD_SEAL_EVERY",
            help="Seal the ledger every SECONDS (needs the seal key "
            "in $GUARD_SEAL_KEY_FILE or --seal-key-env, and $GUARD_SEAL_SINK; each seal also goes to "
            "$GUARD_SEAL_WEBHOOK_URL, signed with $GUARD_SEAL_WEBHOOK_KEY, when both are set).",
        ),
    ] = None,
    seal_key_env: Annotated[
        str | None, typer.Option("--seal-key-env", help="Name of an environment variable holding the seal key's PEM.")
    ] = None,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            help="The agent's Guard (module:attribute) on this ledger: incident snapshots read records back through "
            "its tools' .inspect hooks, and repairs run their compensations, over the API.",
            show_default="no agent tools: snapshots hold ledger facts, repairs are refused",
        ),
    ] = None,
    snapshots: Annotated[Path, typer.Option(help="Where incident snapshots taken over the API are written.")] = Path(
        "guard-snapshots"
    ),
) -> None:
    """Start the approval service: the reviewer page at / and the REST API at /api (OpenAPI at /openapi.json).

    Page sessions are signed with $GUARD_SESSION_SECRET (give every replica the same one); without it, a
    random secret, so sessions end when the server stops. Teams with a `notify:` webhook in their policy are
    told of waiting calls and halted runs (see `guard notifications list`). Prometheus reads /metrics; set
    $GUARD_METRICS_TOKEN to require it as a bearer token there. With --seal-every, the service seals the ledger
    on that schedule (see `guard ledger seal`). With --app, the service holds the agent's tools, so operators take
    incident snapshots and repair over the API and the page (see `guard incident`).
    """
    try:
        import uvicorn

        from guard.server import create_app
    except ImportError as exc:
        fail(f"the approval service needs its extra: pip install 'guard-middleware[server]' ({exc})", 2)
    from guard.ledger import resolve_url

    secret = os.environ.get("GUARD_SESSION_SECRET")
    seals = None
    if seal_every is not None:
        from guard.ledger import Signer
        from guard.server.sealing import SealSchedule, SealWitness

        sink = os.environ.get("GUARD_SEAL_SINK")
        if seal_every <= 0 or not sink:
            fail("--seal-every needs a positive number of seconds and $GUARD_SEAL_SINK (the file seals go to)")
        witness_url, witness_key = os.environ.get("GUARD_SEAL_WEBHOOK_URL"), os.environ.get("GUARD_SEAL_WEBHOOK_KEY")
        if bool(witness_url) != bool(witness_key):
            fail(
                "a seal witness needs both $GUARD_SEAL_WEBHOOK_URL and $GUARD_SEAL_WEBHOOK_KEY (Guard never sends "
                "unsigned); set both, or neither"
            )
        witness = SealWitness(witness_url, witness_key.encode()) if witness_url and witness_key else None
        seals = SealSchedule(
            Signer.load(key_file=os.environ.get("GUARD_SEAL_KEY_FILE"), key_env=seal_key_env),
            Path(sink),
            seal_every,
            witness,
        )
    agent = None
    if app_spec is not None:
        from guard.cli.common import load_app

        agent = load_app(app_spec, db)
    app = create_app(
        resolve_url(db),
        policy_dir(policies),
        session_secret=secret.encode() if secret else None,
        public_url=public_url or f"http://{host}:{port}",
        metrics_token=os.environ.get("GUARD_METRICS_TOKEN") or None,
        seals=seals,
        agent=agent,
        snapshots=snapshots,
    )
    echo(f"Guard approval service on http://{host}:{port}/ (API /api, OpenAPI /openapi.json, metrics /metrics)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
