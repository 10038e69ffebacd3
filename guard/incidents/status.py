"""The plain status update of an incident: what happened, what looks wrong, what still looks normal, when the next
update is due. Facts from the ledger, in the order people ask for them."""

from __future__ import annotations

import datetime as dt

from guard.incidents.book import IncidentBook

__all__ = ["status_update"]


def _at(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def status_update(book: IncidentBook, incident_id: str) -> list[str]:
    """The update as lines of plain text."""
    inc = book.get(incident_id)
    radius = book.radius(incident_id)
    changed = radius.changed()
    lines = [
        f"Incident {inc.incident_id}: {inc.title} ({inc.state}; owner {inc.owner}, opened by {inc.opened_by} "
        f"at {_at(inc.opened_at)})",
        f"What happened: {inc.scope.describe()}; first run started {_at(inc.started_at)}, paused "
        f"{_at(inc.paused_at) if inc.paused_at else 'not yet'}, last changed data {_at(inc.last_changed_at)}.",
        f"Blast radius: {radius.summary()}.",
    ]
    wrong: dict[str, int] = {}
    normal: dict[str, int] = {}
    for r in changed:
        if r.verdict == "wrong":
            wrong[r.system] = wrong.get(r.system, 0) + 1
        elif r.verdict == "safe":
            normal[r.system] = normal.get(r.system, 0) + 1
    lines.append(
        "Looks wrong: "
        + (", ".join(f"{n} in {s}" for s, n in sorted(wrong.items())) or "nothing judged wrong yet")
        + "."
    )
    lines.append(
        "Still looks normal: "
        + (", ".join(f"{n} in {s}" for s, n in sorted(normal.items())) or "nothing judged safe yet")
        + "."
    )
    by_system = radius.by_system_state()
    lines.append(
        "By system: "
        + "; ".join(
            f"{s}: " + ", ".join(f"{n} {st.replace('_', ' ')}" for st, n in states.items())
            for s, states in by_system.items()
        )
        + ("" if by_system else "nothing in scope")
        + "."
    )
    if inc.snapshot_digest:
        lines.append(
            f"Snapshot: {inc.snapshot_records} record(s) at {_at(inc.snapshot_at)} by {inc.snapshot_by}, "
            f"{inc.snapshot_path} (sha256 {inc.snapshot_digest[:16]}...)."
        )
    else:
        lines.append("Snapshot: not taken yet; take it before anyone repairs.")
    if inc.state == "open":
        lines.append(f"Next update: {_at(inc.next_update_at) if inc.next_update_at else 'not set'}.")
    else:
        lines.append(f"Closed by {inc.closed_by} at {_at(inc.closed_at)}.")
    return lines
