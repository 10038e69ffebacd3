"""The reviewer web page: sign in with a token, the queue, one approval with approve / reject forms.

Every page is rendered on the server from `html.py`. Pages need a session (else a redirect to /login); every
form post needs the session's CSRF token and must not come from another site. A decision redirects back to the
approval (post/redirect/get); a refused one shows the page again with the reason and the refusal's status.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Cookie, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from guard.server import html
from guard.server.auth import COOKIE, SESSION_TTL, Session, Sessions, bearer_reviewer, check_same_origin
from guard.server.brakes import Brakes, PausePoint
from guard.server.desk import Desk, DeskError
from guard.server.restarts_html import restarts_table

__all__ = ["PAGE_HEADERS", "pages_router"]

# No script, no framing (an approve button inside another site's frame is a clickjacking target), no caching.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer makes Chromium post forms with Origin: null
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
_NOTICES = {"rejected": "Rejected: the call will not run.", "repeat": "You had decided that already; nothing changed."}


def _notice(done: str | None, data: dict[str, Any]) -> str | None:
    """What the reviewer's decision did, as the approval stands now (a pause holds an approved call)."""
    if done == "approved":
        return f"Approved: {data['paused']}" if data.get("paused") else "Approved: the call may run now."
    if done == "pending":
        return (
            f"Your decision is recorded. The arguments on the table need {data['quorum']} approval(s) by role "
            f"{' or '.join(data['roles'])}."
        )
    return _NOTICES.get(done or "")


SessionCookie = Annotated[str | None, Cookie(alias=COOKIE, include_in_schema=False)]
# What a decision did, for the notice on the page it redirects to (an unknown one is a 422, as for any fixed set).
DoneQuery = Annotated[Literal["approved", "pending", "rejected", "repeat"] | None, Query()]


def page(body: str, status: int = 200) -> HTMLResponse:
    """A page of the reviewer's site, never cached."""
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def see_other(url: str) -> RedirectResponse:
    """After a form post (or without a session): go to `url` with a GET."""
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


def signed_out() -> HTMLResponse:
    """What a form post without a live session gets: the sign-in page, 401."""
    return page(html.login_page("sign in first: your session is missing or has ended"), 401)


def pages_router(desk: Desk, sessions: Sessions) -> APIRouter:
    """The page routes (left out of the OpenAPI document: it describes the API)."""
    router = APIRouter(include_in_schema=False)

    def session_of(cookie: str | None) -> Session | None:
        return sessions.read(cookie)

    @router.get("/login")
    def login_form() -> Response:
        return page(html.login_page())

    @router.post("/login")
    def login(request: Request, token: Annotated[str, Form(max_length=200)] = "") -> Response:
        try:
            check_same_origin(request)
            reviewer = bearer_reviewer(desk.ledger, f"Bearer {token}")
        except DeskError as err:
            return page(html.login_page(err.message), 401 if err.status == 401 else err.status)
        response = see_other("/")
        response.set_cookie(
            COOKIE,
            sessions.issue(reviewer),
            max_age=SESSION_TTL,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/logout")
    def logout(
        request: Request, cookie: SessionCookie = None, csrf_token: Annotated[str, Form(max_length=200)] = ""
    ) -> Response:
        session = session_of(cookie)
        if session is not None:
            try:
                sessions.check_form(request, session, csrf_token)
            except DeskError as err:
                return page(html.message_page("Refused", err.message), err.status)
            sessions.end(session)
        response = see_other("/login")
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/")
    def queue(cookie: SessionCookie = None) -> Response:
        session = session_of(cookie)
        if session is None:
            return see_other("/login")
        who = session.reviewer
        return page(html.queue_page(who.name, sessions.csrf_token(session), desk.queue(who)))

    @router.get("/approvals/{approval_id}")
    def approval(approval_id: str, cookie: SessionCookie = None, done: DoneQuery = None) -> Response:
        session = session_of(cookie)
        if session is None:
            return see_other("/login")
        csrf = sessions.csrf_token(session)
        try:
            data = desk.approval(session.reviewer, approval_id)
        except DeskError as err:
            return page(
                html.message_page("Not available", err.message, reviewer=session.reviewer.name, csrf=csrf), err.status
            )
        return page(html.approval_page(session.reviewer.name, csrf, data, notice=_notice(done, data)))

    @router.post("/approvals/{approval_id}/decision")
    def decide(
        request: Request,
        approval_id: str,
        cookie: SessionCookie = None,
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        decision: Annotated[str, Form(max_length=20)] = "",
        reason: Annotated[str, Form(max_length=4000)] = "",
        args_hash: Annotated[str, Form(max_length=128)] = "",
        edited_args: Annotated[str | None, Form(max_length=65536)] = None,
    ) -> Response:
        session = session_of(cookie)
        if session is None:
            return signed_out()
        who = session.reviewer
        csrf = sessions.csrf_token(session)
        try:
            sessions.check_form(request, session, csrf_token)
            choice = _decision(decision)
            result = desk.decide(
                who,
                approval_id,
                choice,
                reason=reason.strip() or None,
                args_hash=args_hash,
                edited_args=_edited(edited_args),
            )
        except DeskError as err:
            try:
                data = desk.approval(who, approval_id)
            except DeskError:
                return page(html.message_page("Refused", err.message, reviewer=who.name, csrf=csrf), err.status)
            return page(html.approval_page(who.name, csrf, data, error=err.message), err.status)
        done = "repeat" if result["repeat"] else str(result["state"])
        return see_other(f"/approvals/{approval_id}?done={done}")

    brakes = Brakes(desk)

    def pauses_view(
        session: Session, *, notice: str | None = None, error: str | None = None, status: int = 200
    ) -> Response:
        who = session.reviewer
        csrf = sessions.csrf_token(session)
        return page(
            html.pauses_page(
                who.name,
                csrf,
                brakes.active(who),
                desk.teams_of(who.name),
                notice=notice,
                error=error,
                restarts=restarts_table(brakes.restarts(who), csrf),
            ),
            status,
        )

    @router.get("/pauses")
    def pauses(
        cookie: SessionCookie = None,
        done: Annotated[Literal["paused", "lifted", "staged", "confirmed", "done"] | None, Query()] = None,
    ) -> Response:
        session = session_of(cookie)
        if session is None:
            return see_other("/login")
        return pauses_view(session, notice=_PAUSE_NOTICES.get(done or ""))

    @router.post("/pauses")
    @router.post("/pauses/lift")
    @router.post("/pauses/confirm")
    def pause_or_lift(
        request: Request,
        cookie: SessionCookie = None,
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        team: Annotated[str, Form(max_length=64)] = "",
        tool: Annotated[str, Form(max_length=200)] = "",
        run_id: Annotated[str, Form(max_length=128)] = "",
        reason: Annotated[str, Form(max_length=4000)] = "",
        stages: Annotated[str, Form(max_length=100)] = "",
    ) -> Response:
        session = session_of(cookie)
        if session is None:
            return signed_out()
        action = request.url.path.rsplit("/", 1)[-1]
        try:
            sessions.check_form(request, session, csrf_token)
            point = PausePoint(team, tool.strip() or None, run_id.strip() or None)
            if action == "confirm":
                done = "done" if brakes.confirm(session.reviewer, point, reason)["state"] == "done" else "confirmed"
            elif action == "lift" and stages.strip():
                brakes.restart(session.reviewer, point, reason, _stages(stages), None)
                done = "staged"
            elif action == "lift":
                brakes.unpause(session.reviewer, point, reason)
                done = "lifted"
            else:
                brakes.pause(session.reviewer, point, reason)
                done = "paused"
        except DeskError as err:
            return pauses_view(session, error=err.message, status=err.status)
        return see_other(f"/pauses?done={done}")

    return router


_PAUSE_NOTICES = {
    "paused": "Paused: new calls are denied now, and the owners are told.",
    "lifted": "Lifted: calls run again, and the owners are told.",
    "staged": "Staged restart started: the first stage's calls pass, then the pause holds for you.",
    "confirmed": "Stage confirmed: the next stage's calls pass.",
    "done": "Every stage passed: the pause is lifted.",
}


def _stages(text: str) -> list[int]:
    """`1,10,100` as call counts, or a 422 saying what is wrong."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise DeskError(
            422, "invalid", f"stages are call counts separated by commas, e.g. 1,10,100, not {text!r}"
        ) from None


def _edited(text: str | None) -> dict[str, Any] | None:
    """The edited arguments of the form's text area: a JSON object, or a 422 saying what is wrong."""
    if text is None:
        return None
    try:
        value: Any = json.loads(text)
    except ValueError as exc:
        raise DeskError(422, "invalid", f"the edited arguments are not JSON: {exc}") from exc
    except RecursionError:  # the parser's own depth limit: thousands of levels fit in the text area
        raise DeskError(
            422, "invalid", "the edited arguments are nested too deep to read: flatten them (at most 64 levels)"
        ) from None
    if not isinstance(value, dict):
        raise DeskError(422, "invalid", "the edited arguments must be a JSON object")
    return cast(dict[str, Any], value)


def _decision(value: str) -> Literal["approve", "reject"]:
    if value == "approve":
        return "approve"
    if value == "reject":
        return "reject"
    raise DeskError(422, "invalid", "the decision must be approve or reject")
