"""Writes on a call while a worker holds it: attempts, external ids, the outcome, leases and takeovers.

Every write carries the lease token the worker got when the call became `started`. A takeover (`claim`)
increments the token, so a worker that lost the call (paused, cut off, presumed dead) is refused on its next
write (`LeaseLost`, an `IllegalTransition` with entity "lease") instead of overwriting what the new owner
recorded. The run's close at the end of a worker's block (`close_run`) is decided inside its own write
transaction, so two workers closing one run never act on a state the other already changed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from guard.errors import GuardUsageError, IllegalTransition, LeaseLost
from guard.ledger.backend import Connections, folding
from guard.ledger.chain import run_stream
from guard.ledger.digests import Claim, claim, row_digest
from guard.ledger.lease_clock import Beat, LeaseBeat
from guard.ledger.moves import EventIn, RunClose, append_events, move_run
from guard.ledger.records import CallRecord, RunRecord
from guard.ledger.restarts import restart_call_failed
from guard.ledger.states import UNSETTLED_SQL, CallState, RunState, check_call_move

__all__ = ["LedgerInFlight"]

C = CallState
_CALL_COLS = CallRecord.sql_columns()
_UNSETTLED = frozenset({C.STARTED, C.IN_DOUBT})
_RUN_COLS = RunRecord.sql_columns()
# A call of the run completed a change in another system (anything but a read).
_CHANGED = (
    "SELECT 1 FROM calls WHERE run_id = ? AND state = 'completed' AND side_effect IS NOT NULL "
    "AND side_effect != 'read' LIMIT 1"
)


def _fenced(call_id: str, src: CallState, dst: CallState) -> LeaseLost:
    return LeaseLost(
        f"call {call_id} is no longer {src} under this worker's lease (another worker took it over, or it "
        "was already settled): nothing written",
        entity="lease",
        id=call_id,
        from_state=src,
        to_state=dst,
    )


# A started call's row as this process inserted it (its offer), by call id, kept where the completion can then be
# one statement with its COMMIT (PostgreSQL: `_complete_as_written`). Only a hint: that statement writes only if
# every column still holds what was kept, and anything else (a heartbeat, ids recorded, a takeover) goes the plain
# way. Bounded: cleared when full (a call that never completes here leaves its row behind).
_STARTED_KEPT = 10_000
_COLS = CallRecord.columns()
_AT = {c: i for i, c in enumerate(_COLS)}
_AS_WRITTEN: dict[str, str] = {}  # the statement by the lease clock's fence


def _complete_as_written(fence: str) -> str:
    """`started -> completed` only if the row holds exactly what this process wrote: its claim is then computed, not
    read back, and the statement can carry the COMMIT."""
    sql = _AS_WRITTEN.get(fence)
    if sql is None:
        sql = (
            "UPDATE calls SET state = ?, result_json = ?, external_ids = ?, attempts = ?, ended_at = ?, "
            f"updated_at = ?, lease_expires_at = NULL WHERE call_id = ? AND state = ? AND lease_token = ?{fence} "
            f"AND ({_CALL_COLS}) IS NOT DISTINCT FROM ({', '.join('?' * len(_COLS))})"
        )
        _AS_WRITTEN[fence] = sql
    return sql


def _completed(row: tuple[Any, ...], result_json: str, ids: str, attempts: int, now: float) -> list[Any]:
    """A started call's row as `_complete_as_written` leaves it."""
    out = list(row)
    out[_AT["state"]] = C.COMPLETED.value
    out[_AT["result_json"]] = result_json
    out[_AT["external_ids"]] = ids
    out[_AT["attempts"]] = attempts
    out[_AT["ended_at"]] = out[_AT["updated_at"]] = now
    out[_AT["lease_expires_at"]] = None
    return out


class LedgerInFlight:
    conns: Connections
    started_rows: dict[str, tuple[Any, ...]]  # see `_STARTED_KEPT`

    def _keep_started(self, call_id: str, row: tuple[Any, ...]) -> None:
        """Keep a started call's row as this process inserted it (`_complete_as_written`)."""
        if len(self.started_rows) >= _STARTED_KEPT:
            self.started_rows.clear()
        self.started_rows[call_id] = row

    @property
    def _fence(self) -> str:
        """What every write under a lease adds to its compare-and-set (guard.ledger.lease_clock)."""
        return self.conns.backend.lease_clock.fence

    # A started call's `updated_at` is its last sign of life, written by the lease clock (the database's on
    # PostgreSQL), so `recover(stale_after=)` judges it by the clock that wrote it, not by a worker's.
    @property
    def _now_sql(self) -> str:
        return self.conns.backend.lease_clock.now_sql

    def _now_args(self, now: float) -> tuple[float, ...]:
        return self.conns.backend.lease_clock.args(now)

    def lease_now(self) -> float:
        """Now by the clock leases are judged by (Unix seconds): the database server's on PostgreSQL, this
        worker's on SQLite. For recovery's view of which leases ran out."""
        clock = self.conns.backend.lease_clock
        with self.conns.read() as cur:
            return clock.now(self.conns.backend, cur)

    def record_attempt(self, run_id: str, call_id: str, token: int, attempt: int, error: str, actor: str) -> None:
        """A failed attempt of a repeat-safe call; the call stays `started` for the next attempt."""
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                f"UPDATE calls SET attempts = ?, error = ?, updated_at = {self._now_sql} WHERE call_id = ? AND "
                f"state = ? AND lease_token = ?{self._fence}",
                (attempt, error, *self._now_args(now), call_id, C.STARTED, token),
            )
            if cur.rowcount != 1:
                raise _fenced(call_id, C.STARTED, C.STARTED)
            append_events(
                cur,
                [
                    (
                        run_id,
                        call_id,
                        now,
                        actor,
                        "call",
                        C.STARTED,
                        C.STARTED,
                        json.dumps({"attempt": attempt, "error": error}),
                    )
                ],
            )

    def reclassify(
        self, run_id: str, call_id: str, *, token: int, side_effect: str, was: str | None, rule: str | None, actor: str
    ) -> None:
        """The started call runs a reviewer's approved edit, which the policy puts in another class than the
        agent's arguments: the row says so from now on (the saga, recovery and every read go by the row), and
        the event keeps what it was."""
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                f"UPDATE calls SET side_effect = ?, updated_at = {self._now_sql} WHERE call_id = ? AND state = ? "
                f"AND lease_token = ?{self._fence} RETURNING {_CALL_COLS}",
                (side_effect, *self._now_args(now), call_id, C.STARTED, token),
            )
            row = cur.fetchone()
            if row is None:
                raise _fenced(call_id, C.STARTED, C.STARTED)
            detail = {"side_effect": side_effect, "was": was, "rule": rule, "why": "runs a reviewer's approved edit"}
            append_events(
                cur,
                [(run_id, call_id, now, actor, "call", C.STARTED, C.STARTED, json.dumps(detail))],
                [("calls", call_id, row_digest("calls", row))],
            )

    def record_external_ids(
        self, run_id: str, call_id: str, token: int, external_ids: dict[str, str], actor: str
    ) -> None:
        """Commit the external ids a running tool reported, before it returns."""
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                f"UPDATE calls SET external_ids = ?, updated_at = {self._now_sql} WHERE call_id = ? AND state = ? "
                f"AND lease_token = ?{self._fence}",
                (json.dumps(external_ids), *self._now_args(now), call_id, C.STARTED, token),
            )
            if cur.rowcount != 1:
                raise _fenced(call_id, C.STARTED, C.STARTED)
            append_events(
                cur,
                [
                    (
                        run_id,
                        call_id,
                        now,
                        actor,
                        "external_id",
                        None,
                        "recorded",
                        json.dumps({"external_ids": external_ids}),
                    )
                ],
            )

    def complete(
        self,
        run_id: str,
        call_id: str,
        *,
        token: int,
        result_json: str,
        external_ids: dict[str, str],
        attempts: int,
        actor: str,
        src: CallState = C.STARTED,
        detail: dict[str, Any] | None = None,
        durable: bool = True,
    ) -> None:
        """`started -> completed` (or `in_doubt | failed -> completed` after a reconcile check found the effect).

        `durable=False` for a repeat-safe call only: see `Connections.write`."""
        if src is not C.STARTED:  # the hot path's `started -> completed` is legal by construction
            check_call_move(call_id, src, C.COMPLETED)
        ids = json.dumps(external_ids) if external_ids else "{}"
        info = ids if detail is None else json.dumps({**detail, "external_ids": external_ids})
        about = (run_id, actor, src, info)
        # PostgreSQL: when the row or the run's head changed meanwhile, made again the plain way (`folding`).
        folding(lambda fold: self._complete(call_id, token, result_json, ids, attempts, durable, about, fold))

    def _complete(
        self,
        call_id: str,
        token: int,
        result_json: str,
        ids: str,
        attempts: int,
        durable: bool,
        about: tuple[str, str, CallState, str],
        fold: bool,
    ) -> None:
        """`complete` in one transaction; `about`: the event's run, actor, source state and detail. `fold`: its
        last statement may carry the COMMIT (PostgreSQL)."""
        run_id, actor, src, info = about
        now = time.time()
        event = (run_id, call_id, now, actor, "call", src, C.COMPLETED, info)
        with self.conns.write(durable) as cur:
            last = getattr(cur, "commit_with_next", None) if fold else None
            kept = self.started_rows.pop(call_id, None) if last is not None else None
            if last is not None and kept is not None and kept[_AT["state"]] == src:
                # PostgreSQL, a call this process started: one statement (the compare-and-set on the row as kept,
                # the head, the event) that carries the COMMIT. No row when it changed meanwhile: the plain way.
                row = _completed(kept, result_json, ids, attempts, now)
                last()
                sets = (C.COMPLETED, result_json, ids, attempts, now, now, call_id, src, token, *kept)
                lead = (_complete_as_written(self._fence), sets)
                if append_events(cur, [event], [("calls", call_id, row_digest("calls", row))], lead=lead):
                    return
            cur.execute(
                "UPDATE calls SET state = ?, result_json = ?, external_ids = ?, attempts = ?, "
                "ended_at = ?, updated_at = ?, lease_expires_at = NULL WHERE call_id = ? AND state = ? "
                f"AND lease_token = ?{self._fence} RETURNING {_CALL_COLS}",
                (C.COMPLETED, result_json, ids, attempts, now, now, call_id, src, token),
            )
            row = cur.fetchone()  # the row as written: its claim, without reading it again
            if row is None:
                raise _fenced(call_id, src, C.COMPLETED)
            if last is not None:  # PostgreSQL: the COMMIT rides with the events
                last()
            append_events(cur, [event], [("calls", call_id, row_digest("calls", row))])

    def fail(
        self,
        run_id: str,
        call_id: str,
        *,
        token: int,
        state: CallState,
        error: str,
        attempts: int,
        actor: str,
        external_ids: dict[str, str],
        run: RunClose | None = None,
        src: CallState = C.STARTED,
    ) -> None:
        """`started -> failed | in_doubt` (or `in_doubt -> failed`) with the error; optionally move the run in
        the same commit."""
        now = time.time()
        check_call_move(call_id, src, state)
        with self.conns.write(lock=None if run is None else run_stream(run_id)) as cur:
            cur.execute(
                "UPDATE calls SET state = ?, error = ?, attempts = ?, external_ids = ?, ended_at = ?, "
                "updated_at = ?, lease_expires_at = NULL WHERE call_id = ? AND state = ? "
                f"AND lease_token = ?{self._fence}",
                (state, error, attempts, json.dumps(external_ids), now, now, call_id, src, token),
            )
            if cur.rowcount != 1:
                raise _fenced(call_id, src, state)
            events: list[EventIn] = [
                (run_id, call_id, now, actor, "call", src, state, json.dumps({"error": error, "attempts": attempts}))
            ]
            claims: list[Claim] = []
            if run is not None:
                moved = move_run(cur, run_id, run, now, actor)
                events.extend(moved.events)
                claims.append(moved.claim)
            append_events(cur, events, claims)
            restart_call_failed(cur, call_id, state, now, actor)  # a staged restart stops at its first failure

    def heartbeat(self, call_id: str, token: int, ttl: float) -> LeaseBeat:
        """Extend this worker's lease on a started call to `ttl` seconds from now by the lease clock. When it cannot
        (fenced), say why, read in the same transaction: the call was taken over (a newer token), ended by this
        worker (no longer `started`, same token), or its lease ran out by the database clock (PostgreSQL)."""
        clock = self.conns.backend.lease_clock
        with self.conns.write() as cur:
            now = time.time()
            cur.execute(
                f"UPDATE calls SET lease_expires_at = {clock.now_sql} + ?, updated_at = {clock.now_sql} WHERE "
                f"call_id = ? AND state = ? AND lease_token = ?{clock.fence} RETURNING run_id",
                (*clock.args(now), ttl, *clock.args(now), call_id, C.STARTED, token),
            )
            held = cur.fetchone()
            if held is None:
                cur.execute("SELECT state, lease_token, lease_owner FROM calls WHERE call_id = ?", (call_id,))
                row = cur.fetchone()
                if row is not None and int(row[1]) != token:
                    return LeaseBeat(Beat.TAKEN_OVER, row[2])
                return LeaseBeat(Beat.RAN_OUT if row is not None and row[0] == C.STARTED else Beat.ENDED)
            append_events(
                cur,
                [(held[0], call_id, now, "guard", "lease", C.STARTED, C.STARTED, json.dumps({"lease_token": token}))],
            )
            return LeaseBeat(Beat.HELD)

    def release(self, call_id: str, token: int) -> bool:
        """Give up this worker's lease on a call without moving it (recovery that could not settle an in-doubt
        call leaves it for the next pass or an operator at once); False when the lease was lost already."""
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                "UPDATE calls SET lease_expires_at = NULL WHERE call_id = ? AND lease_token = ? "
                "RETURNING run_id, state",
                (call_id, token),
            )
            row = cur.fetchone()
            if row is None:
                return False
            # The row changed: its claim rides on a `lease` event, or verify would find the row edited.
            detail = json.dumps({"lease_token": token, "released": True})
            append_events(cur, [(row[0], call_id, now, "guard", "lease", row[1], row[1], detail)])
            return True

    def close_run(
        self,
        run_id: str,
        close: RunClose,
        *,
        actor: str,
        expect: frozenset[RunState],
        after_changes: RunClose | None = None,
    ) -> tuple[RunRecord, bool]:
        """End a worker's block on a run: move it to `close.state` (to `after_changes.state` instead when a call
        of the run completed a change in another system) if, read inside this write transaction, it is still in
        `expect`. Otherwise it stays as another worker left it (a duplicate delivery that closed it first).

        Returns the run as it stands and whether this moved it. Holds the run's lock, as an offer in it does: a
        call is never recorded in a run another worker is closing."""
        # PostgreSQL: the COMMIT rides with the run's event; made again the plain way when it could not (`folding`).
        return folding(lambda fold: self._close_run(run_id, close, actor, expect, after_changes, fold))

    def _close_run(
        self,
        run_id: str,
        close: RunClose,
        actor: str,
        expect: frozenset[RunState],
        after_changes: RunClose | None,
        fold: bool,
    ) -> tuple[RunRecord, bool]:
        now = time.time()
        with self.conns.write(lock=run_stream(run_id)) as cur:
            cur.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,))
            row = cur.fetchone()
            if row is None:
                raise GuardUsageError(f"no run {run_id} in the ledger", run_id=run_id)
            if row[0] not in expect:
                cur.execute(f"SELECT {_RUN_COLS} FROM runs r WHERE r.run_id = ?", (run_id,))
                return RunRecord.from_row(cur.fetchone()), False
            if after_changes is not None:
                cur.execute(_CHANGED, (run_id,))
                if cur.fetchone() is not None:
                    close = after_changes
            moved = move_run(cur, run_id, close, now, actor, expect=expect, src=RunState(row[0]))
            last = getattr(cur, "commit_with_next", None) if fold else None
            if last is not None:  # PostgreSQL: nothing follows the run's event, the COMMIT rides with it
                last()
            append_events(cur, moved.events, [moved.claim])
            return moved.run, True

    def claim(
        self,
        call: CallRecord,
        *,
        worker: str,
        ttl: float,
        actor: str,
        to: CallState | None = None,
        lease_ran_out: bool = False,
    ) -> int | None:
        """Take over a call (compare-and-set on its state and lease token); the new token, or None if another
        worker changed it first. With `to`, the call also moves (e.g. `started -> in_doubt`, `in_doubt ->
        started` to run it once). `lease_ran_out`: only if the holder's lease has run out by the lease clock, judged
        in the same statement (a heartbeat that extended it since the caller looked keeps the call its worker's).
        The new lease runs `ttl` seconds from now by the lease clock."""
        now = time.time()
        clock = self.conns.backend.lease_clock
        src = CallState(call.state)
        dst = to or src
        if dst is not src:
            check_call_move(call.call_id, src, dst)
        with self.conns.write() as cur:
            started = ", started_at = ?" if dst is C.STARTED and src is not C.STARTED else ""
            params: tuple[Any, ...] = (now,) if started else ()
            expired = f" AND (lease_expires_at IS NULL OR lease_expires_at <= {clock.now_sql})" if lease_ran_out else ""
            cur.execute(
                f"UPDATE calls SET state = ?, lease_owner = ?, lease_token = lease_token + 1, "
                f"lease_expires_at = {clock.now_sql} + ?, updated_at = {clock.now_sql}{started} WHERE call_id = ? "
                f"AND state = ? AND lease_token = ?{expired}",
                (
                    dst,
                    worker,
                    *clock.args(now),
                    ttl,
                    *clock.args(now),
                    *params,
                    call.call_id,
                    src,
                    call.lease_token,
                    *(clock.args(now) if lease_ran_out else ()),
                ),
            )
            if cur.rowcount != 1:
                return None
            append_events(
                cur,
                [
                    (
                        call.run_id,
                        call.call_id,
                        now,
                        actor,
                        "call",
                        src,
                        dst,
                        json.dumps({"takeover": worker, "lease_token": call.lease_token + 1}),
                    )
                ],
            )
            if dst is C.IN_DOUBT:
                restart_call_failed(cur, call.call_id, dst, now, actor)
        return call.lease_token + 1

    def calls_in_state(self, states: tuple[CallState, ...], *, run_id: str | None = None) -> list[CallRecord]:
        """Calls in any of `states` (recovery and operators, never the hot path). Asking only for `started` and
        `in_doubt` reads the small index of unsettled calls, whatever the size of the ledger; other states scan."""
        marks = ", ".join("?" * len(states))
        unsettled = f"{UNSETTLED_SQL} AND " if set(states) <= _UNSETTLED else ""
        sql = f"SELECT {_CALL_COLS} FROM calls WHERE {unsettled}state IN ({marks})"
        params: list[Any] = list(states)
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        with self.conns.read() as cur:
            cur.execute(sql + " ORDER BY run_id, seq", params)
            return [CallRecord.from_row(r) for r in cur.fetchall()]

    def begin_rollback(self, call: CallRecord, *, actor: str, reason: str) -> bool:
        """`completed | in_doubt | failed | rollback_failed -> rolling_back` (compare-and-set); False if the
        call moved on meanwhile (another worker is compensating it)."""
        now = time.time()
        src = CallState(call.state)
        check_call_move(call.call_id, src, C.ROLLING_BACK)
        with self.conns.write() as cur:
            cur.execute(
                "UPDATE calls SET state = ?, updated_at = ? WHERE call_id = ? AND state = ?",
                (C.ROLLING_BACK, now, call.call_id, src),
            )
            if cur.rowcount != 1:
                return False
            append_events(
                cur,
                [(call.run_id, call.call_id, now, actor, "call", src, C.ROLLING_BACK, json.dumps({"reason": reason}))],
            )
        return True

    def end_rollback(self, call: CallRecord, *, ok: bool, actor: str, detail: dict[str, Any]) -> None:
        """`rolling_back -> rolled_back` (its compensation completed) or `-> rollback_failed`."""
        now = time.time()
        dst = C.ROLLED_BACK if ok else C.ROLLBACK_FAILED
        check_call_move(call.call_id, C.ROLLING_BACK, dst)
        with self.conns.write() as cur:
            cur.execute(
                "UPDATE calls SET state = ?, updated_at = ? WHERE call_id = ? AND state = ?",
                (dst, now, call.call_id, C.ROLLING_BACK),
            )
            if cur.rowcount != 1:
                raise _fenced(call.call_id, C.ROLLING_BACK, dst)
            append_events(
                cur, [(call.run_id, call.call_id, now, actor, "call", C.ROLLING_BACK, dst, json.dumps(detail))]
            )

    def record_manual_action(
        self,
        run_id: str,
        *,
        operator: str,
        action: str,
        note: str,
        call_id: str | None = None,
        run: RunClose | None = None,
    ) -> None:
        """What an operator did by hand, with their note; optionally the run's new state in the same commit."""
        if not note.strip():
            raise IllegalTransition(
                "a manual action needs a note: say what you did and why",
                entity="run",
                id=run_id,
                from_state=None,
                to_state=action,
            )
        now = time.time()
        with self.conns.write(lock=None if run is None else run_stream(run_id)) as cur:
            cur.execute(
                "INSERT INTO manual_actions (run_id, call_id, operator, action, note, at) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (run_id, call_id, operator, action, note, now),
            )
            action_id = int(cur.fetchone()[0])
            events: list[EventIn] = [
                (run_id, call_id, now, operator, "manual", None, action, json.dumps({"note": note}))
            ]
            claims = [claim(cur, "manual_actions", action_id)]
            if run is not None:
                moved = move_run(cur, run_id, run, now, operator)
                events.extend(moved.events)
                claims.append(moved.claim)
            append_events(cur, events, claims)
