"""The kill switch in the ledger: pause a team, a tool (glob) or a run at once; lift it later.

A pause takes effect for the next call that reaches the brakes step (`Ledger.offer` reads it inside the same
transaction that would record the call), and for the next run the team opens (`source_pause`, inside the
transaction that would open it). Pausing and lifting are events in the audit trail, each with who, when and why;
the pause row keeps the same.
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
from guard.ledger.records import EventRecord
from guard.ledger.restarts import restart_tripped

__all__ = ["LedgerPauses", "PausedAtSource", "Scope", "insert_pause", "source_pause"]

Scope = Literal["team", "tool", "run"]


# A point a staged restart is letting calls through opens runs for them (`guard.ledger.restarts`).
_SOURCE_PAUSES = (
    "SELECT id, scope, target, reason, paused_by, at FROM pauses p WHERE lifted_at IS NULL "
    "AND ((scope = 'team' AND target = ?) OR (scope = 'tool' AND (team = ? OR team IS NULL))) "
    "AND NOT EXISTS (SELECT 1 FROM restarts r WHERE r.scope = p.scope AND r.target = p.target "
    "AND COALESCE(r.team, '') = COALESCE(p.team, '') AND r.state = 'passing') ORDER BY id"
)


class PausedAtSource(Exception):
    """A new run was not opened (nothing was recorded): `pause` holds at its source (see `source_pause`)."""

    def __init__(self, pause: dict[str, Any]) -> None:
        super().__init__(f"{pause['scope']} {pause['target']} is paused")
        self.pause = pause


def source_pause(cur: Any, team: str, tools: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The oldest active pause that keeps a new run of `team` from opening, or None: a pause of the whole team,
    or a tool pause (of the team, or of every team) whose glob matches one of `tools`, the tools the run
    declares it uses, unless a staged restart of it is letting calls through. The dict holds id, scope,
    target, reason, paused_by, at and, for a tool pause, `tool`: the declared tool it covers. One read."""
    cur.execute(_SOURCE_PAUSES, (team, team))
    for pause_id, scope, target, reason, by, at in cur.fetchall():
        found = {"id": pause_id, "scope": scope, "target": target, "reason": reason, "paused_by": by, "at": at}
        if scope == "team":
            return found
        hit = next((tool for tool in tools if fnmatchcase(tool, target)), None)
        if hit is not None:
            return {**found, "tool": hit}
    return None


def insert_pause(cur: Any, scope: Scope, target: str, *, reason: str, by: str, team: str | None, now: float) -> int:
    """Record a pause and its event inside the caller's write transaction (the CLI's, the API's, or a stop rule's
    offer that trips with `on_trip: pause`); returns its id.

    Raises:
        GuardUsageError: an unknown scope or an empty reason.
    """
    if scope not in ("team", "tool", "run"):
        raise GuardUsageError(f"scope must be team, tool or run, not {scope!r}")
    if not reason.strip():
        raise GuardUsageError("a pause needs a reason: the agent and the on-call see it")
    owner = target if scope == "team" else team
    cur.execute(
        "INSERT INTO pauses (scope, team, target, reason, paused_by, at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (scope, owner, target, reason, by, now),
    )
    pause_id: int = cur.fetchone()[0]
    restart_tripped(cur, [(scope, target, owner)], now, f"paused again by {by}: {reason}")
    append_events(
        cur,
        [
            (
                target if scope == "run" else None,
                None,
                now,
                by,
                "pause",
                None,
                "paused",
                json.dumps({"id": pause_id, "scope": scope, "target": target, "team": owner, "reason": reason}),
            )
        ],
        [claim(cur, "pauses", pause_id)],
        stream=run_stream(target) if scope == "run" else pauses_stream(owner),
    )
    return pause_id


class LedgerPauses:
    conns: Connections

    def pause(self, scope: Scope, target: str, *, reason: str, by: str, team: str | None = None) -> int:
        """Pause `target` (a team name, a tool glob within `team` or every team, or a run id)."""
        with self.conns.write() as cur:
            return insert_pause(cur, scope, target, reason=reason, by=by, team=team, now=time.time())

    def unpause(self, scope: Scope, target: str, *, by: str, reason: str, team: str | None = None) -> int:
        """Lift every active pause on `target` (only those of `team`, when given); returns how many were lifted.

        Raises:
            GuardUsageError: an empty reason (why it is safe to go on is part of the record).
        """
        if not reason.strip():
            raise GuardUsageError("lifting a pause needs a reason: say why it is safe to go on")
        now = time.time()
        mine = "" if team is None else " AND team = ?"
        with self.conns.write() as cur:
            # Why it was lifted goes in the event (chained), next to who and when on the row.
            cur.execute(
                f"UPDATE pauses SET lifted_at = ?, lifted_by = ? WHERE scope = ? AND target = ?{mine} "
                "AND lifted_at IS NULL RETURNING id, team",
                (now, by, scope, target, *(() if team is None else (team,))),
            )
            lifted = sorted(cur.fetchall())
            # One event per stream the lifted pauses were recorded in (a team's pauses, or the run's).
            for owner in sorted({t or "" for _, t in lifted}):
                ids = [i for i, t in lifted if (t or "") == owner]
                append_events(
                    cur,
                    [
                        (
                            target if scope == "run" else None,
                            None,
                            now,
                            by,
                            "pause",
                            "paused",
                            "lifted",
                            json.dumps(
                                {"ids": ids, "scope": scope, "target": target, "team": owner or None, "reason": reason}
                            ),
                        )
                    ],
                    [claim(cur, "pauses", i) for i in ids],
                    stream=run_stream(target) if scope == "run" else pauses_stream(owner or None),
                )
        return len(lifted)

    def pause_at_source(self, team: str, tools: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The oldest active pause that keeps a new run of `team` from opening, or None (`source_pause`). One
        read. (`Ledger.open_run(pauses=...)` makes the same check inside the transaction that opens the run.)"""
        with self.conns.read() as cur:
            return source_pause(cur, team, tools)

    def pause_holding(self, team: str, tool: str, run_id: str) -> str | None:
        """The active pause that would stop this call at the brakes now, as a sentence naming how to lift it;
        None when nothing holds it. (The same match `Ledger.offer` makes: the team, a tool glob, or the run.)"""
        with self.conns.read() as cur:
            cur.execute(
                "SELECT scope, target, reason, paused_by FROM pauses WHERE lifted_at IS NULL "
                "AND (team = ? OR team IS NULL OR (scope = 'run' AND target = ?)) ORDER BY id",
                (team, run_id),
            )
            for scope, target, reason, by in cur.fetchall():
                if (
                    (scope == "team" and target == team)
                    or (scope == "run" and target == run_id)
                    or (scope == "tool" and fnmatchcase(tool, target))
                ):
                    return (
                        f"{scope} {target} is paused by {by}: {reason}; the call runs when the pause is "
                        f"lifted (`guard unpause --{scope} {target}`)"
                    )
        return None

    def pause_events(self, team: str | None = None, *, restarts: bool = False) -> list[EventRecord]:
        """Every pause and lift in the audit trail, oldest first (who, when, and why in the detail); those of
        `team` only, when given; with `restarts`, the steps of staged restarts too (entity `restart`)."""
        entities = "('pause', 'restart')" if restarts else "('pause')"
        with self.conns.read() as cur:
            cur.execute(f"SELECT {EventRecord.sql_columns()} FROM events WHERE entity IN {entities} ORDER BY id")
            rows = [EventRecord.from_row(r) for r in cur.fetchall()]
        return [e for e in rows if team is None or json.loads(e.detail).get("team") == team]

    def active_pauses(self, teams: list[str] | None = None) -> list[dict[str, Any]]:
        """The pauses in force, oldest first (those of `teams` only, when given; a tool pause of every team is
        not one of theirs)."""
        mine = "" if teams is None else f" AND team IN ({', '.join('?' * len(teams))})"
        if teams == []:
            return []
        with self.conns.read() as cur:
            cur.execute(
                "SELECT id, scope, team, target, reason, paused_by, at FROM pauses "
                f"WHERE lifted_at IS NULL{mine} ORDER BY id",
                tuple(teams or ()),
            )
            cols = ("id", "scope", "team", "target", "reason", "paused_by", "at")
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
