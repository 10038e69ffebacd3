"""The staged restarts on the reviewer page's /pauses: each restart's stages, where it stands, every step, and a
confirm form on a held stage for those who may confirm it (owners and operators)."""

from __future__ import annotations

from typing import Any

from guard.server.html import _e, _t  # pyright: ignore[reportPrivateUsage]

__all__ = ["restarts_table"]


def _confirm_form(r: dict[str, Any], csrf: str) -> str:
    if r["state"] != "holding":
        return ""
    if not r["may_confirm"]:
        return "only its owners and operators may confirm the stage"
    field = {"tool": "tool", "run": "run_id"}.get(r["scope"])
    target = f'<input type="hidden" name="{field}" value="{_e(r["target"])}">' if field else ""
    label = f"confirm-reason-{_e(r['id'])}"
    return (
        f'<form method="post" action="/pauses/confirm"><input type="hidden" name="csrf_token" value="{_e(csrf)}">'
        f'<input type="hidden" name="team" value="{_e(r["team"])}">{target}'
        f'<label for="{label}">What you checked</label>'
        f'<input id="{label}" name="reason" type="text" maxlength="4000" required>'
        f'<div><button type="submit">Confirm stage {r["stage"] + 1}</button></div></form>'
    )


def _steps(r: dict[str, Any]) -> str:
    return (
        "<ol>"
        + "".join(
            f"<li>{_t(s['at'])} {_e(s['by'])}: stage {_e(s['stage'])} {_e(s['to'])}: {_e(s['reason'])}</li>"
            for s in r["steps"]
        )
        + "</ol>"
    )


def restarts_table(restarts: list[dict[str, Any]], csrf: str) -> str:
    """A table of the staged restarts, or "" when there are none."""
    if not restarts:
        return ""
    rows = "".join(
        f"<tr><td>{_e(r['team'])}</td><td>{_e(r['scope'])} <code>{_e(r['target'])}</code></td>"
        f"<td>{_e(','.join(map(str, r['stages'])))}</td>"
        f'<td class="restart-state">{_e(r["state"])} at stage {r["stage"] + 1}, {r["passed"]} call(s) through</td>'
        f"<td>{_steps(r)}</td><td>{_confirm_form(r, csrf)}</td></tr>"
        for r in restarts
    )
    return (
        "<table><caption>Staged restarts</caption><thead><tr><th>Team</th><th>Point</th><th>Stages</th>"
        f"<th>Where it stands</th><th>Steps</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    )
