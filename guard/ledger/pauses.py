"""The kill switch in the ledger: pause a team, a tool (glob) or a run at once; lift it later.

A pause takes effect for the next call that reaches the brakes step (`Ledger.offer` reads it inside the same
transaction that would record the call). Pausing and lifting are events in the audit trail.
"""

from __future__ import annotations

import json
import time
from fnmatch import fnmatchcase
from typing import Any, Literal

from guard.errors import GuardUsageError
from guard.ledger.backend import Connections
from guard.ledger.chain import pauses_stream, run_stream
from guard.ledger.digests import claim
from guard.ledger.moves import append_events

__all__ = ["LedgerPauses", "Scope"]

Scope = Literal["team", "tool", "run"]


class LedgerPauses:
    conns: Connections

    def pause(self, scope: Scope, target: str, *, reason: str, by: str, team: str | None = None) -> int:
        """Pause `target` (a team name, a tool glob within `team` or every team, or a run id)."""
        if scope not in ("team", "tool", "run"):
            raise GuardUsageError(f"scope must be team, tool or run, not {scope!r}")
        if not reason.strip():
            raise GuardUsageError("a pause needs a reason: the agent and the on-call see it")
        now = time.time()
        owner = target if scope == "team" else team
        with self.conns.write() as cur:
            cur.execute("INSERT INTO pauses (scope, team, target, reason, paused_by, at) VALUES (?, ?, ?, ?, ?, ?) "
                        "RETURNING id", (scope, owner, target, reason, by, now))
            pause_id: int = cur.fetchone()[0]
            append_events(cur, [(target if scope == "run" else None, None, now, by, "pause", None, "paused",
                                 json.dumps({"id": pause_id, "scope": scope, "target": target, "team": owner,
                                             "reason": reason}))], [claim(cur, "pauses", pause_id)],
                          stream=run_stream(target) if scope == "run" else pauses_stream(owner))
        return pause_id

    def unpause(self, scope: Scope, target: str, *, by: str) -> int:
        """Lift every active pause on `target`; returns how many were lifted."""
        now = time.time()
        with self.conns.write() as cur:
            cur.execute("UPDATE pauses SET lifted_at = ?, lifted_by = ? WHERE scope = ? AND target = ? "
                        "AND lifted_at IS NULL RETURNING id, team", (now, by, scope, target))
            lifted = cur.fetchall()
            ids = [r[0] for r in lifted]
            # One event per stream the lifted pauses were recorded in (a team's pauses, or the run's).
            for team in sorted({r[1] or "" for r in lifted}):
                mine = [r[0] for r in lifted if (r[1] or "") == team]
                append_events(cur, [(target if scope == "run" else None, None, now, by, "pause", "paused",
                                     "lifted", json.dumps({"ids": mine, "scope": scope, "target": target}))],
                              [claim(cur, "pauses", i) for i in mine],
                              stream=run_stream(target) if scope == "run" else pauses_stream(team or None))
        return len(ids)

    def pause_holding(self, team: str, tool: str, run_id: str) -> str | None:
        """The active pause that would stop this call at the brakes now, as a sentence naming how to lift it;
        None when nothing holds it. (The same match `Ledger.offer` makes: the team, a tool glob, or the run.)"""
        with self.conns.read() as cur:
            cur.execute("SELECT scope, target, reason, paused_by FROM pauses WHERE lifted_at IS NULL "
                        "AND (team = ? OR team IS NULL OR (scope = 'run' AND target = ?)) ORDER BY id",
                        (team, run_id))
            for scope, target, reason, by in cur.fetchall():
                if ((scope == "team" and target == team) or (scope == "run" and target == run_id)
                        or (scope == "tool" and fnmatchcase(tool, target))):
                    return (f"{scope} {target} is paused by {by}: {reason}; the call runs when the pause is "
                            f"lifted (`guard unpause --{scope} {target}`)")
        return None

    def active_pauses(self) -> list[dict[str, Any]]:
        with self.conns.read() as cur:
            cur.execute("SELECT id, scope, team, target, reason, paused_by, at FROM pauses "
                        "WHERE lifted_at IS NULL ORDER BY id")
            cols = ("id", "scope", "team", "target", "reason", "paused_by", "at")
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
