"""Incidents in the ledger: open one on a scope, judge its records, log its actions, record its snapshot, close it.

Each write is one transaction that appends to the incident's own stream (`incident:<id>`) an event carrying the
claim of every row it wrote (`guard.ledger.digests`), so `guard ledger verify` finds an edited verdict, note
or snapshot digest. Verdicts are appended: a record's newest row is its verdict, the older ones its history
(`verdict_history`), each with who, when and the note.

States: `open -> closed`, once. A closed incident takes no verdict, note or snapshot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from fnmatch import fnmatchcase
from typing import Any, Literal

from guard.errors import GuardUsageError, IllegalTransition
from guard.ledger.backend import Connections
from guard.ledger.digests import Claim, claim, row_digest
from guard.ledger.incident_scope import Scope, ScopeCall, chunks, scope_calls
from guard.ledger.moves import EventIn, append_events, new_id

__all__ = ["VERDICTS", "IncidentNoteRecord", "IncidentRecord", "LedgerIncidents", "Verdict", "incident_stream"]

Verdict = Literal["safe", "wrong", "unclear"]
VERDICTS: tuple[Verdict, ...] = ("safe", "wrong", "unclear")
_RAN = ("completed", "rolled_back", "rollback_failed", "rolling_back", "in_doubt", "failed", "started")


def incident_stream(incident_id: str) -> str:
    return "incident:" + incident_id


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    incident_id: str
    title: str
    team: str | None
    scope_json: str
    state: str
    opened_by: str
    owner: str
    opened_at: float
    started_at: float | None
    paused_at: float | None
    last_changed_at: float | None
    next_update_at: float | None
    snapshot_path: str | None
    snapshot_digest: str | None
    snapshot_records: int | None
    snapshot_at: float | None
    snapshot_by: str | None
    closed_at: float | None
    closed_by: str | None

    @classmethod
    def sql_columns(cls) -> str:
        return ", ".join(f.name for f in fields(cls))

    @property
    def scope(self) -> Scope:
        return Scope.from_json(self.scope_json)

    @property
    def teams(self) -> tuple[str, ...]:
        """The teams whose people act on it: its team, or the teams its runs belonged to when it was opened."""
        return (self.team,) if self.team else self.scope.teams

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["scope"] = json.loads(out.pop("scope_json"))
        out["teams"] = list(self.teams)
        return out


@dataclass(frozen=True, slots=True)
class IncidentNoteRecord:
    id: int
    incident_id: str
    at: float
    author: str
    kind: str  # note | action
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_NOTE_COLS = "id, incident_id, at, author, kind, text"


class LedgerIncidents:
    """The incident tables over a ledger's connections (`LedgerIncidents(ledger.conns)`)."""

    def __init__(self, conns: Connections) -> None:
        self.conns = conns

    # -- reading the scope ----------------------------------------------------------------------------------

    def calls_in_scope(self, scope: Scope) -> Iterator[ScopeCall]:
        """Every call in `scope` that may have changed something, by run and sequence (streamed)."""
        with self.conns.read() as cur:
            for row in scope_calls(cur, scope):
                yield ScopeCall.from_row(row)

    def teams_in(self, scope: Scope) -> list[str]:
        """The teams whose calls are in `scope` (globs aside), sorted: who must be able to act on it."""
        where, params = scope.where()
        with self.conns.read() as cur:
            cur.execute(f"SELECT DISTINCT c.team FROM calls c WHERE {where} ORDER BY c.team", params)
            return [str(t) for (t,) in cur.fetchall()]

    def full_calls_in_scope(self, scope: Scope, columns: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
        """The same calls with the given columns of `calls` (the snapshot reads every column)."""
        with self.conns.read() as cur:
            yield from scope_calls(cur, scope, columns)

    def call_events(self, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each call's transitions in these runs (who, when, from, to), by call id."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.conns.read() as cur:
            for part in chunks(sorted(set(run_ids))):
                cur.execute(
                    "SELECT call_id, at, actor, from_state, to_state FROM events WHERE run_id IN "
                    f"({', '.join('?' * len(part))}) AND call_id IS NOT NULL ORDER BY id",
                    tuple(part),
                )
                for call_id, at, actor, src, dst in cur.fetchall():
                    out.setdefault(call_id, []).append({"at": at, "actor": actor, "from": src, "to": dst})
        return out

    def scope_times(self, scope: Scope) -> tuple[float | None, float | None, float | None, set[str]]:
        """The three times: the first run in scope started, it was first paused (a pause covering the scope,
        or a brake denying one of its calls), and a call in scope last changed data; and the teams in scope."""
        runs: set[str] = set()
        teams_seen: set[str] = set()
        tools: set[str] = set()
        changed: float | None = None
        first_offer: float | None = None
        brake_candidates: list[str] = []
        for call in self.calls_in_scope(scope):
            runs.add(call.run_id)
            tools.add(call.tool)
            teams_seen.add(call.team)
            first_offer = call.offered_at if first_offer is None else min(first_offer, call.offered_at)
            if call.state in _RAN:
                end = call.ended_at or call.started_at
                if end is not None:
                    changed = end if changed is None else max(changed, end)
            elif call.state == "denied":
                brake_candidates.append(call.call_id)
        if not runs:
            return None, None, None, teams_seen
        started: float | None = None
        paused: float | None = None
        with self.conns.read() as cur:
            for part in chunks(sorted(runs)):
                cur.execute(
                    f"SELECT MIN(created_at) FROM runs WHERE run_id IN ({', '.join('?' * len(part))})", tuple(part)
                )
                first = cur.fetchone()[0]
                if first is not None:
                    started = first if started is None else min(started, first)
            since = started if started is not None else first_offer or 0.0
            cur.execute("SELECT scope, team, target, at FROM pauses WHERE at >= ? ORDER BY at", (since,))
            teams = set(scope.all_teams) or None
            for kind, team, target, at in cur.fetchall():
                hit = (
                    (kind == "run" and target in runs)
                    or (kind == "team" and (teams is None or target in teams))
                    or (
                        kind == "tool"
                        and (teams is None or team in teams or team is None)
                        and any(fnmatchcase(t, target) for t in tools)
                    )
                )
                if hit:
                    paused = at
                    break
            for part in chunks(brake_candidates):
                cur.execute(
                    "SELECT at, detail FROM events WHERE call_id IN "
                    f"({', '.join('?' * len(part))}) AND to_state = 'denied'",
                    tuple(part),
                )
                for at, detail in cur.fetchall():
                    if json.loads(detail).get("brake") in ("pause", "stop") and (paused is None or at < paused):
                        paused = at
        return started, paused, changed, teams_seen

    # -- incidents ------------------------------------------------------------------------------------------

    def open_incident(
        self, scope: Scope, *, title: str, opened_by: str, owner: str, next_update_at: float | None = None
    ) -> IncidentRecord:
        """Record a new incident on `scope` with its three times as the ledger tells them now."""
        if not title.strip():
            raise GuardUsageError("an incident needs a title: what went wrong, in a few words")
        started, paused, changed, teams = self.scope_times(scope)
        # The team whose people act on it: the scope's, else the one team its calls belong to; runs of several
        # teams fix those teams in the scope (a later run of another team never enters the incident).
        team = scope.team or (next(iter(teams)) if len(teams) == 1 else None)
        if not scope.all_teams and len(teams) > 1:
            scope = replace(scope, teams=tuple(sorted(teams)))
        incident_id = new_id("inc")
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                "INSERT INTO incidents (incident_id, title, team, scope_json, state, opened_by, owner, "
                "opened_at, started_at, paused_at, last_changed_at, next_update_at) "
                "VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?)",
                (
                    incident_id,
                    title,
                    team,
                    scope.to_json(),
                    opened_by,
                    owner,
                    now,
                    started,
                    paused,
                    changed,
                    next_update_at,
                ),
            )
            note_id = self._insert_note(
                cur, incident_id, now, opened_by, "action", f"opened on {scope.describe()}; owner {owner}"
            )
            append_events(
                cur,
                [
                    (
                        None,
                        None,
                        now,
                        opened_by,
                        "incident",
                        None,
                        "open",
                        json.dumps({"title": title, "owner": owner, "scope": json.loads(scope.to_json())}),
                    )
                ],
                [claim(cur, "incidents", incident_id), claim(cur, "incident_notes", note_id)],
                stream=incident_stream(incident_id),
            )
        found = self.get_incident(incident_id)
        assert found is not None
        return found

    def get_incident(self, incident_id: str) -> IncidentRecord | None:
        with self.conns.read() as cur:
            cur.execute(f"SELECT {IncidentRecord.sql_columns()} FROM incidents WHERE incident_id = ?", (incident_id,))
            row = cur.fetchone()
        return None if row is None else IncidentRecord(*row)

    def list_incidents(
        self, *, teams: Sequence[str] | None = None, state: str | None = None, limit: int = 100
    ) -> list[IncidentRecord]:
        """At most `limit` incidents, newest first; of `teams` only, when given (an incident over several teams is
        listed when every one of its teams is among them).

        The teams are judged before the limit counts: an incident of one team is chosen by its `team` column in
        the query; one over several teams (no `team`: its teams are in its scope) is judged as it is read. The
        rows are read a page at a time, newest first (keyed on when each was opened, then its id), until `limit`
        visible ones are found or none are left, so incidents of other teams never take a visible one's place.
        """
        if (teams is not None and not teams) or limit < 1:
            return []
        sql = f"SELECT {IncidentRecord.sql_columns()} FROM incidents WHERE 1 = 1"
        params: list[Any] = []
        if teams is not None:
            sql += f" AND (team IN ({', '.join('?' * len(teams))}) OR team IS NULL)"
            params.extend(teams)
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        mine = None if teams is None else set(teams)
        found: list[IncidentRecord] = []
        after: tuple[float, str] | None = None
        with self.conns.read() as cur:
            while len(found) < limit:
                page = sql + ("" if after is None else " AND (opened_at < ? OR (opened_at = ? AND incident_id < ?))")
                keys = () if after is None else (after[0], after[0], after[1])
                cur.execute(page + " ORDER BY opened_at DESC, incident_id DESC LIMIT ?", (*params, *keys, limit))
                rows = [IncidentRecord(*r) for r in cur.fetchall()]
                found.extend(i for i in rows if mine is None or (i.teams and mine.issuperset(i.teams)))
                if len(rows) < limit:
                    break
                after = (rows[-1].opened_at, rows[-1].incident_id)
        return found[:limit]

    def _open_row(self, cur: Any, incident_id: str) -> IncidentRecord:
        cur.execute(f"SELECT {IncidentRecord.sql_columns()} FROM incidents WHERE incident_id = ?", (incident_id,))
        row = cur.fetchone()
        if row is None:
            raise GuardUsageError(f"no incident {incident_id}; list them with `guard incident list`")
        found = IncidentRecord(*row)
        if found.state != "open":
            raise IllegalTransition(
                f"incident {incident_id} is closed: it takes no more changes",
                entity="incident",
                id=incident_id,
                from_state=found.state,
                to_state=found.state,
            )
        return found

    def close_incident(self, incident_id: str, *, by: str, note: str) -> None:
        if not note.strip():
            raise GuardUsageError("closing an incident needs a note: say how it ended")
        now = time.time()
        with self.conns.write() as cur:
            self._open_row(cur, incident_id)
            cur.execute(
                "UPDATE incidents SET state = 'closed', closed_at = ?, closed_by = ? WHERE incident_id = ?",
                (now, by, incident_id),
            )
            note_id = self._insert_note(cur, incident_id, now, by, "action", f"closed: {note}")
            append_events(
                cur,
                [(None, None, now, by, "incident", "open", "closed", json.dumps({"note": note}))],
                [claim(cur, "incidents", incident_id), claim(cur, "incident_notes", note_id)],
                stream=incident_stream(incident_id),
            )

    def set_next_update(self, incident_id: str, at: float, *, by: str) -> None:
        now = time.time()
        with self.conns.write() as cur:
            self._open_row(cur, incident_id)
            cur.execute("UPDATE incidents SET next_update_at = ? WHERE incident_id = ?", (at, incident_id))
            append_events(
                cur,
                [(None, None, now, by, "incident", "open", "open", json.dumps({"next_update_at": at}))],
                [claim(cur, "incidents", incident_id)],
                stream=incident_stream(incident_id),
            )

    def record_snapshot(self, incident_id: str, *, path: str, digest: str, records: int, by: str) -> None:
        """Record the snapshot file's digest: once per incident (the evidence is taken before anyone repairs)."""
        now = time.time()
        with self.conns.write() as cur:
            found = self._open_row(cur, incident_id)
            if found.snapshot_digest is not None:
                raise IllegalTransition(
                    f"incident {incident_id} has its snapshot already ({found.snapshot_path}, "
                    f"sha256 {found.snapshot_digest}); it is taken once",
                    entity="incident",
                    id=incident_id,
                    from_state="snapshot",
                    to_state="snapshot",
                )
            cur.execute(
                "UPDATE incidents SET snapshot_path = ?, snapshot_digest = ?, snapshot_records = ?, "
                "snapshot_at = ?, snapshot_by = ? WHERE incident_id = ?",
                (path, digest, records, now, by, incident_id),
            )
            note_id = self._insert_note(
                cur, incident_id, now, by, "action", f"snapshot of {records} record(s) taken: {path} (sha256 {digest})"
            )
            append_events(
                cur,
                [
                    (
                        None,
                        None,
                        now,
                        by,
                        "incident",
                        "open",
                        "open",
                        json.dumps({"snapshot": path, "sha256": digest, "records": records}),
                    )
                ],
                [claim(cur, "incidents", incident_id), claim(cur, "incident_notes", note_id)],
                stream=incident_stream(incident_id),
            )

    # -- the shared note ------------------------------------------------------------------------------------

    @staticmethod
    def _insert_note(cur: Any, incident_id: str, at: float, author: str, kind: str, text: str) -> int:
        cur.execute(
            "INSERT INTO incident_notes (incident_id, at, author, kind, text) VALUES (?, ?, ?, ?, ?) RETURNING id",
            (incident_id, at, author, kind, text),
        )
        return int(cur.fetchone()[0])

    def add_note(self, incident_id: str, *, author: str, text: str, kind: Literal["note", "action"] = "note") -> int:
        """Append one line to the incident's log (a person's note, or an action Guard enters itself)."""
        if not text.strip():
            raise GuardUsageError("a note needs text")
        now = time.time()
        with self.conns.write() as cur:
            self._open_row(cur, incident_id)
            note_id = self._insert_note(cur, incident_id, now, author, kind, text)
            append_events(
                cur,
                [(None, None, now, author, "incident_note", None, kind, "{}")],
                [claim(cur, "incident_notes", note_id)],
                stream=incident_stream(incident_id),
            )
        return note_id

    def notes(self, incident_id: str) -> list[IncidentNoteRecord]:
        with self.conns.read() as cur:
            cur.execute(f"SELECT {_NOTE_COLS} FROM incident_notes WHERE incident_id = ? ORDER BY id", (incident_id,))
            return [IncidentNoteRecord(*r) for r in cur.fetchall()]

    # -- verdicts -------------------------------------------------------------------------------------------

    def set_verdicts(
        self, incident_id: str, call_ids: Sequence[str], verdict: Verdict, *, by: str, note: str | None = None
    ) -> int:
        """Judge records (calls of the incident's scope, checked by the caller); returns how many changed.

        The same verdict again changes nothing and records nothing. Every change is a new row (the older rows
        are the record's history) claimed by an event with the verdict before and after.
        """
        if verdict not in VERDICTS:
            raise GuardUsageError(f"a verdict is safe, wrong or unclear, not {verdict!r}")
        now = time.time()
        events: list[EventIn] = []
        claims: list[Claim] = []
        with self.conns.write() as cur:
            self._open_row(cur, incident_id)
            before = self._current(cur, incident_id, list(call_ids))
            for call_id in dict.fromkeys(call_ids):
                old = before.get(call_id)
                if old == verdict:
                    continue
                cur.execute(
                    "INSERT INTO incident_verdicts (incident_id, call_id, verdict, note, judged_by, judged_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (incident_id, call_id, verdict, note, by, now),
                )
                verdict_id = int(cur.fetchone()[0])
                events.append((None, call_id, now, by, "verdict", old, verdict, "{}"))
                claims.append(
                    (
                        "incident_verdicts",
                        str(verdict_id),
                        row_digest("incident_verdicts", (verdict_id, incident_id, call_id, verdict, note, by, now)),
                    )
                )
            if events:
                # One claim rides on each verdict's event (append_events attaches them from the last).
                append_events(cur, events, claims, stream=incident_stream(incident_id))
        return len(events)

    @staticmethod
    def _current(cur: Any, incident_id: str, call_ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in chunks(call_ids):
            cur.execute(
                "SELECT call_id, verdict FROM incident_verdicts WHERE incident_id = ? AND call_id IN "
                f"({', '.join('?' * len(part))}) ORDER BY id",
                (incident_id, *part),
            )
            out.update(dict(cur.fetchall()))  # the newest row of each record wins
        return out

    def verdicts(self, incident_id: str) -> dict[str, dict[str, Any]]:
        """The current verdict of every judged record: call id -> verdict, note, judged_by, judged_at."""
        out: dict[str, dict[str, Any]] = {}
        with self.conns.read() as cur:
            cur.execute(
                "SELECT call_id, verdict, note, judged_by, judged_at FROM incident_verdicts "
                "WHERE incident_id = ? ORDER BY id",
                (incident_id,),
            )
            for c, v, n, b, a in cur.fetchall():
                out[c] = {"verdict": v, "note": n, "judged_by": b, "judged_at": a}
        return out

    def verdict_history(self, incident_id: str, call_id: str | None = None) -> list[dict[str, Any]]:
        """Every verdict given in this incident (of one record, when given), oldest first."""
        sql = "SELECT call_id, verdict, note, judged_by, judged_at FROM incident_verdicts WHERE incident_id = ?"
        params: tuple[Any, ...] = (incident_id,)
        if call_id is not None:
            sql += " AND call_id = ?"
            params += (call_id,)
        with self.conns.read() as cur:
            cur.execute(sql + " ORDER BY id", params)
            return [{"call_id": c, "verdict": v, "note": n, "by": b, "at": a} for c, v, n, b, a in cur.fetchall()]
