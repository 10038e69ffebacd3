"""The policy's stop rules (`stop:`), judged against the ledger in the transaction that offers a call.

Repeats (the same call at most N times in a row in a run), calls per run of a tool glob (`max_calls`), and the
team's rate of a tool glob per window of the database clock (`rate`); the rules on named arguments are
`guard.ledger.field_stops`. `stop_reason` asks all of them before a call is recorded; `count_offer` counts a
call that was recorded (not a denied one, not one found by its key) in the rate windows and the field marks.

Stop rules never stop a compensation (undoing what the run did is bounded by what it did), and never count a call
offered again (a resume, or a repeat found by its key: it runs nothing new).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from guard.ledger.backend import Backend
from guard.ledger.field_stops import count_marks, field_stop_trip
from guard.ledger.offers import CallRequest

__all__ = ["count_offer", "stop_reason"]


def stop_reason(cur: Any, backend: Backend, req: CallRequest, clock: float) -> str | None:
    """Why the policy's stop rules refuse this call, or None when none trips (or the policy sets no `stop:`).

    `clock`: the database clock, read once by the offer for the check and the count of rate windows."""
    if req.compensates_call_id is not None:
        return None
    if req.stop_repeats is None and not (req.stop_limits or req.stop_rates or req.stop_marks):
        return None
    if _offered_before(cur, req):
        return None
    reason = _run_and_rate_reason(cur, req, clock)
    if reason is None and req.stop_marks:
        if any(m.window is not None for m in req.stop_marks):  # counted across the team's runs
            backend.lock(cur, f"stop-marks:{req.team}")
        reason = field_stop_trip(cur, req.team, req.tool, req.run_id, req.stop_marks, clock, req.actor)
    return reason


def count_offer(cur: Any, req: CallRequest, clock: float) -> None:
    """Count a newly recorded call in the windows of its rate rules and in its field marks (`clock` as above)."""
    for pattern, _limit, per in req.stop_rates:
        cur.execute(
            'INSERT INTO rate_windows (team, pattern, period, "window", calls) VALUES (?, ?, ?, ?, 1) '
            'ON CONFLICT (team, pattern, period) DO UPDATE SET calls = CASE WHEN rate_windows."window" = '
            'excluded."window" THEN rate_windows.calls + 1 ELSE 1 END, "window" = excluded."window"',
            (req.team, pattern, per, int(clock // per)),
        )
    count_marks(cur, req.team, req.run_id, req.stop_marks, clock)


def _offered_before(cur: Any, req: CallRequest) -> bool:
    """This call is in the ledger already, by its id or its key: a resume or a repeat that runs nothing new,
    which stop rules do not count again."""
    cur.execute(
        "SELECT 1 FROM calls WHERE call_id = ? OR (team = ? AND idempotency_key = ?) LIMIT 1",
        (req.call_id, req.team, req.idempotency_key),
    )
    return cur.fetchone() is not None


def _run_and_rate_reason(cur: Any, req: CallRequest, now: float) -> str | None:
    """Why repeats, calls per run or the team's rate refuse this call in its run, or None. Calls denied earlier
    do not count, so an agent that keeps looping stays stopped, and one that changes course goes on."""
    n = req.stop_repeats
    if n is not None:
        cur.execute(
            "SELECT tool, args_hash FROM calls WHERE run_id = ? AND state != 'denied' ORDER BY seq DESC LIMIT ?",
            (req.run_id, n),
        )
        last = cur.fetchall()
        if len(last) == n and all(tool == req.tool and digest == req.args_hash for tool, digest in last):
            return (
                f"stop rule: {req.tool} was called with these same arguments {n} time(s) in a row in run "
                f"{req.run_id}, the most the policy allows (`stop.repeats: {n}`); change course or end "
                "the run"
            )
    if req.stop_limits:
        cur.execute("SELECT tool FROM calls WHERE run_id = ? AND state != 'denied'", (req.run_id,))
        tools = [tool for (tool,) in cur.fetchall()]
        for pattern, limit in req.stop_limits:
            made = sum(1 for tool in tools if fnmatchcase(tool, pattern))
            if made >= limit:
                return (
                    f"stop rule: run {req.run_id} already made {made} call(s) of {pattern}, the most the "
                    f"policy allows per run (`stop.max_calls: {{{pattern}: {limit}}}`)"
                )
    if req.stop_rates:
        made = _lock_rates(cur, req, now)
        for pattern, limit, per in req.stop_rates:
            if made[(pattern, per)] >= limit:
                wait = (int(now // per) + 1) * per - now
                return (
                    f"stop rule: team {req.team} already made {made[(pattern, per)]} call(s) of {pattern} in "
                    f"this {per:g}s window, the most the policy allows (`stop.rate`); the next window opens "
                    f"in {wait:.0f}s"
                )
    return None


def _lock_rates(cur: Any, req: CallRequest, now: float) -> dict[tuple[str, float], int]:
    """The team's calls so far in the current window of each rate rule, each counter row locked until commit
    (made, or rolled over to the new window, in the same statement). Every worker of the team counts on the
    same rows: the check here and the count in `count_offer` are one step for the whole team, however many
    processes offer at once. Locked in one order (pattern, period), so two offers never wait for each other
    the other way round."""
    made: dict[tuple[str, float], int] = {}
    for pattern, _limit, per in sorted(req.stop_rates, key=lambda r: (r[0], r[2])):
        # `"window"` quoted: a reserved word in PostgreSQL (SQLite takes it either way).
        cur.execute(
            'INSERT INTO rate_windows (team, pattern, period, "window", calls) VALUES (?, ?, ?, ?, 0) '
            'ON CONFLICT (team, pattern, period) DO UPDATE SET calls = CASE WHEN rate_windows."window" = '
            'excluded."window" THEN rate_windows.calls ELSE 0 END, "window" = excluded."window" '
            "RETURNING calls",
            (req.team, pattern, per, int(now // per)),
        )
        made[(pattern, per)] = int(cur.fetchone()[0])
    return made
