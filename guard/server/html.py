"""The reviewer page's HTML: plain Python string templates, every value escaped, no script, no build step.

Keyboard use: every control is a native form element with a label; the first useful field has autofocus;
the queue is a table of links in tab order.
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import Any

from guard.printable import printable
from guard.spans import format_span

__all__ = ["approval_page", "layout", "login_page", "message_page", "pauses_page", "queue_page", "text", "when"]

_CSS = """
body{font:16px/1.45 system-ui,sans-serif;max-width:72rem;margin:0 auto;padding:1rem 1.5rem;color:#1b1b1b}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd}
pre{background:#f5f5f5;padding:.75rem;overflow:auto}code{font-size:.9em}
.risk-3{color:#a00;font-weight:600}.risk-2{color:#a60}.notice{background:#eef7ee;padding:.5rem 1rem}
.error{background:#fbeaea;padding:.5rem 1rem;border-left:4px solid #a00}
form.decide{display:inline-block;vertical-align:top;margin:0 2rem 1rem 0}
label{display:block;font-weight:600;margin:.5rem 0 .2rem}textarea,input[type=text],input[type=password]{width:22rem}
button{font-size:1rem;padding:.35rem 1rem;margin-top:.5rem}:focus{outline:3px solid #36c;outline-offset:2px}
#edited-args{width:40rem;max-width:100%;font-family:monospace}
dl{display:grid;grid-template-columns:12rem 1fr;gap:.25rem 1rem}dt{font-weight:600}
"""
_RISK = {3: "irreversible", 2: "compensable", 1: "idempotent", 0: "read"}


def _t(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _left(a: dict[str, Any]) -> str:
    """What is left before the approval expires, by the database clock: `in 3h 59m`, or `expired`."""
    left = a["expires_at"] - a["now"]
    return "expired" if left <= 0 else f"in {format_span(left)}"


def _e(value: object) -> str:
    """HTML-escaped (quotes too: every attribute is double-quoted) with control and bidi characters shown
    as escapes, so an agent's tool name cannot reorder or hide what the reviewer reads."""
    return escape(printable("-" if value is None else str(value)))


def _json(value: object) -> str:
    """Arguments as indented JSON for a <pre> or <textarea>: its line breaks are meant, and JSON escapes
    every control character inside the values by itself."""
    return escape(json.dumps(value, indent=2, sort_keys=True))


def _layout(title: str, body: str, *, reviewer: str | None = None, csrf: str | None = None) -> str:
    who = ""
    if reviewer is not None and csrf is not None:
        who = (
            f'<form method="post" action="/logout">signed in as <strong>{_e(reviewer)}</strong> '
            f'<input type="hidden" name="csrf_token" value="{_e(csrf)}"><button type="submit">Sign out</button>'
            "</form>"
        )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · Guard</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
        f'<body><header><p><a href="/">Guard approvals</a> · <a href="/pauses">Pauses</a></p>{who}</header>'
        f"<main>{body}</main></body></html>"
    )


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{_e(message)}</p>' if message else ""


def login_page(error: str | None = None) -> str:
    body = (
        f"<h1>Sign in</h1>{_error(error)}"
        '<form method="post" action="/login"><label for="token">Reviewer token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required autofocus>'
        "<p>Ask your Guard operator for one: <code>guard tokens create --reviewer NAME</code>.</p>"
        '<button type="submit">Sign in</button></form>'
    )
    return _layout("Sign in", body)


def queue_page(reviewer: str, csrf: str, items: list[dict[str, Any]]) -> str:
    if not items:
        rows = "<p>Nothing waits for you.</p>"
    else:
        cells = "".join(
            f'<tr><td class="risk-{i["risk"]}">{_e(i["side_effect"] or _RISK.get(i["risk"]))}</td>'
            f'<td>{_e(i["team"])}</td><td><a href="/approvals/{_e(i["approval_id"])}">{_e(i["tool"])}</a></td>'
            f"<td>{_e(i['requested_by'])}</td><td>{_e(', '.join(i['roles']))}</td>"
            f"<td>{_e(format_span(i['age_seconds']))}</td><td>{_t(i['expires_at'])} ({_left(i)})</td></tr>"
            for i in items
        )
        rows = (
            "<table><caption>Riskiest first, then oldest</caption><thead><tr><th>Class</th><th>Team</th>"
            "<th>Tool</th><th>Asked by</th><th>Roles</th><th>Waiting</th><th>Expires</th></tr></thead>"
            f"<tbody>{cells}</tbody></table>"
        )
    return _layout("Waiting for you", f"<h1>Waiting for you ({len(items)})</h1>{rows}", reviewer=reviewer, csrf=csrf)


def _run_table(run: dict[str, Any] | None, call_id: str) -> str:
    if run is None:
        return ""
    rows = "".join(
        f"<tr><td>#{_e(c['seq'])}</td><td>{_e(c['tool'])}</td><td>{_e(c['side_effect'])}</td>"
        f"<td>{_e(c['state'])}</td><td>{_e(' '.join(f'{k}={v}' for k, v in c['external_ids'].items()))}</td>"
        f"<td>{'this call' if c['call_id'] == call_id else ''}</td></tr>"
        for c in run["calls"]
    )
    r = run["run"]
    by_hand = "".join(
        f"<li>{_e(m['operator'])} {_e(m['action'])}: {_e(m['note'])}</li>" for m in run.get("manual_actions", [])
    )
    return (
        f"<h2>The run so far</h2><p>Run <code>{_e(r['run_id'])}</code>, team {_e(r['team'])}, "
        f"subject {_e(r['subject'])}, state {_e(r['state'])}</p>"
        "<table><thead><tr><th>#</th><th>Tool</th><th>Class</th><th>State</th><th>External ids</th><th></th>"
        f"</tr></thead><tbody>{rows}</tbody></table>" + (f"<h3>Done by hand</h3><ul>{by_hand}</ul>" if by_hand else "")
    )


def _arguments(a: dict[str, Any]) -> str:
    shown = f"<h2>Arguments</h2><p>hash <code>{_e(a['args_hash'])}</code></p><pre>{_json(a['args'])}</pre>"
    if not a.get("edited"):
        return shown
    return (
        shown.replace("<h2>Arguments</h2>", "<h2>Arguments, as edited by a reviewer</h2>")
        + f"<h3>As the agent asked</h3><p>hash <code>{_e(a['requested_args_hash'])}</code></p>"
        f"<pre>{_json(a['requested_args'])}</pre>"
    )


def _forms(a: dict[str, Any], csrf: str) -> str:
    if not a["allowed_decisions"]:
        return "<p>You cannot decide this approval now.</p>"
    action = f"/approvals/{_e(a['approval_id'])}/decision"
    hidden = (
        f'<input type="hidden" name="csrf_token" value="{_e(csrf)}">'
        f'<input type="hidden" name="args_hash" value="{_e(a["args_hash"])}">'
    )
    return (
        f'<h2>Decide</h2><form class="decide" method="post" action="{action}">{hidden}'
        '<input type="hidden" name="decision" value="approve">'
        '<label for="approve-reason">Note (optional)</label>'
        '<input id="approve-reason" name="reason" type="text" maxlength="4000" autofocus>'
        '<div><button type="submit">Approve these exact arguments</button></div></form>'
        f'<form class="decide" method="post" action="{action}">{hidden}'
        '<input type="hidden" name="decision" value="reject">'
        '<label for="reject-reason">Reason (shown to the agent)</label>'
        '<textarea id="reject-reason" name="reason" rows="3" maxlength="4000" required></textarea>'
        '<div><button type="submit">Reject</button></div></form>'
        f'<form class="decide edit" method="post" action="{action}">{hidden}'
        '<input type="hidden" name="decision" value="approve">'
        '<label for="edited-args">Edit the arguments, then approve those (JSON; secrets stay [REDACTED])'
        "</label>"
        f'<textarea id="edited-args" name="edited_args" rows="8" maxlength="65536">'
        f"{_json(a['args'])}</textarea>"
        '<label for="edit-reason">Note on your edit (optional)</label>'
        '<input id="edit-reason" name="reason" type="text" maxlength="4000">'
        '<div><button type="submit">Approve the edited arguments</button></div></form>'
    )


def approval_page(
    reviewer: str, csrf: str, a: dict[str, Any], *, notice: str | None = None, error: str | None = None
) -> str:
    decisions = "".join(
        f"<li>{_e(d['reviewer'])} {_e(d['decision'])} at {_t(d['at'])}"
        f"{': ' + _e(d['reason']) if d['reason'] else ''}</li>"
        for d in a["decisions"]
    )
    body = (
        f"<h1>{_e(a['tool'])} <small>({_e(a['state'])})</small></h1>"
        + (f'<p class="notice" role="status">{_e(notice)}</p>' if notice else "")
        + _error(error)
        + f"<dl><dt>Team</dt><dd>{_e(a['team'])}</dd><dt>Class</dt><dd>{_e(a['side_effect'])}</dd>"
        f"<dt>Rule</dt><dd>{_e(a['rule'])}</dd><dt>Asked by</dt><dd>{_e(a['requested_by'])}</dd>"
        f"<dt>Asked at</dt><dd>{_t(a['requested_at'])}</dd>"
        f"<dt>Expires</dt><dd>{_t(a['expires_at'])} ({_left(a)})</dd>"
        f"<dt>Needs</dt><dd>{_e(a['quorum'])} of roles {_e(', '.join(a['roles']))}</dd>"
        f"<dt>Decided by</dt><dd>{_e(', '.join(a['decided_by']) or None)}</dd>"
        f"<dt>Reason</dt><dd>{_e(a['reason'])}</dd></dl>"
        + _arguments(a)
        + (f"<h2>Decisions</h2><ul>{decisions}</ul>" if decisions else "")
        + _forms(a, csrf)
        + _run_table(a["run"], a["call_id"])
    )
    return _layout(str(a["tool"]), body, reviewer=reviewer, csrf=csrf)


def message_page(title: str, message: str, *, reviewer: str | None = None, csrf: str | None = None) -> str:
    return _layout(
        title,
        f'<h1>{_e(title)}</h1>{_error(message)}<p><a href="/">Back to the queue</a></p>',
        reviewer=reviewer,
        csrf=csrf,
    )


def _owners(p: dict[str, Any]) -> str:
    return "; ".join(f"{o['owner']} (backup {o['backup']})" for o in p["owners"]) or "none named"


def _lift_form(p: dict[str, Any], csrf: str) -> str:
    if not p["may_lift"]:
        return "only its owners and operators may lift it"
    field = {"tool": "tool", "run": "run_id"}.get(p["scope"])
    target = f'<input type="hidden" name="{field}" value="{_e(p["target"])}">' if field else ""
    label = f"lift-reason-{_e(p['id'])}"
    return (
        f'<form method="post" action="/pauses/lift"><input type="hidden" name="csrf_token" value="{_e(csrf)}">'
        f'<input type="hidden" name="team" value="{_e(p["team"])}">{target}'
        f'<label for="{label}">Why it is safe to go on</label>'
        f'<input id="{label}" name="reason" type="text" maxlength="4000" required>'
        f'<label for="stages-{_e(p["id"])}">Restart in stages (calls per stage, e.g. 1,10,100; empty lifts it '
        f'at once)</label><input id="stages-{_e(p["id"])}" name="stages" type="text" maxlength="100">'
        f'<div><button type="submit">Lift the pause on {_e(p["scope"])} {_e(p["target"])}</button></div></form>'
    )


def pauses_page(
    reviewer: str,
    csrf: str,
    pauses: list[dict[str, Any]],
    teams: list[str],
    *,
    notice: str | None = None,
    error: str | None = None,
    restarts: str = "",
) -> str:
    """The pauses in force in the reviewer's teams, a lift form on those they may lift (at once or in stages), the
    staged restarts (`restarts`, HTML from `guard.server.restarts_html`), and a pause form."""
    if pauses:
        rows = "".join(
            f"<tr><td>{_e(p['team'])}</td><td>{_e(p['scope'])} <code>{_e(p['target'])}</code></td>"
            f"<td>{_e(p['paused_by'])} at {_t(p['at'])}: {_e(p['reason'])}</td><td>{_e(_owners(p))}</td>"
            f"<td>{_lift_form(p, csrf)}</td></tr>"
            for p in pauses
        )
        table = (
            "<table><caption>Pauses in force</caption><thead><tr><th>Team</th><th>Paused</th><th>By, when, why"
            f"</th><th>Owners</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        table = "<p>Nothing is paused in your teams.</p>"
    options = "".join(f'<option value="{_e(t)}">{_e(t)}</option>' for t in teams)
    form = (
        (
            "<h2>Pause</h2><p>Owners of a pause point and operators may pause alone. New calls are denied at once; "
            "a paused team opens no new run.</p>"
            f'<form method="post" action="/pauses"><input type="hidden" name="csrf_token" value="{_e(csrf)}">'
            f'<label for="pause-team">Team</label><select id="pause-team" name="team">{options}</select>'
            '<label for="pause-tool">Tool or glob (leave empty to pause the whole team)</label>'
            '<input id="pause-tool" name="tool" type="text" maxlength="200">'
            '<label for="pause-reason">Why (the agent, the owners and the audit trail see it)</label>'
            '<input id="pause-reason" name="reason" type="text" maxlength="4000" required>'
            '<div><button type="submit">Pause now</button></div></form>'
        )
        if teams
        else ""
    )
    body = (
        "<h1>Pauses</h1>"
        + (f'<p class="notice" role="status">{_e(notice)}</p>' if notice else "")
        + _error(error)
        + table
        + restarts
        + form
    )
    return _layout("Pauses", body, reviewer=reviewer, csrf=csrf)


# For the pages of other modules (incidents): the same frame and the same escaping.
layout = _layout
text = _e
when = _t
