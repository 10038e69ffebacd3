"""A staged restart: lifting a pause a few calls at a time (1, then 10, then 100, then normal volume).

`start_restart` puts a restart on a pause point (team, tool glob or run) that is paused. The pause stays in force;
the brakes (`Ledger.offer`) let a call through it while the current stage has room (`stage_gate`), each call counted
in the offer's transaction and remembered (`restart_calls`). When a stage is full the pause holds again until an
owner confirms (`confirm_restart`) or, when the restart has a quiet period, until that long passes after the stage
filled with no failure. After the last stage is confirmed the pause is lifted.

Any failure or in-doubt call let through by a stage, or a stop rule that trips on a call a stage would let
through, ends the restart `failed` at once: the pause holds everything again (`restart_call_failed`,
`restart_tripped`). Every step is an event in the team's pauses stream (`restart` entity: passing, holding,
failed, done), with who, when and why.

States: passing (the stage lets calls through) -> holding (the stage is full) -> passing (next stage) ... -> done;
passing | holding -> failed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from guard.errors import GuardUsageError
from guard.ledger.backend import Connections
from guard.ledger.chain import pauses_stream, run_stream
from guard.ledger.digests import claim
from guard.ledger.moves import append_events

__all__ = ["LedgerRestarts", "restart_call_failed", "restart_tripped", "stage_gate", "stage_pass"]

_COLS = (
    "id",
    "scope",
    "team",
    "target",
    "stages",
    "stage",
    "passed",
    "state",
    "quiet",
    "held_at",
    "started_by",
    "reason",
    "at",
    "updated_at",
)
_ACTIVE = "state IN ('passing', 'holding')"


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = dict(zip(_COLS, row, strict=True))
    out["stages"] = json.loads(out["stages"])
    return out


def _event(cur: Any, r: dict[str, Any], now: float, actor: str, src: str | None, dst: str, why: str) -> None:
    detail = {
        "restart": r["id"],
        "scope": r["scope"],
        "target": r["target"],
        "team": r["team"],
        "stages": r["stages"],
        "stage": r["stage"] + 1,
        "passed": r["passed"],
        "reason": why,
    }
    append_events(
        cur,
        [(r["target"] if r["scope"] == "run" else None, None, now, actor, "restart", src, dst, json.dumps(detail))],
        stream=run_stream(r["target"]) if r["scope"] == "run" else pauses_stream(r["team"]),
    )


def _move(cur: Any, r: dict[str, Any], now: float, actor: str, dst: str, why: str, **sets: Any) -> None:
    fields = {"state": dst, "updated_at": now, **sets}
    cur.execute(
        f"UPDATE restarts SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", (*fields.values(), r["id"])
    )
    src = r["state"]
    r.update(fields)
    _event(cur, r, now, actor, src, dst, why)


def _advance(cur: Any, r: dict[str, Any], now: float, actor: str, why: str) -> None:
    """A held stage moves on: the next stage passes, or after the last one the pauses on the point are lifted."""
    if r["stage"] + 1 < len(r["stages"]):
        _move(cur, r, now, actor, "passing", why, stage=r["stage"] + 1, passed=0, held_at=None)
        return
    _move(cur, r, now, actor, "done", why)
    cur.execute(
        "UPDATE pauses SET lifted_at = ?, lifted_by = ? WHERE scope = ? AND target = ? "
        "AND COALESCE(team, '') = ? AND lifted_at IS NULL RETURNING id",
        (now, actor, r["scope"], r["target"], r["team"] or ""),
    )
    ids = sorted(i for (i,) in cur.fetchall())
    append_events(
        cur,
        [
            (
                r["target"] if r["scope"] == "run" else None,
                None,
                now,
                actor,
                "pause",
                "paused",
                "lifted",
                json.dumps(
                    {
                        "ids": ids,
                        "scope": r["scope"],
                        "target": r["target"],
                        "team": r["team"],
                        "reason": f"staged restart {r['id']} passed every stage: {why}",
                    }
                ),
            )
        ],
        [claim(cur, "pauses", i) for i in ids],
        stream=run_stream(r["target"]) if r["scope"] == "run" else pauses_stream(r["team"]),
    )


def stage_gate(cur: Any, scope: str, target: str, team: str | None, now: float) -> tuple[bool, str]:
    """Whether a staged restart of this pause point lets one more call through now, and if not, why the pause still
    holds (in words, naming the stage and how it moves on). Writes nothing but a quiet period's advance."""
    cur.execute(
        f"SELECT {', '.join(_COLS)} FROM restarts WHERE scope = ? AND target = ? AND COALESCE(team, '') = ? "
        f"AND {_ACTIVE}",
        (scope, target, team or ""),
    )
    row = cur.fetchone()
    if row is None:
        return False, ""
    r = _row(row)
    if r["state"] == "holding" and r["quiet"] is not None and now >= r["held_at"] + r["quiet"]:
        _advance(cur, r, now, "guard", f"{r['quiet']:g}s quiet after stage {r['stage'] + 1} with no failure")
        if str(r["state"]) == "done":  # the last stage held quietly: the pause is lifted
            return True, ""
    if r["state"] == "passing" and r["passed"] < r["stages"][r["stage"]]:
        return True, ""
    size = r["stages"][r["stage"]]
    quiet = (
        f", or on its own {r['held_at'] + r['quiet'] - now:.0f}s from now if nothing fails"
        if r["quiet"] is not None
        else ""
    )
    return False, (
        f"staged restart {r['id']} holds after stage {r['stage'] + 1} of "
        f"{','.join(map(str, r['stages']))} ({size} call(s) passed): it goes on when an owner confirms "
        f"(`guard unpause --{scope} {target} --confirm-stage`){quiet}"
    )


def stage_pass(cur: Any, scope: str, target: str, team: str | None, call_id: str, now: float) -> None:
    """Count a call the current stage let through (the gate said it may); a full stage holds."""
    cur.execute(
        f"SELECT {', '.join(_COLS)} FROM restarts WHERE scope = ? AND target = ? AND COALESCE(team, '') = ? "
        "AND state = 'passing'",
        (scope, target, team or ""),
    )
    row = cur.fetchone()
    if row is None:  # the gate's quiet period just finished the restart: the pause is lifted, nothing to count
        return
    r = _row(row)
    cur.execute(
        "INSERT INTO restart_calls (call_id, restart_id, stage) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (call_id, r["id"], r["stage"]),
    )
    passed = r["passed"] + 1
    if passed >= r["stages"][r["stage"]]:
        _move(
            cur,
            r,
            now,
            "guard",
            "holding",
            f"stage {r['stage'] + 1} let {passed} call(s) through",
            passed=passed,
            held_at=now,
        )
    else:
        cur.execute("UPDATE restarts SET passed = ?, updated_at = ? WHERE id = ?", (passed, now, r["id"]))


def restart_tripped(cur: Any, points: list[tuple[str, str, str | None]], now: float, why: str) -> None:
    """A stop rule tripped on a call a staged restart would let through, or the point was paused again: the
    restart fails, the pause holds."""
    for scope, target, team in points:
        cur.execute(
            f"SELECT {', '.join(_COLS)} FROM restarts WHERE scope = ? AND target = ? "
            f"AND COALESCE(team, '') = ? AND {_ACTIVE}",
            (scope, target, team or ""),
        )
        row = cur.fetchone()
        if row is not None:
            _move(cur, _row(row), now, "guard", "failed", why)


def restart_call_failed(cur: Any, call_id: str, state: str, now: float, actor: str) -> None:
    """A call a stage let through failed or is in doubt: its restart fails at once and the pause holds again."""
    cur.execute("SELECT restart_id FROM restart_calls WHERE call_id = ?", (call_id,))
    row = cur.fetchone()
    if row is None:
        return
    cur.execute(f"SELECT {', '.join(_COLS)} FROM restarts WHERE id = ? AND {_ACTIVE}", (row[0],))
    found = cur.fetchone()
    if found is not None:
        _move(cur, _row(found), now, actor, "failed", f"call {call_id} let through by the restart ended {state}")


class LedgerRestarts:
    conns: Connections

    def start_restart(
        self,
        scope: str,
        target: str,
        *,
        stages: list[int],
        by: str,
        reason: str,
        team: str | None = None,
        quiet: float | None = None,
    ) -> int:
        """Start a staged restart of a paused point; returns its id.

        Raises:
            GuardUsageError: no stages, a stage under 1, an empty reason, no active pause on the point, or a
                restart of it already under way.
        """
        if not stages or any(n < 1 for n in stages):
            raise GuardUsageError("stages are call counts of at least 1, e.g. 1,10,100")
        if not reason.strip():
            raise GuardUsageError("a staged restart needs a reason: say why it is safe to try again")
        if quiet is not None and quiet <= 0:
            raise GuardUsageError("a quiet period is a positive duration")
        owner = target if scope == "team" else team
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                "SELECT 1 FROM pauses WHERE scope = ? AND target = ? AND COALESCE(team, '') = ? "
                "AND lifted_at IS NULL LIMIT 1",
                (scope, target, owner or ""),
            )
            if cur.fetchone() is None:
                raise GuardUsageError(f"no active pause on {scope} {target}: nothing to restart")
            cur.execute(
                f"SELECT id FROM restarts WHERE scope = ? AND target = ? AND COALESCE(team, '') = ? AND {_ACTIVE}",
                (scope, target, owner or ""),
            )
            if (busy := cur.fetchone()) is not None:
                raise GuardUsageError(
                    f"staged restart {busy[0]} of {scope} {target} is under way: confirm its "
                    "stages, or pause again to end it"
                )
            cur.execute(
                "INSERT INTO restarts (scope, team, target, stages, stage, passed, state, quiet, held_at, "
                "started_by, reason, at, updated_at) VALUES (?, ?, ?, ?, 0, 0, 'passing', ?, NULL, ?, ?, ?, ?) "
                "RETURNING id",
                (scope, owner, target, json.dumps(stages), quiet, by, reason, now, now),
            )
            restart_id: int = cur.fetchone()[0]
            cur.execute(f"SELECT {', '.join(_COLS)} FROM restarts WHERE id = ?", (restart_id,))
            _event(cur, _row(cur.fetchone()), now, by, None, "passing", reason)
        return restart_id

    def confirm_restart(self, scope: str, target: str, *, by: str, reason: str, team: str | None = None) -> str:
        """An owner confirms a held stage: the next one passes, or after the last the pause is lifted. Returns
        the restart's new state (`passing` or `done`).

        Raises:
            GuardUsageError: an empty reason, no restart under way, or a stage that has not filled yet.
        """
        if not reason.strip():
            raise GuardUsageError("confirming a stage needs a reason: say what you checked")
        owner = target if scope == "team" else team
        now = time.time()
        with self.conns.write() as cur:
            cur.execute(
                f"SELECT {', '.join(_COLS)} FROM restarts WHERE scope = ? AND target = ? "
                f"AND COALESCE(team, '') = ? AND {_ACTIVE}",
                (scope, target, owner or ""),
            )
            row = cur.fetchone()
            if row is None:
                raise GuardUsageError(f"no staged restart of {scope} {target} is under way")
            r = _row(row)
            if r["state"] != "holding":
                raise GuardUsageError(
                    f"stage {r['stage'] + 1} of restart {r['id']} has let {r['passed']} of "
                    f"{r['stages'][r['stage']]} call(s) through: confirm it once it holds"
                )
            _advance(cur, r, now, by, reason)
            return str(r["state"])

    def restarts(self, teams: list[str] | None = None, *, active_only: bool = False) -> list[dict[str, Any]]:
        """Staged restarts, oldest first (of `teams` only, when given)."""
        if teams == []:
            return []
        where = [] if teams is None else [f"team IN ({', '.join('?' * len(teams))})"]
        if active_only:
            where.append(_ACTIVE)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self.conns.read() as cur:
            cur.execute(f"SELECT {', '.join(_COLS)} FROM restarts{clause} ORDER BY id", tuple(teams or ()))
            return [_row(row) for row in cur.fetchall()]

    def restart_events(self, restart_id: int) -> list[dict[str, Any]]:
        """Every step of one restart, oldest first: who, when, from, to, and the detail."""
        with self.conns.read() as cur:
            cur.execute(
                "SELECT at, actor, from_state, to_state, detail FROM events WHERE entity = 'restart' ORDER BY id"
            )
            rows = cur.fetchall()
        out: list[dict[str, Any]] = []
        for at, actor, src, dst, detail in rows:
            facts = json.loads(detail)
            if facts.get("restart") == restart_id:
                out.append({"at": at, "by": actor, "from": src, "to": dst, **facts})
        return out
