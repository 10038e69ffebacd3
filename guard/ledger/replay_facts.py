"""The stored facts a policy replay decides again: every recorded call of a run or a time window, oldest first,
with whether it went to a human and which brake denied it. Reads only."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from guard.ledger.backend import Connections

__all__ = ["RecordedCall", "recorded_calls"]


class RecordedCall(NamedTuple):
    """One recorded call, the columns a replay needs, and what the ledger knows of its decision.

    `gated`: an approval was requested for it (the policy said approve). `brake`: what denied it before the policy
    was asked (`pause`, `stop`, `run`), or None. (A NamedTuple of the columns needed, not a `CallRecord`: a replay
    reads 100,000 of them in about a second.)"""

    call_id: str
    run_id: str
    seq: int
    team: str
    tool: str
    side_effect: str | None
    args_json: str
    args_hash: str
    state: str
    compensates_call_id: str | None
    offered_at: float
    gated: bool
    brake: str | None = None


_COLS = ", ".join(f"c.{name}" for name in RecordedCall._fields[:-2])


def recorded_calls(
    conns: Connections, *, run_id: str | None = None, since: float | None = None, teams: list[str] | None = None
) -> list[RecordedCall]:
    """The calls of `run_id`, or offered at or after `since` (Unix seconds), or all; of `teams` only when given;
    ordered as they were offered. Two reads, whatever the number of calls."""
    where: list[str] = []
    params: list[Any] = []
    if run_id is not None:
        where.append("c.run_id = ?")
        params.append(run_id)
    if since is not None:
        where.append("c.offered_at >= ?")
        params.append(since)
    if teams is not None:
        if not teams:
            return []
        where.append(f"c.team IN ({', '.join('?' * len(teams))})")
        params.extend(teams)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    with conns.read() as cur:
        cur.execute(
            f"SELECT {_COLS}, EXISTS (SELECT 1 FROM approvals a WHERE a.call_id = c.call_id) FROM calls c"
            f"{clause} ORDER BY c.offered_at, c.run_id, c.seq",
            tuple(params),
        )
        rows = cur.fetchall()
        cur.execute(
            f"SELECT e.call_id, e.detail FROM events e JOIN calls c ON c.call_id = e.call_id "
            f"WHERE e.entity = 'call' AND e.to_state = 'denied'{clause.replace(' WHERE ', ' AND ', 1)}",
            tuple(params),
        )
        brakes = {call_id: json.loads(detail).get("brake") for call_id, detail in cur.fetchall()}
    return [RecordedCall._make((*row[:-1], bool(row[-1]), brakes.get(row[0]))) for row in rows]
