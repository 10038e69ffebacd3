"""What the teams' channels were told: the notifier's reads and writes on `notifications` and its cursor.

The notifier reads the events after its cursor that a channel may need (a call entering `awaiting_approval`,
a reviewer's edit that puts new arguments on the table, a run entering `halted` or `pending_review`, a pause set
or lifted, a call a stop rule denied, each step of a staged restart), claims each one
with an insert unique on the event (two notifiers never send the same event twice), and records what became of
it. Nothing here sends anything: `guard.notify`
does, outside any transaction.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from guard.ledger.backend import Backend, Connections
from guard.ledger.chain import notices_stream
from guard.ledger.digests import claim
from guard.ledger.moves import append_events
from guard.ledger.records import NoticeEvent, NotificationRecord
from guard.ledger.states import CallState, RunState

__all__ = ["LedgerNotices"]

_CURSOR = "webhooks"
# Event ids are taken when a transaction inserts, not when it commits: on PostgreSQL, where writers of different
# runs commit side by side, a later id can be visible while an earlier one is still committing. The cursor never
# moves past a missing id while a transaction that may still commit it is open. That is judged by the database,
# never by the events' `at` (each writer's own clock, which may be minutes off): a transaction that took an event id
# holds the `events` table open for insert until it ends, so it is among the writers of events in progress
# (`Backend.writers_now`) when a later id is seen; once all of those ended (`writers_ended`), the missing ids were
# rolled back for good. Other transactions (another database of the server, a batch job) never hold it back.
# A pass waits this long for them (Guard's write transactions last milliseconds), then leaves the gap to the next.
SETTLE_WAIT = 1.0
# The first id after the cursor (up to the newest seen) whose predecessor is missing, unless that predecessor is
# the cursor itself. One pass over the events after the cursor (the primary key's range), however far behind a new
# notifier starts.
_FIRST_GAP = (
    "SELECT MIN(e.id) FROM events e WHERE e.id > ? + 1 AND e.id <= ? "
    "AND NOT EXISTS (SELECT 1 FROM events f WHERE f.id = e.id - 1)"
)
_DETAILED = ("paused", "stop_tripped", "approval_waiting", "restart")
# A team or tool pause belongs to no run: its team is in the event's detail (the LEFT JOIN finds no run).
_CANDIDATES = (
    "SELECT e.id, e.run_id, e.call_id, e.entity, e.to_state, r.team, e.detail, e.actor FROM events e "
    "LEFT JOIN runs r ON r.run_id = e.run_id WHERE e.id > ? AND ((e.entity = 'call' AND e.to_state IN (?, ?)) "
    "OR (e.entity = 'run' AND e.to_state IN (?, ?) AND e.from_state IS DISTINCT FROM e.to_state) "
    "OR (e.entity = 'approval' AND e.to_state = 'edited') OR e.entity IN ('pause', 'restart')) AND e.id <= ? "
    "ORDER BY e.id LIMIT ?"
)


def _notice(row: tuple[Any, ...]) -> NoticeEvent | None:
    """The notice an event row is, or None when no channel needs it (a call denied by anything but a stop rule,
    a pause of every team's tool). A reviewer's edit is an approval waiting again: the edited arguments are the
    pending request now (perhaps for other roles), and the votes on the old ones no longer count."""
    event_id, run_id, call_id, entity, to_state, team, raw, actor = row
    detailed = entity in ("pause", "restart", "call", "approval") and to_state != "awaiting_approval"
    detail: dict[str, Any] = json.loads(raw) if detailed else {}
    if entity == "call" and to_state == CallState.DENIED:
        if detail.get("brake") != "stop":
            return None
        kind = "stop_tripped"
    elif entity == "pause":
        kind, team = "paused", detail.get("team") or team
    elif entity == "restart":  # a staged restart's step: a stage opened, passed (held), failed, or the last done
        kind, team = "restart", detail.get("team") or team
    else:
        kind = "approval_waiting" if entity in ("call", "approval") else "run_halted"
    if team is None:
        return None
    return NoticeEvent(
        event_id=event_id,
        run_id=run_id,
        call_id=call_id,
        team=team,
        to_state=to_state,
        kind=kind,
        detail=detail,
        actor=actor,
    )


def _settled_end(cur: Any, backend: Backend, after: int) -> int:
    """The last event id after `after` up to which no earlier id can still appear: ids are consecutive, or no write
    transaction that was open when a missing one was seen is open any more (see `SETTLE_WAIT`)."""
    cur.execute("SELECT COALESCE(MAX(id), 0) FROM events")
    newest = max(after, int(cur.fetchone()[0]))
    cur.execute(_FIRST_GAP, (after, newest))
    (gap,) = cur.fetchone()
    if gap is None:
        return newest
    mark = backend.writers_now(cur)
    deadline = time.monotonic() + SETTLE_WAIT
    while mark is not None and not backend.writers_ended(cur, mark):
        if time.monotonic() >= deadline:
            # A transaction that may commit the missing id(s) before `gap` is still open: stop below them.
            cur.execute("SELECT COALESCE(MAX(id), ?) FROM events WHERE id > ? AND id < ?", (after, after, int(gap)))
            return int(cur.fetchone()[0])
        _PAUSE.wait(0.02)
    return newest  # every id missing up to `newest` was rolled back; the ones committed since are read next


_PAUSE = threading.Event()  # never set: a short wait between two looks at the open transactions


def _record(cur: Any, team: str, run_id: str | None, notice_id: int, now: float, src: str | None, dst: str) -> None:
    """The notification's outcome as an event of the team's notices stream, carrying the row's claim."""
    append_events(
        cur,
        [(run_id, None, now, "guard:notifier", "notice", src, dst, json.dumps({"id": notice_id}))],
        [claim(cur, "notifications", notice_id)],
        stream=notices_stream(team),
    )


class LedgerNotices:
    conns: Connections

    def notice_cursor(self) -> int:
        """The last event id the notifier has dealt with (0 before its first pass)."""
        with self.conns.read() as cur:
            cur.execute("SELECT event_id FROM notify_cursor WHERE name = ?", (_CURSOR,))
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def notice_events(self, after: int, limit: int = 200) -> tuple[list[NoticeEvent], int]:
        """Events after `after` a channel may need to hear of, oldest first; and the last event id the cursor may
        move to: never past an id a transaction may still commit (see `SETTLE_WAIT`)."""
        with self.conns.read() as cur:
            end = _settled_end(cur, self.conns.backend, after)
            cur.execute(
                _CANDIDATES,
                (
                    after,
                    CallState.AWAITING_APPROVAL,
                    CallState.DENIED,
                    RunState.HALTED,
                    RunState.PENDING_REVIEW,
                    end,
                    limit,
                ),
            )
            rows = cur.fetchall()
            last = end if len(rows) < limit else int(rows[-1][0])
        events = [event for event in map(_notice, rows) if event is not None]
        return events, last

    def move_notice_cursor(self, to: int) -> None:
        with self.conns.write() as cur:
            # The cursor only moves forward. Spelled for both dialects: SQLite's two-argument MAX is GREATEST on
            # PostgreSQL, and PostgreSQL needs the table's own column named apart from `excluded`'s.
            cur.execute(
                "INSERT INTO notify_cursor (name, event_id) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                "SET event_id = CASE WHEN excluded.event_id > notify_cursor.event_id "
                "THEN excluded.event_id ELSE notify_cursor.event_id END",
                (_CURSOR, to),
            )

    def stuck_notices(self, older_than: float, limit: int = 50) -> list[tuple[NotificationRecord, NoticeEvent]]:
        """Notifications left `sending` before `older_than` (their notifier died mid-send), with their events."""
        sql = (
            f"SELECT {', '.join('n.' + c for c in NotificationRecord.columns())}, e.actor, e.detail, e.to_state "
            "FROM notifications n JOIN events e ON e.id = n.event_id "
            "WHERE n.state = 'sending' AND n.updated_at < ? ORDER BY n.id LIMIT ?"
        )
        with self.conns.read() as cur:
            cur.execute(sql, (older_than, limit))
            rows = cur.fetchall()
        found: list[tuple[NotificationRecord, NoticeEvent]] = []
        for row in rows:
            notice = NotificationRecord.from_row(row[:-3])
            found.append(
                (
                    notice,
                    NoticeEvent(
                        event_id=notice.event_id,
                        kind=notice.kind,
                        team=notice.team,
                        run_id=notice.run_id,
                        call_id=notice.call_id,
                        to_state=row[-1],
                        detail=json.loads(row[-2] or "{}") if notice.kind in _DETAILED else {},
                        actor=row[-3],
                    ),
                )
            )
        return found

    def reclaim_notice(self, notice: NotificationRecord) -> bool:
        """Take over a stuck notification (compare-and-set on its last update): True if this notifier has it."""
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                "UPDATE notifications SET updated_at = ? WHERE id = ? AND state = 'sending' AND updated_at = ? "
                "RETURNING run_id",
                (now, notice.id, notice.updated_at),
            )
            if cur.fetchone() is None:
                return False
            _record(cur, notice.team, notice.run_id, notice.id, now, "sending", "reclaimed")
            return True

    def claim_notice(
        self,
        event: NoticeEvent,
        *,
        target: str,
        approval_id: str | None,
        state: str = "sending",
        error: str | None = None,
    ) -> int | None:
        """Record that `event` is being told (or `skipped`); the row id, or None when another notifier has it."""
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                "INSERT INTO notifications (event_id, team, kind, run_id, call_id, approval_id, target, state, "
                "attempts, last_error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING id",
                (
                    event.event_id,
                    event.team,
                    event.kind,
                    event.run_id,
                    event.call_id,
                    approval_id,
                    target,
                    state,
                    error,
                    now,
                    now,
                ),
            )
            inserted = cur.fetchone()
            if inserted is None:
                return None
            notice_id = int(inserted[0])
            _record(cur, event.team, event.run_id, notice_id, now, None, state)
            return notice_id

    def settle_notice(self, notice_id: int, *, state: str, attempts: int, error: str | None) -> None:
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                "UPDATE notifications SET state = ?, attempts = ?, last_error = ?, updated_at = ? "
                "WHERE id = ? RETURNING team, run_id",
                (state, attempts, error, now, notice_id),
            )
            row = cur.fetchone()
            if row is not None:
                _record(cur, row[0], row[1], notice_id, now, "sending", state)

    def notices(
        self, *, team: str | None = None, run_id: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[NotificationRecord]:
        """What the channels were told, newest first."""
        sql = f"SELECT {NotificationRecord.sql_columns()} FROM notifications WHERE 1 = 1"
        params: list[object] = []
        for column, value in (("team", team), ("run_id", run_id), ("state", state)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self.conns.read() as cur:
            cur.execute(sql, tuple(params))
            return [NotificationRecord.from_row(r) for r in cur.fetchall()]
