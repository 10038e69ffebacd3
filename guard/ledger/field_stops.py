"""The seeds' stop rules on named arguments, judged and counted in the transaction that offers a call.

- `records`: far more records than expected. At most `limit` distinct values (digests) of a named argument per run,
  or per fixed window of the database clock across the team's runs. A value already counted passes.
- `duplicates`: the same tool with the same values of named arguments (the recipient, the invoice) at most `limit`
  times within the last `window` seconds, across the team's runs.
- `blanks`: a call whose named fields are written blank (the runtime found which; nothing is counted).

The runtime reads the values and hands the ledger their digests (`StopMark`), never the values. Only calls that
are recorded and not denied are counted (as `stop.rate` counts), so an agent that keeps trying stays stopped
without filling the window. Exactness across processes: a per-run count is under the run's lock (the offer's
transaction names it); a count across the team's runs takes the team's `stop-marks:<team>` lock too (on SQLite
the file's one write lock covers both). A trip denies the call; `on_trip: pause` also pauses the team or the tool
in the same transaction; a rule in `shadow` mode refuses nothing and records what it would have decided as an event.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from guard.ledger.moves import append_events
from guard.ledger.pauses import insert_pause

__all__ = ["StopMark", "count_marks", "count_shadow", "field_stop_trip", "shadow_verdicts"]


class StopMark(NamedTuple):
    """One stop rule on named arguments applied to one call (built by the runtime from the policy's rule)."""

    rule: str
    kind: str  # records | duplicates | blanks
    mark: str  # digest of the named values ("" for blanks)
    limit: int
    window: float | None  # seconds; None: per run (records) or not counted (blanks)
    on_trip: str = "deny"  # deny | pause
    pause_scope: str = "team"  # team | tool
    shadow: bool = False
    what: str = ""  # the named fields in words, for the reason
    blank: tuple[str, ...] = ()  # blanks: the named fields this call writes blank


def _scope(m: StopMark, run_id: str, now: float) -> str:
    if m.kind == "records":
        return run_id if m.window is None else f"w{int(now // m.window)}"
    return ""


def _judge(cur: Any, m: StopMark, team: str, tool: str, run_id: str, now: float) -> str | None:
    """Why `m` trips for this call, or None."""
    if m.kind == "blanks":
        if not m.blank:
            return None
        return (
            f"stop rule {m.rule}: {tool} would write {', '.join(m.blank)} blank (empty, null or whitespace), "
            "which the policy refuses (`stop.blank_fields`)"
        )
    scope = _scope(m, run_id, now)
    if m.kind == "records":
        cur.execute(
            "SELECT COUNT(*), COALESCE(MAX(CASE WHEN mark = ? THEN 1 ELSE 0 END), 0) FROM stop_marks "
            "WHERE team = ? AND rule = ? AND scope = ?",
            (m.mark, team, m.rule, scope),
        )
        seen, known = cur.fetchone()
        if known or seen < m.limit:
            return None
        where = f"run {run_id}" if m.window is None else f"team {team}'s {m.window:g}s window"
        return (
            f"stop rule {m.rule}: {where} already touched {seen} distinct {m.what} value(s), the most the policy "
            f"expects (`stop.records` max {m.limit}); this call would touch another"
        )
    cur.execute(
        "SELECT COUNT(*) FROM stop_marks WHERE team = ? AND rule = ? AND scope = '' AND mark = ? AND at > ?",
        (team, m.rule, m.mark, now - (m.window or 0.0)),
    )
    (made,) = cur.fetchone()
    if made < m.limit:
        return None
    return (
        f"stop rule {m.rule}: {tool} was already called {made} time(s) with the same {m.what} in the last "
        f"{m.window:g}s across the team's runs, the most the policy allows (`stop.duplicates`); a duplicate "
        "message is refused"
    )


def field_stop_trip(
    cur: Any, team: str, tool: str, run_id: str, marks: tuple[StopMark, ...], now: float, actor: str
) -> str | None:
    """The reason the first enforced rule of `marks` stops this call, or None. A rule with `on_trip: pause` pauses
    its team or tool here, in the offer's transaction; a shadow rule that would trip is recorded as an event of
    the run (`stop` / `would_trip`) and stops nothing."""
    for m in marks:
        reason = _judge(cur, m, team, tool, run_id, now)
        if reason is None:
            continue
        if m.shadow:
            count_shadow(cur, team, m.rule, "stop")
            append_events(
                cur,
                [
                    (
                        run_id,
                        None,
                        now,
                        actor,
                        "stop",
                        None,
                        "would_trip",
                        json.dumps(
                            {"rule": m.rule, "kind": m.kind, "tool": tool, "reason": reason, "on_trip": m.on_trip}
                        ),
                    )
                ],
            )
            continue
        if m.on_trip == "pause":
            target = team if m.pause_scope == "team" else tool
            pause_id = insert_pause(
                cur,
                "team" if m.pause_scope == "team" else "tool",
                target,
                reason=reason,
                by=f"stop rule {m.rule}",
                team=team,
                now=now,
            )
            reason += (
                f"; {m.pause_scope} {target} is now paused (pause {pause_id}) until an owner lifts it "
                f"(`guard unpause --{m.pause_scope} {target}`)"
            )
        return reason
    return None


def count_shadow(cur: Any, team: str, rule: str, kind: str) -> None:
    """Count one verdict of a rule in `mode: shadow` that differs from what was enforced (the metric
    `guard_shadow_verdicts_total`); `rule` is the enforced rule for a policy rule, the stop rule's name for a stop
    rule."""
    cur.execute(
        "INSERT INTO shadow_counts (team, rule, kind, verdicts) VALUES (?, ?, ?, 1) ON CONFLICT (team, rule, "
        "kind) DO UPDATE SET verdicts = shadow_counts.verdicts + 1",
        (team, rule, kind),
    )


def shadow_verdicts(cur: Any) -> list[tuple[str, str, str, int]]:
    """(team, rule, kind, verdicts) of every shadow rule that would have decided otherwise."""
    cur.execute("SELECT team, rule, kind, verdicts FROM shadow_counts ORDER BY team, rule, kind")
    return [(t, r, k, int(n)) for t, r, k, n in cur.fetchall()]


def count_marks(cur: Any, team: str, run_id: str, marks: tuple[StopMark, ...], now: float) -> None:
    """Count a call that was recorded and not denied in the rules of `marks` (a records value once per run or
    window; every duplicates call, pruning the ones that left the window)."""
    for m in marks:
        if m.kind == "records":
            scope = _scope(m, run_id, now)
            cur.execute(
                "INSERT INTO stop_marks (team, rule, scope, mark, at) SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS "
                "(SELECT 1 FROM stop_marks WHERE team = ? AND rule = ? AND scope = ? AND mark = ?)",
                (team, m.rule, scope, m.mark, now, team, m.rule, scope, m.mark),
            )
            if m.window is not None and cur.rowcount == 1:  # windows of the past are not read again
                cur.execute(
                    "DELETE FROM stop_marks WHERE team = ? AND rule = ? AND scope != ? AND scope LIKE 'w%'",
                    (team, m.rule, scope),
                )
        elif m.kind == "duplicates":
            cur.execute(
                "DELETE FROM stop_marks WHERE team = ? AND rule = ? AND scope = '' AND mark = ? AND at <= ?",
                (team, m.rule, m.mark, now - (m.window or 0.0)),
            )
            cur.execute(
                "INSERT INTO stop_marks (team, rule, scope, mark, at) VALUES (?, ?, '', ?, ?)",
                (team, m.rule, m.mark, now),
            )
