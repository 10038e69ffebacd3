"""The incidents on the reviewer page: the list (with a form to open one, for owners and operators), one incident
(status update, counts, the records with filters, verdicts one by one or by filter, the shared log with a note form,
and close for owners and operators).

Same sessions, CSRF tokens and same-origin checks as the approvals' page; plain forms, no script. A post
redirects back (post/redirect/get); a refused one shows the page again with the reason and its status.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from guard.errors import GuardUsageError
from guard.incidents import VERDICTS, RecordFilter, Scope
from guard.ledger import CallState
from guard.server import html
from guard.server.auth import Session, Sessions
from guard.server.desk import Desk, DeskError
from guard.server.filters import CallStateForm, JudgedForm, PageCallState, PageIncidentState, PageJudged
from guard.server.incidents import IncidentDesk
from guard.server.pages import SessionCookie, page, see_other, signed_out
from guard.spans import parse_when

__all__ = ["incident_pages_router"]

_e = html.text
_VERDICTS = ("wrong", "safe", "unclear")
# Fixed texts: a link cannot make the page say something Guard did not (the totals are in the summary above).
_NOTICES = {"judged": "Verdicts recorded.", "noted": "Noted.", "closed": "Closed.", "opened": "Incident opened."}
_SEVERAL = "(runs of several teams)"


def _open_form(csrf: str, teams: list[str], given: dict[str, str]) -> str:
    """The form that opens an incident: a title, a team (or runs of several teams), what is in scope."""
    if not teams:
        return ""
    chosen = given.get("team", "")
    options = "".join(
        f'<option value="{_e(t)}"{" selected" if t == chosen else ""}>{_e(t or _SEVERAL)}</option>'
        for t in (*teams, "")
    )

    def field(name: str, label: str, hint: str = "") -> str:
        return (
            f'<label for="o-{name}">{label}</label><input type="text" id="o-{name}" name="{name}" '
            f'value="{_e(given.get(name, ""))}"{f" placeholder={chr(34)}{hint}{chr(34)}" if hint else ""}>'
        )

    return (
        '<h2>Open an incident</h2><form method="post" action="/incidents" aria-label="Open an incident">'
        f'<input type="hidden" name="csrf_token" value="{_e(csrf)}">'
        + field("title", "What went wrong")
        + f'<label for="o-team">Team</label><select id="o-team" name="team">{options}</select>'
        + field("source_events", "Source events (space separated)")
        + field("runs", "Runs (space separated)")
        + field("tools", "Tool globs (space separated)")
        + field("since", "From", "2h, 7d or 2026-12-04T09:10")
        + field("until", "To", "empty: now")
        + field("owner", "Owner", "you")
        + '<button type="submit">Open the incident</button></form>'
    )


def _list_page(
    who: str,
    csrf: str,
    items: list[dict[str, Any]],
    state: str | None,
    teams: list[str] | None = None,
    given: dict[str, str] | None = None,
    error: str | None = None,
) -> str:
    rows = "".join(
        f'<tr><td><a href="/incidents/{_e(i["incident_id"])}">{_e(i["title"])}</a></td>'
        f"<td>{_e(i['team'] or ', '.join(i['teams']))}</td>"
        f"<td>{_e(i['state'])}</td><td>{_e(i['owner'])}</td><td>{html.when(i['opened_at'])}</td></tr>"
        for i in items
    )
    choices = "".join(
        f'<option value="{v}"{" selected" if v == (state or "") else ""}>{v or "all"}</option>'
        for v in ("", "open", "closed")
    )
    body = (
        "<h1>Incidents</h1>"
        + (f'<p class="error" role="alert">{_e(error)}</p>' if error else "")
        + '<form method="get" action="/incidents"><label for="state">State</label>'
        f'<select id="state" name="state">{choices}</select> <button type="submit">Show</button></form>'
        + (
            f"<table><thead><tr><th>Title</th><th>Team</th><th>State</th><th>Owner</th><th>Opened</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>"
            if items
            else "<p>No incidents.</p>"
        )
        + _open_form(csrf, teams or [], given or {})
    )
    return html.layout("Incidents", body, reviewer=who, csrf=csrf)


def _filters(inc: str, f: dict[str, str]) -> str:
    def field(name: str, label: str) -> str:
        return (
            f'<label for="f-{name}">{label}</label><input type="text" id="f-{name}" name="{name}" '
            f'value="{_e(f.get(name) or "")}">'
        )

    def choice(name: str, label: str, values: tuple[str, ...]) -> str:
        """A select of the fixed set the filter takes (empty: any), so the page offers nothing it would refuse."""
        chosen = f.get(name) or ""
        options = "".join(
            f'<option value="{_e(v)}"{" selected" if v == chosen else ""}>{_e(v or "any")}</option>'
            for v in ("", *values)
        )
        return f'<label for="f-{name}">{label}</label><select id="f-{name}" name="{name}">{options}</select>'

    return (
        f'<form method="get" action="/incidents/{_e(inc)}" aria-label="Filter records">'
        + field("system", "System")
        + choice("state", "State", tuple(s.value for s in CallState))
        + field("tool", "Tool (glob)")
        + choice("judged", "Verdict now (none: not judged)", (*VERDICTS, "none"))
        + '<button type="submit">Filter</button></form>'
    )


def _detail_page(
    who: str,
    csrf: str,
    d: dict[str, Any],
    records: list[dict[str, Any]],
    f: dict[str, str],
    *,
    notice: str | None = None,
    error: str | None = None,
) -> str:
    inc = d["incident_id"]
    hidden = f'<input type="hidden" name="csrf_token" value="{_e(csrf)}">'
    keep = "".join(f'<input type="hidden" name="{k}" value="{_e(v)}">' for k, v in f.items() if v)
    counts = "".join(
        f"<tr><td>{_e(s)}</td><td>{_e(', '.join(f'{n} {st}' for st, n in states.items()))}</td></tr>"
        for s, states in d["by_system"].items()
    )
    status = "".join(f"<li>{_e(line)}</li>" for line in d["status"])
    rows = "".join(
        f'<tr><td><input type="checkbox" name="call_ids" value="{_e(r["call_id"])}" id="r-{_e(r["call_id"])}" '
        f'aria-label="select record {_e(r["call_id"])}"></td><td>{_e(r["system"])}</td><td>{_e(r["tool"])}</td>'
        f"<td>{_e(r['state_words'])}</td><td>{_e(' '.join(f'{k}={v}' for k, v in r['external_ids'].items()))}</td>"
        f'<td class="verdict">{_e(r["verdict"] or "not judged")}</td><td>{_e(r["judged_by"])}</td></tr>'
        for r in records
    )
    options = "".join(f'<option value="{v}">{v}</option>' for v in _VERDICTS)
    tag_form = (
        f'<form method="post" action="/incidents/{_e(inc)}/verdicts" aria-label="Judge records">{hidden}{keep}'
        f"<table><thead><tr><th>Pick</th><th>System</th><th>Tool</th><th>State</th><th>External ids</th>"
        f"<th>Verdict</th><th>By</th></tr></thead><tbody>{rows}</tbody></table>"
        f'<label for="verdict">Verdict</label><select id="verdict" name="verdict">{options}</select>'
        '<label for="tag-note">Why (kept with the verdicts)</label>'
        '<input type="text" id="tag-note" name="note">'
        '<button type="submit" name="which" value="picked">Judge the picked records</button> '
        f'<button type="submit" name="which" value="filter">Judge all {len(records)} shown</button></form>'
    )
    log = "".join(
        f"<li>{html.when(n['at'])} <strong>{_e(n['author'])}</strong> ({_e(n['kind'])}): {_e(n['text'])}</li>"
        for n in d["log"]
    )
    note_form = (
        (
            f'<form method="post" action="/incidents/{_e(inc)}/notes" aria-label="Add a note">{hidden}'
            '<label for="note-text">Note for the log</label>'
            '<textarea id="note-text" name="text" required></textarea>'
            '<button type="submit">Add to the log</button></form>'
        )
        if d["state"] == "open"
        else ""
    )
    close_form = (
        (
            f'<form method="post" action="/incidents/{_e(inc)}/close" aria-label="Close the incident">{hidden}'
            '<label for="close-text">How it ended</label><input type="text" id="close-text" name="text" required>'
            '<button type="submit">Close the incident</button></form>'
        )
        if d["state"] == "open" and d["may_operate"]
        else ""
    )
    body = (
        f"<h1>{_e(d['title'])}</h1>"
        + (f'<p class="notice" role="status">{_e(notice)}</p>' if notice else "")
        + (f'<p class="error" role="alert">{_e(error)}</p>' if error else "")
        + f'<p id="summary">{_e(d["summary"])}</p><ul id="status">{status}</ul>'
        + f"<h2>By system</h2><table><tbody>{counts}</tbody></table>"
        + f"<h2>Records</h2>{_filters(inc, f)}{tag_form}"
        + f'<h2>Log</h2><ol id="log">{log}</ol>{note_form}{close_form}'
    )
    return html.layout(d["title"], body, reviewer=who, csrf=csrf)


def incident_pages_router(desk: Desk, sessions: Sessions) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    incidents = IncidentDesk(desk)

    def detail(
        session: Session,
        incident_id: str,
        f: dict[str, str],
        *,
        notice: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        who = session.reviewer
        csrf = sessions.csrf_token(session)
        try:
            d = incidents.show(who, incident_id)
            records = incidents.records(who, incident_id, _filter(f, ()))
        except DeskError as err:
            return page(html.message_page("Not available", err.message, reviewer=who.name, csrf=csrf), err.status)
        return page(_detail_page(who.name, csrf, d, records, f, notice=notice, error=error), status)

    @router.get("/incidents")
    def list_page(cookie: SessionCookie = None, state: PageIncidentState = None) -> Response:
        session = sessions.read(cookie)
        if session is None:
            return see_other("/login")
        chosen = None if state is None else state.value
        who = session.reviewer
        return page(
            _list_page(
                who.name,
                sessions.csrf_token(session),
                incidents.list(who, chosen),
                chosen,
                incidents.operable_teams(who),
            )
        )

    @router.post("/incidents")
    def open_incident(
        request: Request,
        cookie: SessionCookie = None,
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        title: Annotated[str, Form(max_length=500)] = "",
        team: Annotated[str, Form(max_length=64)] = "",
        source_events: Annotated[str, Form(max_length=20_000)] = "",
        runs: Annotated[str, Form(max_length=20_000)] = "",
        tools: Annotated[str, Form(max_length=2_000)] = "",
        since: Annotated[str, Form(max_length=64)] = "",
        until: Annotated[str, Form(max_length=64)] = "",
        owner: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        session = sessions.read(cookie)
        if session is None:
            return signed_out()
        who = session.reviewer
        given = {
            "title": title,
            "team": team,
            "source_events": source_events,
            "runs": runs,
            "tools": tools,
            "since": since,
            "until": until,
            "owner": owner,
        }
        try:
            sessions.check_form(request, session, csrf_token)
            inc = incidents.open(who, _scope(given), title=title.strip(), owner=owner.strip() or None)
        except DeskError as err:
            csrf = sessions.csrf_token(session)
            body = _list_page(
                who.name, csrf, incidents.list(who), None, incidents.operable_teams(who), given, err.message
            )
            return page(body, err.status)
        return see_other(f"/incidents/{inc['incident_id']}?done=opened")

    @router.get("/incidents/{incident_id}")
    def show(
        incident_id: str,
        cookie: SessionCookie = None,
        done: Annotated[Literal["judged", "noted", "closed", "opened"] | None, Query()] = None,
        system: Annotated[str, Query(max_length=200)] = "",
        state: PageCallState = None,
        tool: Annotated[str, Query(max_length=200)] = "",
        judged: PageJudged = None,
    ) -> Response:
        session = sessions.read(cookie)
        if session is None:
            return see_other("/login")
        return detail(
            session,
            incident_id,
            {"system": system, "state": state or "", "tool": tool, "judged": judged or ""},
            notice=_NOTICES.get(done or ""),
        )

    @router.post("/incidents/{incident_id}/verdicts")
    @router.post("/incidents/{incident_id}/notes")
    @router.post("/incidents/{incident_id}/close")
    def act(
        request: Request,
        incident_id: str,
        cookie: SessionCookie = None,
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        verdict: Annotated[str, Form(max_length=16)] = "",
        note: Annotated[str, Form(max_length=4000)] = "",
        text: Annotated[str, Form(max_length=4000)] = "",
        which: Annotated[str, Form(max_length=16)] = "",
        call_ids: Annotated[list[str] | None, Form()] = None,
        system: Annotated[str, Form(max_length=200)] = "",
        state: CallStateForm = None,
        tool: Annotated[str, Form(max_length=200)] = "",
        judged: JudgedForm = None,
    ) -> Response:
        session = sessions.read(cookie)
        if session is None:
            return signed_out()
        f = {"system": system, "state": state or "", "tool": tool, "judged": judged or ""}
        action = request.url.path.rsplit("/", 1)[-1]
        try:
            sessions.check_form(request, session, csrf_token)
            who = session.reviewer
            if action == "verdicts":
                picked = _picked(verdict, which, call_ids)
                incidents.tag(who, incident_id, verdict, _filter(f, picked), note.strip() or None)  # pyright: ignore[reportArgumentType]
                message = "judged"
            elif action == "notes":
                incidents.note(who, incident_id, text)
                message = "noted"
            else:
                incidents.close(who, incident_id, text)
                message = "closed"
        except DeskError as err:
            return detail(session, incident_id, f, error=err.message, status=err.status)
        query = urlencode({**{k: v for k, v in f.items() if v}, "done": message})
        return see_other(f"/incidents/{incident_id}?{query}")

    return router


def _scope(given: dict[str, str]) -> Scope:
    """The scope the open form describes; DeskError 422 for a time or a scope that cannot be read."""
    try:
        return Scope(
            team=given["team"] or None,
            run_ids=tuple(given["runs"].replace(",", " ").split()),
            source_event_ids=tuple(given["source_events"].replace(",", " ").split()),
            tools=tuple(given["tools"].replace(",", " ").split()),
            since=parse_when(given["since"]) if given["since"].strip() else None,
            until=parse_when(given["until"]) if given["until"].strip() else None,
        )
    except (ValueError, GuardUsageError) as exc:
        raise DeskError(422, "invalid", str(exc)) from exc


def _picked(verdict: str, which: str, call_ids: list[str] | None) -> tuple[str, ...]:
    """The records the verdict form names: the picked ones, or () for all shown; DeskError 422 when unusable."""
    if verdict not in _VERDICTS:
        raise DeskError(422, "invalid", "a verdict is safe, wrong or unclear")
    picked = tuple(call_ids or ()) if which == "picked" else ()
    if which == "picked" and not picked:
        raise DeskError(422, "invalid", "pick at least one record, or judge all records shown")
    return picked


def _filter(f: dict[str, str], picked: tuple[str, ...]) -> RecordFilter:
    """The page's filter: empty fields match everything (the list shows every record in scope)."""
    return RecordFilter(
        call_ids=picked,
        system=f.get("system") or None,
        state=f.get("state") or None,
        tool=f.get("tool") or None,
        verdict=f.get("judged") or None,
        changed_only=False,
    )
