"""The ledger's write path: offer a call, start it, record attempts, complete or fail it, open and close runs.

Each method is one transaction. `offer` records everything up to `started` in one commit, written before the
tool runs (write-ahead); `complete` and `fail` are the second commit. Every change of an existing row is a
compare-and-set against the transition table (`WHERE call_id = ? AND state = ?`, row count checked).
"""

from __future__ import annotations

import json
import time
from fnmatch import fnmatchcase
from typing import Any

from guard.errors import (
    ApprovalExpired,
    CallDenied,
    CallFailed,
    CallInDoubt,
    CallRejected,
    GuardUsageError,
    IdempotencyConflict,
    IllegalTransition,
)
from guard.ledger.approvals import LedgerApprovals
from guard.ledger.backend import Connections, folding, open_backend
from guard.ledger.chain import run_stream
from guard.ledger.database import sqlite_path
from guard.ledger.digests import claim, returned_run, row_digest, run_claim
from guard.ledger.drills import LedgerDrills
from guard.ledger.field_stops import count_shadow
from guard.ledger.inflight import LedgerInFlight
from guard.ledger.moves import (
    EventIn,
    RunClose,
    append_events,
    cas_call,
    detail_json,
    move_run,
    move_run_if,
    new_id,
)
from guard.ledger.notices import LedgerNotices
from guard.ledger.offers import CallRequest, Offer
from guard.ledger.pauses import LedgerPauses, PausedAtSource, source_pause
from guard.ledger.pool import PoolLimits
from guard.ledger.queries import LedgerQueries
from guard.ledger.records import CallRecord, RunRecord
from guard.ledger.replays import LedgerReplays
from guard.ledger.restarts import LedgerRestarts, restart_tripped, stage_gate, stage_pass
from guard.ledger.seals import LedgerSeals
from guard.ledger.signals import Wakes
from guard.ledger.states import (
    KEY_RELEASING_STATES,
    OPEN_RUN_STATES,
    CallState,
    RunState,
    check_call_move,
)
from guard.ledger.stop_rules import count_offer, stop_reason
from guard.ledger.tokens import LedgerTokens

__all__ = ["CallRequest", "Ledger", "Offer", "RunClose", "new_id"]

C = CallState
_CALL_COLS = ", ".join(CallRecord.columns())
# Insert a call; no row when its key (or id) is taken. Its lease (the last column) is a value: the lease clock's
# now, read by the offer's first statement, plus the ttl, so its digest is known before it is written.
_INSERT_CALL = (
    f"INSERT INTO calls ({_CALL_COLS}) VALUES ({', '.join('?' * len(CallRecord.columns()))}) ON CONFLICT DO NOTHING"
)
_RUN_GATES: dict[str, str] = {}  # by the backend's clock SQL


def _run_gate(clock_sql: str) -> str:
    """The run's state, whether any pause is active, the next sequence number and the database's clock (for rate
    windows, approval expiry and the lease on PostgreSQL): one statement per offer."""
    sql = _RUN_GATES.get(clock_sql)
    if sql is None:
        sql = (
            "SELECT state, EXISTS (SELECT 1 FROM pauses WHERE lifted_at IS NULL), "
            f"(SELECT COALESCE(MAX(seq), 0) + 1 FROM calls WHERE run_id = ?), {clock_sql} FROM runs WHERE run_id = ?"
        )
        _RUN_GATES[clock_sql] = sql
    return sql


def _path(*states: CallState) -> list[str]:
    """The states from no row to the last one, each move checked against the table once, at import."""
    for src, dst in zip((None, *states[:-1]), states, strict=True):
        check_call_move("<insert>", src, dst)
    return [str(s) for s in states]


# How a new call enters the ledger, by the state it is inserted in. Its first commit is one event naming this
# path (`EventRecord.path`): the moves happen in one transaction at one instant, so one event loses nothing.
_PATHS = {
    C.DENIED: _path(C.OFFERED, C.DENIED),
    C.AWAITING_APPROVAL: _path(C.OFFERED, C.AWAITING_APPROVAL),
    C.STARTED: _path(C.OFFERED, C.APPROVED, C.STARTED),
}
# A new run, as written (its claim's columns): nothing when the id is taken (a resume, or a duplicate delivery).
_OPEN_RUN = (
    "INSERT INTO runs (run_id, team, source_event_id, subject, state, requires_review, created_by, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, FALSE, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING "
    f"RETURNING {', '.join(RunRecord.stored_columns())}"
)
_INSERT_APPROVAL = (
    "INSERT INTO approvals (approval_id, call_id, run_id, team, tool, rule, args_hash, args_json, roles, "
    "quorum, requested_by, requested_at, expires_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Ledger(
    LedgerQueries,
    LedgerApprovals,
    LedgerPauses,
    LedgerInFlight,
    LedgerTokens,
    LedgerNotices,
    LedgerSeals,
    LedgerRestarts,
    LedgerReplays,
    LedgerDrills,
):
    """The durable record of runs, calls, approvals and events. Thread-safe: one connection per thread.

    Open with `Ledger(url)`; a new SQLite file is created and migrated, an old one must be upgraded
    (`guard db upgrade`). Failure modes: LedgerUnavailable (database error, nothing recorded),
    IllegalTransition (a refused move or a lost compare-and-set).
    """

    def __init__(self, url: str, *, listen_url: str | None = None, pool: PoolLimits | None = None) -> None:
        self.url = url
        # A database server's connections are bounded per process (`pool`, else GUARD_DB_POOL_*); a SQLite file's
        # are not. See guard.ledger.pool.
        limits = None if sqlite_path(url) is not None else (pool or PoolLimits.resolve())
        self.conns = Connections(open_backend(url), limits)
        self.started_rows = {}  # the calls this process started, as inserted (`LedgerInFlight._keep_started`)
        # How waiting agents hear of decisions; on PostgreSQL a LISTEN connection on `listen_url` (default
        # GUARD_LISTEN_URL, else `url`), opened when an agent first waits. See guard.ledger.signals.
        self.wakes = Wakes(url, listen_url)

    def close(self) -> None:
        self.wakes.close()
        self.conns.close()

    # -- runs ---------------------------------------------------------------------------------------------

    def open_run(
        self,
        run_id: str,
        team: str,
        *,
        actor: str,
        subject: str | None = None,
        source_event_id: str | None = None,
        pauses: tuple[str, ...] | None = None,
    ) -> RunRecord:
        """Create the run, or return it unchanged when it exists for the same team (a resume).

        `pauses`: refuse to create it while a pause holds at its source (the team's, or one of these tools'; see
        `source_pause`), judged in the same transaction, and raise PausedAtSource having recorded nothing. A run
        that exists is resumed all the same: the brakes judge its calls."""
        # PostgreSQL: the COMMIT rides with the new run's event; made again the plain way when it could not.
        return folding(lambda fold: self._open_run(run_id, team, actor, subject, source_event_id, pauses, fold))

    def _open_run(
        self,
        run_id: str,
        team: str,
        actor: str,
        subject: str | None,
        source_event_id: str | None,
        pauses: tuple[str, ...] | None,
        fold: bool,
    ) -> RunRecord:
        now = time.time()
        with self.conns.write() as cur:
            # The run's id is its key: of two workers opening one run at once (a duplicate delivery), one inserts
            # it and the other waits for that commit, then finds the run (READ COMMITTED: a new statement sees it).
            cur.execute(_OPEN_RUN, (run_id, team, source_event_id, subject, RunState.RUNNING, actor, now, now))
            inserted = cur.fetchone()
            if inserted is None:
                cur.execute(f"SELECT {RunRecord.sql_columns()} FROM runs r WHERE r.run_id = ?", (run_id,))
                run = RunRecord.from_row(cur.fetchone())
                if run.team != team:
                    raise GuardUsageError(
                        f"run {run_id} belongs to team {run.team}, not {team}", run_id=run_id, team=team
                    )
                return run
            if pauses is not None and (pause := source_pause(cur, team, pauses)) is not None:
                raise PausedAtSource(pause)  # the insert is rolled back
            detail = {"team": team, "subject": subject, "source_event_id": source_event_id}
            last = getattr(cur, "commit_with_next", None) if fold else None
            if last is not None:  # PostgreSQL: nothing follows the run's event, the COMMIT rides with it
                last()
            append_events(
                cur,
                [(run_id, None, now, actor, "run", None, RunState.RUNNING, detail_json(detail))],
                [run_claim(row := returned_run(inserted))],
                fresh=True,  # its stream's head row is made with the event (or, if one is there, read and moved)
            )
            return RunRecord.from_row((*row, None, 0))  # a new run: no call yet

    def move_run(
        self,
        run_id: str,
        close: RunClose,
        *,
        actor: str,
        expect: frozenset[RunState] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Move a run to `close.state` (compare-and-set on its current state, which must be in `expect`)."""
        now = time.time()
        with self.conns.write(lock=run_stream(run_id)) as cur:
            moved = move_run(cur, run_id, close, now, actor, expect=expect, detail=detail)
            append_events(cur, moved.events, [moved.claim])
            return moved.run

    # -- the call path ------------------------------------------------------------------------------------

    def offer(self, req: CallRequest) -> Offer:
        """Brakes, record `offered`, dedupe, gate: one commit. See `Offer` for what comes back.

        The common path is three statements after BEGIN: read the run (state, any pause, next seq, the database's
        clock), insert the call with its key (`ON CONFLICT DO NOTHING`: a taken key means an earlier call, handled by
        `_existing`) and append its events (one statement on PostgreSQL, `append_events(lead=...)`), commit. A
        completed key returns its recorded result even when a brake is on: that runs nothing.

        The transaction holds the run's lock (`run:<id>`): the next sequence number, the run's state and its
        stop-rule counts are read and acted on by one offer of the run at a time, while other runs' offers go on.
        """
        # PostgreSQL: when its key or its run's head was taken meanwhile, made again the plain way (`folding`).
        return folding(lambda fold: self._offer(req, fold=fold))

    def _offer(self, req: CallRequest, *, fold: bool) -> Offer:
        """`offer`; `fold`: an auto-approved call's last statement carries the COMMIT (`commit_with_next`)."""
        now = time.time()
        with self.conns.write(lock=run_stream(req.run_id)) as cur:
            cur.execute(_run_gate(self.conns.backend.clock_sql), (req.run_id, req.run_id))
            row = cur.fetchone()
            if row is None:
                raise GuardUsageError(
                    f"no run {req.run_id} in the ledger: open it with guard.run(...) first", run_id=req.run_id
                )
            run_state, paused, seq, db_now = row
            # Rate windows are judged by the database clock, read once (above) for the check and the count.
            clock = float(db_now) if (req.stop_rates or req.stop_marks) and req.compensates_call_id is None else 0.0
            brake = self._brake(cur, req, run_state, bool(paused), clock)
            if brake is not None or req.verdict == "deny":
                earlier = self._by_key(cur, req)
                if earlier is not None and earlier.state == C.COMPLETED:
                    return self._existing(cur, req, earlier, now)
                reason = brake[1] if brake is not None else req.reason
                self._insert(cur, req, seq, now, C.DENIED, reason=reason, brake=brake[0] if brake else None)
                return Offer("denied", req.call_id, seq, reason=reason, brake=brake[0] if brake else None)
            if req.verdict == "approve":
                if not self._insert(cur, req, seq, now, C.AWAITING_APPROVAL):
                    return self._existing(cur, req, self._holder(cur, req), now)
                if clock:
                    count_offer(cur, req, clock)
                approval_id, expires_at = self._request_approval(cur, req, now, float(db_now))
                return Offer("awaiting", req.call_id, seq, approval_id=approval_id, expires_at=expires_at)
            lease_now = self.conns.backend.lease_clock.pick(now, float(db_now))
            last = None if clock or req.shadow is not None or not fold else getattr(cur, "commit_with_next", None)
            if last is not None:  # PostgreSQL: nothing follows the call's insert and event, the COMMIT rides with them
                last()
            if not self._insert(cur, req, seq, now, C.STARTED, lease_now=lease_now, keep=last is not None):
                return self._existing(cur, req, self._holder(cur, req), now)
            if clock:
                count_offer(cur, req, clock)
            return Offer("started", req.call_id, seq, lease_token=1)

    def _by_key(self, cur: Any, req: CallRequest) -> CallRecord | None:
        if req.idempotency_key is None:
            return None
        cur.execute(
            f"SELECT {_CALL_COLS} FROM calls WHERE team = ? AND idempotency_key = ?", (req.team, req.idempotency_key)
        )
        row = cur.fetchone()
        return None if row is None else CallRecord.from_row(row)

    def _holder(self, cur: Any, req: CallRequest) -> CallRecord:
        """The earlier call the insert conflicted with: same idempotency key, or same call id (an adapter
        passing the framework's tool-call id again, e.g. on a resume)."""
        call = self._by_key(cur, req)
        if call is None:
            cur.execute(f"SELECT {_CALL_COLS} FROM calls WHERE call_id = ?", (req.call_id,))
            row = cur.fetchone()
            call = None if row is None else CallRecord.from_row(row)
            if call is not None and call.run_id != req.run_id:
                # Never hand one run another run's result: a framework reused its tool-call id.
                raise IdempotencyConflict(
                    f"call id {req.call_id!r} belongs to run {call.run_id}, not {req.run_id}: call ids are unique "
                    "across runs; prefix a framework's tool-call ids with the run id",
                    key=req.idempotency_key,
                    recorded_hash=call.args_hash,
                    run_id=req.run_id,
                    call_id=req.call_id,
                    tool=req.tool,
                    state=call.state,
                )
        if call is None:  # pragma: no cover - (run_id, seq) cannot collide under the write lock
            raise IllegalTransition(
                f"call {req.call_id} conflicted with no call that holds its key or id",
                entity="call",
                id=req.call_id,
                from_state=None,
                to_state=C.OFFERED,
            )
        return call

    def _brake(self, cur: Any, req: CallRequest, run_state: str, paused: bool, clock: float) -> tuple[str, str] | None:
        """A kill switch, a closed run or a stop rule that stops this call, as (kind, reason); None when clear.

        Stop rules never stop a compensation: undoing what the run did is bounded by what it did."""
        if run_state not in OPEN_RUN_STATES and not (
            run_state == RunState.ROLLING_BACK and req.compensates_call_id is not None
        ):
            return ("run", f"run {req.run_id} is {run_state}: no new call may start in it")
        staged: set[tuple[str, str, str | None]] = set()  # pause points a staged restart lets this call through
        if paused:  # only when a pause is active anywhere: the common case costs no second statement
            cur.execute(
                "SELECT scope, target, reason, paused_by, team FROM pauses WHERE lifted_at IS NULL "
                "AND (team = ? OR team IS NULL OR (scope = 'run' AND target = ?))",
                (req.team, req.run_id),
            )
            for scope, target, reason, by, team in cur.fetchall():
                hit = (
                    (scope == "team" and target == req.team)
                    or (scope == "run" and target == req.run_id)
                    or (scope == "tool" and fnmatchcase(req.tool, target))
                )
                if hit:
                    # A stage's count is the pause point's, shared by every run: one offer at a time judges it.
                    self.conns.backend.lock(cur, f"restart:{scope}:{team or ''}:{target}")
                    passes, held = stage_gate(cur, scope, target, team, time.time())
                    if not passes:
                        lift = held or f"lift it with `guard unpause --{scope} {target}`"
                        return ("pause", f"{scope} {target} is paused by {by}: {reason} ({lift})")
                    staged.add((scope, target, team))
        stop = stop_reason(cur, self.conns.backend, req, clock)  # guard.ledger.stop_rules
        if stop is not None:
            if staged:  # a stop rule tripping during a stage pauses again at once
                restart_tripped(cur, sorted(staged, key=str), time.time(), stop)
            return ("stop", stop)
        if staged and req.verdict != "deny":
            for scope, target, team in sorted(staged, key=str):
                stage_pass(cur, scope, target, team, req.call_id, time.time())
        return None

    def _insert(
        self,
        cur: Any,
        req: CallRequest,
        seq: int,
        now: float,
        state: CallState,
        *,
        reason: str | None = None,
        brake: str | None = None,
        lease_now: float | None = None,
        keep: bool = False,
    ) -> bool:
        """Insert the call in `state` with the events of its path there; False (nothing written) when its key is
        taken. `lease_now`: a started call's now by the lease clock: its lease runs `lease_ttl` from it, and it is
        the call's `updated_at`, its first sign of life (`recover(stale_after=)` judges them by the same clock).

        A denied call holds no key (it provably never ran, so the key stays free for a later offer). `keep`: remember
        the row as inserted, for its completion (`LedgerInFlight._keep_started`).
        """
        key = None if state is C.DENIED else req.idempotency_key
        started = now if state is C.STARTED else None
        ended = now if state is C.DENIED else None
        released = req.idempotency_key if key is None else None
        leased = state is C.STARTED
        values = (
            req.call_id,
            req.run_id,
            seq,
            req.team,
            req.tool,
            req.side_effect,
            req.rule,
            req.policy_version,
            req.args_json,
            req.args_hash,
            key,
            released,
            str(state),
            0,
            "{}",
            None,
            None,
            reason,
            req.compensates_call_id,
            req.actor,
            now,
            started,
            started,
            ended,
            now if lease_now is None else lease_now,
            req.worker if leased else None,
            1 if leased else 0,
            None if lease_now is None else lease_now + req.lease_ttl,
        )
        # One event for the whole path (`EventRecord.path`), carrying the call's claim: its digest as inserted
        # (guard.ledger.digests), so an edit of any of its fields is found by `verify`. The hash and policy
        # version (and a shadow rule's verdict) are repeated for the story's reader; a denial names its brake
        # (`pause`, `stop`, `run`): the notifier tells the owners of a tripped stop rule.
        detail: dict[str, Any] = {
            "path": _PATHS[state],
            "args_hash": req.args_hash,
            "policy_version": req.policy_version,
        }
        if req.shadow is not None:
            detail["shadow"] = req.shadow
        if state is C.DENIED:
            detail["reason"] = reason
            if brake:
                detail["brake"] = brake
        # The insert leads: the events follow only if it wrote the row (in one statement where the backend can).
        if not append_events(
            cur,
            [(req.run_id, req.call_id, now, req.actor, "call", None, state, detail_json(detail))],
            [("calls", req.call_id, row_digest("calls", values))],
            lead=(_INSERT_CALL, values),
        ):
            return False
        if keep:
            self._keep_started(req.call_id, values)
        if req.shadow is not None:
            count_shadow(cur, req.team, req.rule or "-", "rule")
        return True

    def _request_approval(self, cur: Any, req: CallRequest, now: float, db_now: float) -> tuple[str, float]:
        approval_id = new_id("apr")
        expires_at = db_now + req.expires_after  # expiry is judged by the database clock (read by the run's gate)
        cur.execute(
            _INSERT_APPROVAL,
            (
                approval_id,
                req.call_id,
                req.run_id,
                req.team,
                req.tool,
                req.rule,
                req.args_hash,
                req.args_json,
                json.dumps(list(req.approval_roles)),
                req.quorum,
                req.actor,
                now,
                expires_at,
                "pending",
            ),
        )
        events: list[EventIn] = [
            (
                req.run_id,
                req.call_id,
                now,
                req.actor,
                "approval",
                None,
                "pending",
                json.dumps(
                    {
                        "approval_id": approval_id,
                        "roles": list(req.approval_roles),
                        "quorum": req.quorum,
                        "expires_at": expires_at,
                    }
                ),
            )
        ]
        events.extend(
            move_run_if(
                cur,
                req.run_id,
                RunState.RUNNING,
                RunState.PAUSED,
                now,
                req.actor,
                f"waiting for approval {approval_id}",
            )
        )
        append_events(cur, events, [claim(cur, "approvals", approval_id)])
        return approval_id, expires_at

    def _existing(self, cur: Any, req: CallRequest, call: CallRecord, now: float) -> Offer:
        """An earlier call holds this idempotency key: never a second `offered`, never a blind re-run."""
        common = {"run_id": call.run_id, "call_id": call.call_id, "tool": call.tool, "state": call.state}
        if call.args_hash != req.args_hash or call.tool != req.tool:
            what = (
                f"call id {req.call_id!r}"
                if call.call_id == req.call_id
                else f"idempotency key {req.idempotency_key!r}"
            )
            raise IdempotencyConflict(
                f"{what} was used by call {call.call_id} ({call.tool}) with other arguments; use a new "
                "one for a new action",
                key=req.idempotency_key,
                recorded_hash=call.args_hash,
                **common,
            )
        state = CallState(call.state)
        if state is C.COMPLETED:
            return Offer("completed", call.call_id, call.seq, record=call)
        if state is C.AWAITING_APPROVAL:
            cur.execute("SELECT approval_id, expires_at FROM approvals WHERE call_id = ?", (call.call_id,))
            approval_id, expires_at = cur.fetchone()
            return Offer(
                "awaiting", call.call_id, call.seq, approval_id=approval_id, expires_at=expires_at, record=call
            )
        if state is C.APPROVED:
            cur.execute(
                "SELECT approved_args_json, approved_args_hash FROM approvals WHERE call_id = ?", (call.call_id,)
            )
            edited, edited_hash = cur.fetchone() or (None, None)
            clock = self.conns.backend.lease_clock
            cas_call(
                cur,
                call,
                C.STARTED,
                now,
                req.actor,
                "started_at = ?, lease_owner = ?, lease_token = lease_token + 1, "
                f"lease_expires_at = {clock.now_sql} + ?",
                (now, req.worker, *clock.args(now), req.lease_ttl),
            )
            append_events(
                cur,
                move_run_if(
                    cur,
                    call.run_id,
                    RunState.PAUSED,
                    RunState.RUNNING,
                    now,
                    req.actor,
                    f"call {call.call_id} approved and started",
                ),
            )
            return Offer(
                "started",
                call.call_id,
                call.seq,
                record=call,
                lease_token=call.lease_token + 1,
                edited_args=edited,
                edited_hash=edited_hash if edited is not None else None,
            )
        if state is C.STARTED:
            expires = call.lease_expires_at
            now = self.conns.backend.lease_clock.now(self.conns.backend, cur)  # as leases are judged
            live = expires is not None and expires > now
            raise CallInDoubt(
                f"call {call.call_id} ({call.tool}) with this key is already started; it is never run twice. "
                + (
                    f"Worker {call.lease_owner} holds its lease for {expires - now:.0f}s more (renewed while that "
                    "worker lives). If that worker is dead, `guard recover --app MODULE:GUARD` takes the call over "
                    "once the lease runs out, or at once `guard recover --app MODULE:GUARD --dead-worker "
                    f"{call.lease_owner}` (only when you know its process is gone); it is reconciled, never re-run "
                    "blindly"
                    if expires is not None and live
                    else f"Its worker {call.lease_owner}'s lease ran out: `guard recover --app MODULE:GUARD` takes it "
                    "over (reconciled, never re-run blindly)"
                ),
                in_flight=live,
                held_by=call.lease_owner,
                lease_expires_at=expires,
                **common,
            )
        if state is C.IN_DOUBT:
            raise CallInDoubt(
                f"call {call.call_id} ({call.tool}) with this key is in doubt: its outcome is not known; "
                "it is never re-run blindly (see `guard runs show " + call.run_id + "`)",
                **common,
            )
        if state in KEY_RELEASING_STATES:  # found by its call id: the same refused call, offered again
            # The same typed outcome a blocking wait gets, so a deferred resume reads the same as a live one.
            kind = {C.REJECTED: CallRejected, C.EXPIRED: ApprovalExpired}.get(state, CallDenied)
            raise kind(
                f"call {call.call_id} ({call.tool}) was {state}: {call.reason or ''}; it is not offered again",
                reason=call.reason,
                **common,
            )
        raise CallFailed(
            f"call {call.call_id} ({call.tool}) with this key ended {state}"
            + (f": {call.error}" if call.error else "")
            + "; it is not run again",
            **common,
        )
