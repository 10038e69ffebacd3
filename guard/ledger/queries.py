"""The ledger's read side: what the CLI, the approval service and the runtime ask of it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from guard.ledger.audit import AuditReport, audit
from guard.ledger.backend import Connections
from guard.ledger.records import (
    ApprovalRecord,
    CallRecord,
    DecisionRecord,
    EventRecord,
    ManualActionRecord,
    RunRecord,
)
from guard.ledger.states import FINISHED_RUN_STATES, UNSETTLED_SQL, RunState

__all__ = ["LedgerQueries", "OpenWork"]

# Run states that still need something: work going on, or a person (read through ix_runs_state).
_UNFINISHED_RUNS = tuple(s.value for s in RunState if s not in FINISHED_RUN_STATES)


@dataclass(frozen=True, slots=True)
class OpenWork:
    """What waits on people or is stuck, by team, as the ledger says now (the service's metrics)."""

    now: float  # the database clock
    pending: list[tuple[str, int, float]]  # team, approvals waiting for a decision, oldest request's time
    runs: list[tuple[str, str, int]]  # team, run state, runs (open states only)
    unsettled: list[tuple[str, str, int]]  # team, `started` or `in_doubt`, calls
    notices: list[tuple[str, str, int]]  # team, `failed` or `sending`, webhook notifications


class LedgerQueries:
    """Reads, each one statement outside any write transaction."""

    conns: Connections

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.conns.read() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._one(f"SELECT {RunRecord.sql_columns()} FROM runs r WHERE r.run_id = ?", (run_id,))
        return None if row is None else RunRecord.from_row(row)

    def list_runs(self, *, team: str | None = None, state: str | None = None, limit: int = 50) -> list[RunRecord]:
        sql = f"SELECT {RunRecord.sql_columns()} FROM runs r WHERE 1 = 1"
        params: list[Any] = []
        if team:
            sql += " AND r.team = ?"
            params.append(team)
        if state:
            sql += " AND r.state = ?"
            params.append(state)
        sql += " ORDER BY r.created_at DESC LIMIT ?"
        params.append(limit)
        return [RunRecord.from_row(r) for r in self._all(sql, tuple(params))]

    def get_call(self, call_id: str) -> CallRecord | None:
        row = self._one(f"SELECT {CallRecord.sql_columns()} FROM calls WHERE call_id = ?", (call_id,))
        return None if row is None else CallRecord.from_row(row)

    def calls_of(self, run_id: str) -> list[CallRecord]:
        rows = self._all(f"SELECT {CallRecord.sql_columns()} FROM calls WHERE run_id = ? ORDER BY seq", (run_id,))
        return [CallRecord.from_row(r) for r in rows]

    def events_of(self, run_id: str) -> list[EventRecord]:
        rows = self._all(f"SELECT {EventRecord.sql_columns()} FROM events WHERE run_id = ? ORDER BY id", (run_id,))
        return [EventRecord.from_row(r) for r in rows]

    def last_event_id(self, run_id: str) -> int:
        """The id of the run's newest event (0 when it has none): one look at the run's event index."""
        row = self._one("SELECT max(id) FROM events WHERE run_id = ?", (run_id,))
        return int(row[0]) if row is not None and row[0] is not None else 0

    def call_events_after(self, run_id: str, call_id: str, after: int) -> list[EventRecord]:
        """The call's events newer than the run's event `after` (`last_event_id`), oldest first: what happened to
        the call since then, read through the run's event index without scanning the run's older events."""
        rows = self._all(
            f"SELECT {EventRecord.sql_columns()} FROM events WHERE run_id = ? AND id > ? AND call_id = ? ORDER BY id",
            (run_id, after, call_id),
        )
        return [EventRecord.from_row(r) for r in rows]

    def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        row = self._one(f"SELECT {ApprovalRecord.sql_columns()} FROM approvals WHERE approval_id = ?", (approval_id,))
        return None if row is None else ApprovalRecord.from_row(row)

    def approval_for_call(self, call_id: str) -> ApprovalRecord | None:
        row = self._one(f"SELECT {ApprovalRecord.sql_columns()} FROM approvals WHERE call_id = ?", (call_id,))
        return None if row is None else ApprovalRecord.from_row(row)

    def args_run_with(self, call: CallRecord) -> str:
        """The arguments (JSON, secrets redacted) the call was approved to run with: a reviewer's edit when there
        is one, else the agent's. What a compensation undoes, a reconcile check looks for, a repair repeats."""
        approval = self.approval_for_call(call.call_id)
        if approval is not None and approval.approved_args_json is not None:
            return approval.approved_args_json
        return call.args_json

    def list_approvals(
        self, *, state: str | None = "pending", team: str | None = None, limit: int = 100
    ) -> list[ApprovalRecord]:
        sql = f"SELECT {ApprovalRecord.sql_columns()} FROM approvals WHERE 1 = 1"
        params: list[Any] = []
        if state:
            sql += " AND state = ?"
            params.append(state)
        if team:
            sql += " AND team = ?"
            params.append(team)
        sql += " ORDER BY requested_at LIMIT ?"
        params.append(limit)
        return [ApprovalRecord.from_row(r) for r in self._all(sql, tuple(params))]

    def decisions_of(self, approval_id: str) -> list[DecisionRecord]:
        rows = self._all(
            f"SELECT {DecisionRecord.sql_columns()} FROM approval_decisions WHERE approval_id = ? ORDER BY id",
            (approval_id,),
        )
        return [DecisionRecord.from_row(r) for r in rows]

    def manual_actions_of(self, run_id: str) -> list[ManualActionRecord]:
        rows = self._all(
            f"SELECT {ManualActionRecord.sql_columns()} FROM manual_actions WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [ManualActionRecord.from_row(r) for r in rows]

    def run_story(self, run: RunRecord) -> dict[str, Any]:
        """Everything known about a run, JSON-ready: the run, its calls (arguments, results and external ids
        decoded), its event trail and the manual actions. What `guard runs show` and the reviewer page tell."""
        calls: list[dict[str, Any]] = []
        for c in self.calls_of(run.run_id):
            data = c.to_dict()
            data["args"] = json.loads(data.pop("args_json"))
            data["result"] = json.loads(data.pop("result_json")) if c.result_json is not None else None
            data["external_ids"] = c.external_id_map
            calls.append(data)
        return {
            "run": run.to_dict(),
            "calls": calls,
            "events": [
                e.to_dict() | {"detail": json.loads(e.detail), "path": list(e.path)} for e in self.events_of(run.run_id)
            ],
            "manual_actions": [m.to_dict() for m in self.manual_actions_of(run.run_id)],
        }

    def call_state(self, call_id: str) -> str | None:
        """The call's state alone: the cheap read a waiting agent polls."""
        row = self._one("SELECT state FROM calls WHERE call_id = ?", (call_id,))
        return None if row is None else str(row[0])

    def open_work(self) -> OpenWork:
        """Counts of what is open, each read through an index of its own (never a scan of every call)."""
        with self.conns.read() as cur:
            now = self.conns.backend.clock(cur)
            cur.execute("SELECT team, count(*), min(requested_at) FROM approvals WHERE state = 'pending' GROUP BY team")
            pending = [(str(t), int(n), float(oldest)) for t, n, oldest in cur.fetchall()]
            cur.execute(
                f"SELECT team, state, count(*) FROM runs WHERE state IN "
                f"({', '.join('?' * len(_UNFINISHED_RUNS))}) GROUP BY team, state",
                _UNFINISHED_RUNS,
            )
            runs = [(str(t), str(st), int(n)) for t, st, n in cur.fetchall()]
            cur.execute(f"SELECT team, state, count(*) FROM calls WHERE {UNSETTLED_SQL} GROUP BY team, state")
            unsettled = [(str(t), str(st), int(n)) for t, st, n in cur.fetchall()]
            cur.execute(
                "SELECT team, state, count(*) FROM notifications WHERE state IN ('failed', 'sending') "
                "GROUP BY team, state"
            )
            notices = [(str(t), str(st), int(n)) for t, st, n in cur.fetchall()]
        return OpenWork(now, pending, runs, unsettled, notices)

    def verify_chain(self, sealed: dict[str, list[tuple[int, str]]] | None = None) -> AuditReport:
        """Every stream's chain, every covered row against its newest claim, and both against the seals'
        checkpoints when given (guard.ledger.audit). Reads one snapshot; writers go on meanwhile."""
        with self.conns.connection() as conn:
            return audit(conn, sealed, postgres=not self.conns.backend.url.startswith("sqlite"))
