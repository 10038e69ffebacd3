"""`create_app`: the approval service as one FastAPI app over a ledger and a directory of team policies.

Routes: `/api/...` (REST, bearer tokens; see `api.py`), `/`, `/login`, `/approvals/{id}` (the reviewer page;
see `pages.py`), `/health` (503 naming the database while it cannot be reached), and the OpenAPI document at
`/openapi.json`. Refusals are JSON `{"detail": sentence, "code": code, ...}` with the status `DeskError`
carries; a request (a body, a parameter, a filter value outside its fixed set) that does not validate is 422 with
the reason, as JSON on the API and as a page on the reviewer's site; a ledger that cannot be reached is 503
and nothing is decided.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from guard.errors import GuardUsageError, LedgerUnavailable
from guard.ledger import Ledger, resolve_url, shown_url
from guard.notify import Notifier
from guard.policy import LivePolicies
from guard.runtime.doors import ledger_of
from guard.server import html
from guard.server.api import router as api_router
from guard.server.auth import Sessions, bearer_reviewer
from guard.server.desk import Desk, DeskError
from guard.server.incidents import IncidentAgent
from guard.server.incidents_api import router as incidents_router
from guard.server.incidents_page import incident_pages_router
from guard.server.metrics import metrics_router
from guard.server.pages import page, pages_router
from guard.server.restarts_api import restarts_router
from guard.server.sealing import SealSchedule
from guard.server.slack import slack_router
from guard.server.slack_api import SlackApi

if TYPE_CHECKING:
    from guard.runtime import Guard

__all__ = ["create_app"]


def create_app(
    db_url: str | None,
    policies_dir: str | Path,
    *,
    session_secret: bytes | None = None,
    public_url: str = "http://127.0.0.1:8700",
    notify_every: float | None = 1.0,
    policies_every: float = 1.0,
    metrics_token: str | None = None,
    seals: SealSchedule | None = None,
    slack_api: SlackApi | None = None,
    agent: Guard | None = None,
    snapshots: str | Path | None = None,
) -> FastAPI:
    """The approval service over the ledger at `db_url` and the policies in `policies_dir`.

    `GET /metrics` gives the ledger's open work to Prometheus (see `guard.server.metrics`); with
    `metrics_token`, only to a request bearing it.

    The policy files are read again when they change (looked at every `policies_every` seconds at most), so
    a reviewer added to or taken off a team's `reviewers:` gains or loses authority without a restart.

    `session_secret` signs the page's session cookies; give every replica the same one. When None, a random
    secret is made: sessions end when the process does. While the app runs (its lifespan), a notifier thread
    tells the teams' webhooks (policy `notify:`) of waiting calls and halted runs every `notify_every`
    seconds, linking to the page at `public_url`; None runs no notifier. With `seals`, a thread seals the
    ledger on that schedule (and once more when the app stops). `POST /slack/actions` takes Approve and Reject from
    the teams' Slack apps (see `guard.server.slack`); `slack_api` is where it calls Slack (default from the
    environment, `SlackApi.from_env`).

    `agent` is the agent's Guard (`guard serve --app`), on this same ledger: with it, incident snapshots read
    records back through its tools' `.inspect` hooks and repairs run their compensations over the API (see
    `guard.server.incidents`). Snapshot files go to `snapshots` (default `guard-snapshots` in the working
    directory).

    Raises:
        LedgerNotReady: the ledger is at another schema revision (run `guard db upgrade`).
        PolicyError: the policy directory cannot be listed.
        GuardUsageError: `agent` writes to another ledger than the service's.
    """
    if agent is not None and ledger_of(agent).url != resolve_url(db_url):
        raise GuardUsageError(
            f"the agent's Guard writes to {shown_url(ledger_of(agent).url)}, the service reads "
            f"{shown_url(resolve_url(db_url))}: give both the same ledger (--db)"
        )
    ledger = Ledger(resolve_url(db_url))
    policies = LivePolicies(policies_dir, every=policies_every)
    desk = Desk(ledger, policies)
    sessions = Sessions(ledger, session_secret)

    notifier = Notifier(ledger, policies, public_url)
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncGenerator[None]:
        thread = None
        if notify_every is not None and any(p.notify for p in desk.policies.policies.values()):
            thread = threading.Thread(
                target=notifier.run, args=(stop, notify_every), name="guard-notifier", daemon=True
            )
            thread.start()
        sealer = None
        if seals is not None:
            sealer = threading.Thread(target=seals.run, args=(ledger, stop), name="guard-seals", daemon=True)
            sealer.start()
        yield
        stop.set()
        if thread is not None:
            thread.join(timeout=notifier.timeout * notifier.attempts + 5)
        if sealer is not None:
            sealer.join(timeout=30)
        ledger.close()

    app = FastAPI(
        title="Guard approval service",
        version="0.1.0",
        lifespan=lifespan,
        description="Reviewers decide the tool calls that wait for a human: list, show with full "
        "context, approve or reject (bound to the arguments' hash). Authenticate with "
        "`Authorization: Bearer <token>` from `guard tokens create --reviewer NAME`.",
    )
    app.state.desk = desk
    app.state.incident_agent = IncidentAgent(Path(snapshots or "guard-snapshots"), agent)
    app.state.notifier = notifier
    app.include_router(api_router)
    app.include_router(restarts_router)
    app.include_router(pages_router(desk, sessions))
    app.include_router(incidents_router)
    app.include_router(incident_pages_router(desk, sessions))
    app.include_router(metrics_router(ledger, metrics_token))
    app.include_router(slack_router(desk, slack_api or SlackApi.from_env(), public_url))

    @app.get(
        "/health",
        tags=["health"],
        responses={503: {"description": "the ledger's database cannot be reached; `database` names it"}},
    )
    def health() -> Any:
        """200 when the ledger answers a read; 503 naming the database (its password hidden) while it cannot be
        reached. The service keeps running meanwhile and answers 200 again once the database is back: its
        connections are opened again on the next request."""
        try:
            ledger.list_runs(limit=1)
        except LedgerUnavailable as exc:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "code": "ledger_unavailable",
                    "database": shown_url(ledger.url),
                    "detail": str(exc),
                },
                status_code=503,
            )
        return {
            "status": "ok",
            "database": shown_url(ledger.url),
            "teams": list(desk.policies.teams),
            "broken_policies": sorted(desk.policies.errors),
        }

    @app.middleware("http")
    async def authenticate_api(request: Request, call_next: Any) -> Any:  # pyright: ignore[reportUnusedFunction]
        """The API's token is checked before anything of the request is read: no body is parsed for a stranger."""
        if request.url.path.startswith("/api/"):
            try:
                request.state.reviewer = await run_in_threadpool(
                    bearer_reviewer, ledger, request.headers.get("authorization")
                )
            except DeskError as err:
                return JSONResponse(err.body(), status_code=err.status, headers=err.headers)
            except LedgerUnavailable as exc:  # raised here, the exception handlers below never see it
                return _unavailable(exc)
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:  # pyright: ignore[reportUnusedFunction]
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"detail": str(exc.detail), "code": code}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(DeskError)
    async def refused(_: Request, exc: DeskError) -> JSONResponse:  # pyright: ignore[reportUnusedFunction]
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:  # pyright: ignore[reportUnusedFunction]
        """422 with the reason (a filter outside its fixed set names the allowed values): JSON for the API, a page
        for the reviewer's site."""
        errors = [
            {
                "loc": [str(part) for part in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        reason = "; ".join(f"{'.'.join(e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors) or "invalid request"
        if _is_page(request):
            return page(html.message_page("Not a valid request", reason), 422)
        return JSONResponse({"detail": reason, "code": "invalid", "errors": errors}, status_code=422)

    @app.exception_handler(GuardUsageError)
    async def misused(request: Request, exc: GuardUsageError) -> Response:  # pyright: ignore[reportUnusedFunction]
        """A value the core refuses (a record filter, a scope) that no route caught: 422 with its reason."""
        if _is_page(request):
            return page(html.message_page("Not a valid request", str(exc)), 422)
        return JSONResponse({"detail": str(exc), "code": "invalid"}, status_code=422)

    @app.exception_handler(LedgerUnavailable)
    async def unavailable(_: Request, exc: LedgerUnavailable) -> JSONResponse:  # pyright: ignore[reportUnusedFunction]
        return _unavailable(exc)

    return app


def _is_page(request: Request) -> bool:
    """A request of the reviewer's site (not the API, Slack, metrics or health): its refusals are pages."""
    return not request.url.path.startswith(("/api/", "/slack/", "/metrics", "/health", "/openapi", "/docs"))


def _unavailable(exc: LedgerUnavailable) -> JSONResponse:
    return JSONResponse(
        {"detail": f"the ledger cannot be reached; nothing was decided ({exc})", "code": "ledger_unavailable"},
        status_code=503,
    )
