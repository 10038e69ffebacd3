"""Recovery drills kept in the ledger: each `guard drill` of a team, with its three times (pause, blast radius
found, clean state) or the step it failed at. A row is appended once, never changed, and claimed by a chained event
(`drill`) of the team's pauses stream, so an edited time is found by `guard ledger verify`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from guard.errors import GuardUsageError
from guard.ledger.backend import Connections
from guard.ledger.chain import pauses_stream
from guard.ledger.digests import ALL_COVERED, claim
from guard.ledger.moves import append_events

__all__ = ["DRILL_COLUMNS", "DrillRecord", "LedgerDrills"]

DRILL_COLUMNS = ALL_COVERED["drills"].columns  # a drill row's columns, in the order its digest covers them


@dataclass(frozen=True, slots=True)
class DrillRecord:
    """One drill as the ledger keeps it; times in seconds, None for a step not reached."""

    id: int
    team: str
    run_id: str | None
    incident_id: str | None
    state: str  # passed | failed
    drilled_by: str
    started_at: float
    pause_s: float | None
    radius_s: float | None
    clean_s: float | None
    records: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "detail": json.loads(self.detail)}


class LedgerDrills:
    conns: Connections

    def record_drill(
        self,
        team: str,
        *,
        by: str,
        state: str,
        started_at: float,
        times: tuple[float | None, float | None, float | None],
        records: int,
        run_id: str | None = None,
        incident_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Keep one drill; returns its id.

        Raises:
            GuardUsageError: a state other than passed or failed, or a negative time.
        """
        if state not in ("passed", "failed"):
            raise GuardUsageError(f"a drill passed or failed, not {state!r}")
        if any(t is not None and t < 0 for t in times):
            raise GuardUsageError("a drill's times are durations of at least zero")
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                "INSERT INTO drills (team, run_id, incident_id, state, drilled_by, started_at, pause_s, radius_s, "
                "clean_s, records, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (team, run_id, incident_id, state, by, started_at, *times, records, json.dumps(detail or {})),
            )
            drill_id = int(cur.fetchone()[0])
            append_events(
                cur,
                [(run_id, None, now, by, "drill", None, state, json.dumps({"drill": drill_id, "team": team}))],
                [claim(cur, "drills", drill_id)],
                stream=pauses_stream(team),
            )
        return drill_id

    def drills(self, team: str | None = None, limit: int = 50) -> list[DrillRecord]:
        """The latest drills (of `team`, when given), newest first."""
        where, params = ("WHERE team = ? ", (team, limit)) if team is not None else ("", (limit,))
        with self.conns.read() as cur:
            cur.execute(f"SELECT {', '.join(DRILL_COLUMNS)} FROM drills {where}ORDER BY id DESC LIMIT ?", params)
            return [DrillRecord(*row) for row in cur.fetchall()]
