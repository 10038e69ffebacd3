"""The three numbers a team watches to see whether it is getting better, read from the ledger over a window, per team
and tool, so every replica of the service agrees:

- pause rate by step: calls that stopped their run for a person (waited for an approval, or ended in doubt, in a
  failed compensation, or failed in a run that now waits for review), over the calls made;
- retry success after a first failure: calls that needed more than one attempt, and how many of them completed;
- time from a failure to clean completion: for each run whose call first failed (or went in doubt) in the window
  and that then ended `completed` or `rolled_back`, the seconds between the two (for a histogram, by the tool
  that failed);
- and the approval wait: seconds from request to decision of approvals decided in the window.

Cost: one pass over the window's calls (by `offered_at`), its failure events (by `at`) and its approvals, each
through an index of migration 0012 (`ix_calls_offered_at`, the partial `ix_events_failures` that only failures
enter, `ix_approvals_decided`), so a week's figures cost a week's rows however long the ledger's history. The
service still caches them (see `guard.server.health`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guard.ledger.backend import Connections
from guard.ledger.incident_scope import chunks
from guard.ledger.tables import FAILURE_EVENTS_SQL

__all__ = ["HealthNumbers", "ToolNumbers", "health_numbers"]

_STOPPED_FOR_PERSON = ("in_doubt", "rollback_failed")


@dataclass(slots=True)
class ToolNumbers:
    calls: int = 0
    paused: int = 0  # stopped its run for a person
    retried: int = 0  # needed more than one attempt
    retried_ok: int = 0  # ... and completed

    @property
    def pause_rate(self) -> float:
        return self.paused / self.calls if self.calls else 0.0

    @property
    def retry_success(self) -> float | None:
        return self.retried_ok / self.retried if self.retried else None


@dataclass(slots=True)
class HealthNumbers:
    since: float
    by_tool: dict[tuple[str, str], ToolNumbers] = field(default_factory=dict[tuple[str, str], ToolNumbers])
    fail_to_clean: dict[tuple[str, str], list[float]] = field(default_factory=dict[tuple[str, str], list[float]])
    approval_wait: dict[tuple[str, str], list[float]] = field(default_factory=dict[tuple[str, str], list[float]])

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "tools": [
                {
                    "team": team,
                    "tool": tool,
                    "calls": n.calls,
                    "paused": n.paused,
                    "pause_rate": round(n.pause_rate, 4),
                    "retried": n.retried,
                    "retried_ok": n.retried_ok,
                    "retry_success": n.retry_success,
                    "fail_to_clean_seconds": sorted(self.fail_to_clean.get((team, tool), [])),
                    "approval_wait_seconds": sorted(self.approval_wait.get((team, tool), [])),
                }
                for (team, tool), n in sorted(self.by_tool.items())
            ],
        }


def health_numbers(conns: Connections, since: float) -> HealthNumbers:
    """The numbers over the calls offered, failures recorded and approvals decided since `since`."""
    out = HealthNumbers(since)
    with conns.read() as cur:
        cur.execute("SELECT MIN(offered_at) FROM calls")  # the index's first entry
        oldest: float | None = cur.fetchone()[0]
        # A window that starts before the first call holds the whole ledger: one pass in table order is faster than
        # a walk of the index (`+` keeps the planner off it).
        offered = "+c.offered_at" if oldest is not None and since <= oldest else "c.offered_at"
        cur.execute(
            "SELECT c.team, c.tool, c.state, c.attempts, "
            "(SELECT 1 FROM approvals a WHERE a.call_id = c.call_id), r.requires_review "
            "FROM calls c JOIN runs r ON r.run_id = c.run_id "
            f"WHERE {offered} >= ? AND c.compensates_call_id IS NULL",
            (since,),
        )
        for team, tool, state, attempts, waited, review in cur.fetchall():
            n = out.by_tool.setdefault((team, tool), ToolNumbers())
            n.calls += 1
            n.paused += bool(waited or state in _STOPPED_FOR_PERSON or (state == "failed" and review))
            if attempts > 1:
                n.retried += 1
                n.retried_ok += state == "completed"
        cur.execute(
            f"SELECT run_id, call_id, at FROM events WHERE at >= ? AND {FAILURE_EVENTS_SQL} ORDER BY at, id",
            (since,),
        )
        first: dict[str, tuple[str, float]] = {}
        for run_id, call_id, at in cur.fetchall():
            first.setdefault(run_id, (call_id, at))
        for part in chunks(sorted(first)):
            marks = ", ".join("?" * len(part))
            cur.execute(
                f"SELECT run_id, updated_at FROM runs WHERE run_id IN ({marks}) "
                "AND state IN ('completed', 'rolled_back')",
                tuple(part),
            )
            ended = dict(cur.fetchall())
            calls = [first[r][0] for r in part if r in ended]
            tools: dict[str, tuple[str, str]] = {}
            for few in chunks(calls):
                cur.execute(
                    f"SELECT call_id, team, tool FROM calls WHERE call_id IN ({', '.join('?' * len(few))})", tuple(few)
                )
                tools.update({c: (team, tool) for c, team, tool in cur.fetchall()})
            for run_id, end in ended.items():
                call_id, at = first[run_id]
                if call_id in tools:
                    out.fail_to_clean.setdefault(tools[call_id], []).append(max(0.0, end - at))
        cur.execute(
            "SELECT team, tool, decided_at - requested_at FROM approvals WHERE decided_at IS NOT NULL "
            "AND decided_at >= ?",
            (since,),
        )
        for team, tool, wait in cur.fetchall():
            out.approval_wait.setdefault((team, tool), []).append(max(0.0, float(wait)))
    return out
