"""What an incident is about: its scope, and the calls of the ledger inside it, read as a stream.

A scope is one run or several (by id, or by the source event that started them), or a window of one team's
calls (tool globs, from, to), or both (the runs, narrowed by the window). Runs may belong to several teams: an
incident fixes the teams its runs belonged to when it was opened (`teams`), so a later run of another team never
enters it, and whoever acts on it must act for every one of them. The calls in scope are those that may
have changed something: every class but `read`, the agent's own calls (a compensation or a repair is shown as
the state of the call it undid, not as a record of its own).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from guard.errors import GuardUsageError
from guard.ledger.states import CallState
from guard.side_effects import SideEffectClass

__all__ = ["SCOPE_CALL_COLUMNS", "Scope", "ScopeCall"]

_MAX_LISTED = 1000  # run ids or source events one scope may name
_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True, slots=True)
class Scope:
    """Runs (`run_ids`, or `source_event_ids`), or a window of `team`'s calls (`tools` globs, `since`, `until`
    in Unix seconds), or runs narrowed by a window; `teams` narrows runs to the calls of those teams (an incident
    over several teams' runs). Raises GuardUsageError when it names nothing, or names both `team` and `teams`."""

    team: str | None = None
    run_ids: tuple[str, ...] = ()
    source_event_ids: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    teams: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.team and self.teams:
            raise GuardUsageError("a scope is one team's (team) or several teams' runs (teams), not both")
        if not (self.run_ids or self.source_event_ids or self.team):
            raise GuardUsageError(
                "an incident's scope names runs (--run), source events (--source-event) or a "
                "team's window (--team, with --tool, --since, --until)"
            )
        if len(self.run_ids) > _MAX_LISTED or len(self.source_event_ids) > _MAX_LISTED:
            raise GuardUsageError(f"a scope names at most {_MAX_LISTED} runs or source events; use a window")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise GuardUsageError("the scope's window ends before it starts (--since after --until)")

    def to_json(self) -> str:
        return json.dumps(
            {
                "team": self.team,
                "run_ids": list(self.run_ids),
                "source_event_ids": list(self.source_event_ids),
                "tools": list(self.tools),
                "since": self.since,
                "until": self.until,
                **({"teams": list(self.teams)} if self.teams else {}),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Scope:
        data: dict[str, Any] = json.loads(text)
        return cls(
            team=data.get("team"),
            run_ids=tuple(data.get("run_ids") or ()),
            source_event_ids=tuple(data.get("source_event_ids") or ()),
            tools=tuple(data.get("tools") or ()),
            since=data.get("since"),
            until=data.get("until"),
            teams=tuple(data.get("teams") or ()),
        )

    @property
    def all_teams(self) -> tuple[str, ...]:
        """The teams whose calls the scope may hold: its team, or its teams (empty: not fixed yet)."""
        return (self.team,) if self.team else self.teams

    def describe(self) -> str:
        """The scope in a few words, for people."""
        parts: list[str] = []
        if self.run_ids:
            parts.append(f"run {', '.join(self.run_ids[:3])}" + (" ..." if len(self.run_ids) > 3 else ""))
        if self.source_event_ids:
            parts.append(
                f"source event {', '.join(self.source_event_ids[:3])}"
                + (" ..." if len(self.source_event_ids) > 3 else "")
            )
        if self.team:
            parts.append(f"team {self.team}")
        if self.teams:
            parts.append(f"teams {', '.join(self.teams)}")
        if self.tools:
            parts.append(f"tools {', '.join(self.tools)}")
        if self.since is not None or self.until is not None:
            parts.append("window")
        return ", ".join(parts)

    def takes_tool(self, tool: str) -> bool:
        return not self.tools or any(fnmatchcase(tool, g) for g in self.tools)

    def where(self) -> tuple[str, tuple[Any, ...]]:
        """The SQL condition (on `calls c`) and its parameters for the calls of this scope, globs aside."""
        sql = ["c.compensates_call_id IS NULL", "(c.side_effect IS NULL OR c.side_effect != 'read')"]
        params: list[Any] = []
        runs: list[str] = []
        if self.run_ids:
            runs.append(f"c.run_id IN ({', '.join('?' * len(self.run_ids))})")
            params.extend(self.run_ids)
        if self.source_event_ids:
            runs.append(
                f"c.run_id IN (SELECT r.run_id FROM runs r WHERE r.source_event_id IN "
                f"({', '.join('?' * len(self.source_event_ids))}))"
            )
            params.extend(self.source_event_ids)
        if runs:
            sql.append("(" + " OR ".join(runs) + ")")
        if self.team:
            sql.append("c.team = ?")
            params.append(self.team)
        if self.teams:
            sql.append(f"c.team IN ({', '.join('?' * len(self.teams))})")
            params.extend(self.teams)
        if self.since is not None:
            sql.append("c.offered_at >= ?")
            params.append(self.since)
        if self.until is not None:
            sql.append("c.offered_at <= ?")
            params.append(self.until)
        return " AND ".join(sql), tuple(params)


SCOPE_CALL_COLUMNS = (
    "call_id",
    "run_id",
    "seq",
    "team",
    "tool",
    "side_effect",
    "state",
    "external_ids",
    "offered_at",
    "started_at",
    "ended_at",
    "updated_at",
)


@dataclass(frozen=True, slots=True)
class ScopeCall:
    """One call in scope as the blast radius reads it (no arguments or results: those are the snapshot's)."""

    call_id: str
    run_id: str
    seq: int
    team: str
    tool: str
    side_effect: SideEffectClass | None
    state: CallState
    external_ids: str
    offered_at: float
    started_at: float | None
    ended_at: float | None
    updated_at: float
    ids: dict[str, str] = field(default_factory=dict[str, str], compare=False)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ScopeCall:
        call_id, run_id, seq, team, tool, side_effect, state, *rest = row
        effect = None if side_effect is None else SideEffectClass(side_effect)
        call = cls(call_id, run_id, seq, team, tool, effect, CallState(state), *rest)
        call.ids.update(json.loads(call.external_ids or "{}"))
        return call


def scope_calls(cur: Any, scope: Scope, columns: tuple[str, ...] = SCOPE_CALL_COLUMNS) -> Iterator[tuple[Any, ...]]:
    """The rows of the calls in `scope` (the given columns), by run and sequence, streamed in batches."""
    where, params = scope.where()
    tool_at = columns.index("tool")
    cur.execute(
        f"SELECT {', '.join('c.' + c for c in columns)} FROM calls c WHERE {where} ORDER BY c.run_id, c.seq", params
    )
    while True:
        rows = cur.fetchmany(2000)
        if not rows:
            return
        for row in rows:
            if scope.takes_tool(row[tool_at]):
                yield row


def chunks(ids: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]
