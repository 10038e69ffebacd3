"""The REST API of staged restarts under /api/pauses: start one on a paused point, confirm a held stage, list them.

Who may: the same people as pause and lift (`guard.server.brakes`): the pause point's owners and the team's
operators; 404 across teams, 403 for other reviewers of the team. 422 for a bad body, no pause to restart or a
restart already under way; 409 for confirming a stage that has not filled yet.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from guard.server.api import _ERRORS, _PAUSE_ERRORS, BrakesDep, PauseIn, Problem, Who  # pyright: ignore[reportPrivateUsage]

__all__ = ["RestartIn", "restarts_router"]


class RestartIn(PauseIn):
    """A staged restart of a paused point: each stage lets that many calls through, then the pause holds until an
    owner confirms (or `quiet_seconds` pass with no failure); after the last stage, normal volume."""

    model_config = ConfigDict(extra="forbid")

    stages: list[int] = Field(min_length=1, max_length=10, description="Call counts per stage, e.g. [1, 10, 100].")
    quiet_seconds: float | None = Field(
        default=None, gt=0, le=7 * 86400, description="A held stage moves on by itself after this long with no failure."
    )


class RestartStep(BaseModel):
    at: float
    by: str
    to: str
    stage: int
    reason: str


class RestartOut(BaseModel):
    id: int
    scope: Literal["team", "tool", "run"]
    team: str | None
    target: str
    stages: list[int]
    stage: int = Field(description="The current stage, counted from 0.")
    passed: int = Field(description="Calls the current stage let through.")
    state: Literal["passing", "holding", "failed", "done"]
    quiet: float | None
    started_by: str
    reason: str
    steps: list[RestartStep]


restarts_router = APIRouter(prefix="/api/pauses", responses=_ERRORS)


@restarts_router.post("/restart", tags=["pauses"], response_model=RestartOut, status_code=201, responses=_PAUSE_ERRORS)
def restart(who: Who, brakes: BrakesDep, body: RestartIn) -> dict[str, Any]:
    """Start a staged restart of a paused team, tool or run (owners and operators, alone, with a reason)."""
    return brakes.restart(who, body.point(), body.reason, body.stages, body.quiet_seconds)


@restarts_router.post(
    "/restart/confirm",
    tags=["pauses"],
    response_model=RestartOut,
    responses={**_PAUSE_ERRORS, 409: {"model": Problem, "description": "The stage has not filled."}},
)
def confirm(who: Who, brakes: BrakesDep, body: PauseIn) -> dict[str, Any]:
    """Confirm the held stage: the next stage passes, or after the last one the pause is lifted."""
    return brakes.confirm(who, body.point(), body.reason)


@restarts_router.get("/restarts", tags=["pauses"], response_model=list[RestartOut])
def restarts(who: Who, brakes: BrakesDep) -> list[dict[str, Any]]:
    """The staged restarts of the reviewer's teams, with every step."""
    return brakes.restarts(who)
