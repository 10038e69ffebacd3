"""The REST API under /api: approvals (list, show, decide), runs (list, show), pauses (list, pause, lift),
bearer-token auth.

Statuses: 401 no or a bad token; 403 none of the approval's roles, or the requester; 404 an unknown id or team, or
one of a team the reviewer does not review for (the same answer: no existence oracle across teams); 409 already
decided (the body names who); 410 expired; 422 a bad body, a filter value outside its fixed set (`state=zzz`: the
answer names the allowed values, `guard.server.filters`), or edited arguments the team's policy refuses (with the
reason). The same reviewer repeating the same decision gets 200 with `repeat: true`, and nothing changes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from guard.server.auth import bearer_reviewer
from guard.server.brakes import Brakes, PausePoint
from guard.server.desk import Desk, Reviewer
from guard.server.filters import RunStateQuery

__all__ = ["DecisionIn", "PauseIn", "router"]

_ID = r"^[A-Za-z0-9_.:-]{1,128}$"


class DecisionIn(BaseModel):
    """A decision on the exact arguments the reviewer was shown."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    reason: str | None = Field(
        default=None, max_length=4000, description="Why. Required to reject: the agent and the audit trail show it."
    )
    args_hash: str = Field(
        min_length=1,
        max_length=128,
        description="The `args_hash` of the approval as shown; refused if the arguments changed.",
    )
    edited_args: dict[str, Any] | None = Field(
        default=None,
        description="Approve these arguments instead (a full JSON object, from `args` as shown): "
        "the approval binds to their hash and the call runs with them. Secret fields "
        "stay `[REDACTED]` and keep the agent's value. Approve only.",
    )


class PauseIn(BaseModel):
    """A pause point of one team (the whole team, a tool glob of it, or one of its runs) and why."""

    model_config = ConfigDict(extra="forbid")

    team: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    tool: str | None = Field(default=None, pattern=r"^\S{1,200}$", description="A tool name or glob of the team.")
    run_id: str | None = Field(default=None, pattern=_ID, description="One run of the team.")
    reason: str = Field(
        min_length=1, max_length=4000, description="Why: the agent, the owners and the audit trail see it."
    )

    def point(self) -> PausePoint:
        return PausePoint(self.team, self.tool, self.run_id)


class Owner(BaseModel):
    owner: str
    backup: str


class PauseOut(BaseModel):
    pause_id: int
    scope: Literal["team", "tool", "run"]
    target: str
    team: str
    reason: str
    paused_by: str
    owners: list[Owner] = Field(description="Who answers for this pause point (policy `owners:`).")


class LiftOut(BaseModel):
    lifted: int = Field(description="How many pauses were lifted.")
    scope: Literal["team", "tool", "run"]
    target: str
    team: str
    reason: str
    lifted_by: str


class ActivePause(BaseModel):
    id: int
    scope: Literal["team", "tool", "run"]
    team: str
    target: str
    reason: str
    paused_by: str
    at: float
    owners: list[Owner]
    may_lift: bool = Field(description="This reviewer is an owner or an operator, and may lift it alone.")


class DecisionOut(BaseModel):
    approval_id: str
    decision: Literal["approve", "reject"]
    reviewer: str
    state: str
    settled: bool = Field(description="This decision settled the approval (approved or rejected it).")
    repeat: bool = Field(description="The same reviewer had made the same decision already; nothing changed.")
    decided_by: list[str]
    args_hash: str = Field(description="The hash of the arguments on the table after this decision.")
    roles: list[str] = Field(description="The roles the arguments on the table need (an edit may change them).")
    quorum: int = Field(description="Distinct approvers those arguments need.")
    paused: str | None = Field(
        default=None,
        description="Approved, but a pause (kill switch) holds the call: it runs when the pause is lifted.",
    )


class ApprovalSummary(BaseModel):
    approval_id: str
    run_id: str
    team: str
    tool: str
    rule: str | None
    side_effect: str | None
    risk: int = Field(description="3 irreversible, 2 compensable, 1 idempotent, 0 read or unknown.")
    roles: list[str]
    quorum: int
    requested_by: str | None
    requested_at: float
    expires_at: float
    age_seconds: float
    state: str


class ApprovalDetail(BaseModel):
    approval_id: str
    call_id: str
    run_id: str
    team: str
    tool: str
    rule: str | None
    side_effect: str | None
    args: dict[str, Any] = Field(description="The arguments on the table (a reviewer's edit, when `edited`).")
    args_hash: str
    edited: bool = Field(description="A reviewer edited the arguments; the approval binds to the edited hash.")
    requested_args: dict[str, Any] = Field(description="The arguments as the agent asked.")
    requested_args_hash: str
    roles: list[str]
    quorum: int
    requested_by: str | None
    requested_at: float
    expires_at: float
    expired: bool
    state: str
    decided_at: float | None
    decided_by: list[str]
    reason: str | None
    decisions: list[dict[str, Any]]
    allowed_decisions: list[Literal["approve", "reject"]]
    run: dict[str, Any] | None = Field(description="The run so far: its calls, events and manual actions.")
    paused: str | None = Field(
        default=None,
        description="Approved, but a pause (kill switch) holds the call: it runs when the pause is lifted.",
    )


class Problem(BaseModel):
    detail: str
    code: str


class FieldError(BaseModel):
    loc: list[str]
    msg: str
    type: str


class InvalidRequest(Problem):
    """A request that does not validate: `detail` says what is wrong, `errors` where."""

    errors: list[FieldError] = Field(default_factory=lambda: [])


_bearer = HTTPBearer(auto_error=False, description="A reviewer token from `guard tokens create --reviewer NAME`.")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "A body that cannot be read (not UTF-8 JSON)."},
    401: {"model": Problem, "description": "No token, or an unknown or revoked one."},
    403: {"model": Problem, "description": "Not allowed for this reviewer."},
    404: {"model": Problem, "description": "Unknown id."},
    422: {"model": InvalidRequest, "description": "A parameter or body that does not validate, with the reason."},
}


def _desk(request: Request) -> Desk:
    desk: Desk = request.app.state.desk  # set by create_app
    return desk


def _reviewer(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Reviewer:
    known: Reviewer | None = getattr(request.state, "reviewer", None)  # checked before the body was read
    return known if known is not None else bearer_reviewer(_desk(request).ledger, authorization)


DeskDep = Annotated[Desk, Depends(_desk)]
Who = Annotated[Reviewer, Depends(_reviewer)]
ApprovalId = Annotated[str, Path(pattern=_ID, description="The approval id.")]
router = APIRouter(prefix="/api", responses=_ERRORS)


@router.get("/approvals", tags=["approvals"], response_model=list[ApprovalSummary])
def list_approvals(who: Who, desk: DeskDep) -> list[dict[str, Any]]:
    """Pending approvals this reviewer may decide, riskiest first, then oldest."""
    return desk.queue(who)


@router.get("/approvals/{approval_id}", tags=["approvals"], response_model=ApprovalDetail)
def show_approval(who: Who, desk: DeskDep, approval_id: ApprovalId) -> dict[str, Any]:
    """One approval with its full context and the decisions this reviewer may make."""
    return desk.approval(who, approval_id)


@router.post(
    "/approvals/{approval_id}/decision",
    tags=["approvals"],
    response_model=DecisionOut,
    responses={
        409: {"model": Problem, "description": "Already decided; the body names who."},
        410: {"model": Problem, "description": "Expired before the decision."},
        422: {
            "model": InvalidRequest,
            "description": "A bad body, a rejection without a reason, or arguments that changed.",
        },
    },
)
def decide(who: Who, desk: DeskDep, approval_id: ApprovalId, body: DecisionIn) -> dict[str, Any]:
    """Approve or reject, bound to the arguments' hash as shown. Idempotent for the same reviewer."""
    return desk.decide(
        who, approval_id, body.decision, reason=body.reason, args_hash=body.args_hash, edited_args=body.edited_args
    )


@router.get("/runs", tags=["runs"])
def list_runs(
    who: Who,
    desk: DeskDep,
    team: Annotated[
        str | None, Query(max_length=128, description="Only this team (404 unless you review for it).")
    ] = None,
    state: RunStateQuery = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 50,
) -> list[dict[str, Any]]:
    """Runs of the reviewer's teams, newest first. An unknown `state` is a 422 naming the run states."""
    return desk.runs(who, team=team, state=state, limit=limit)


@router.get("/runs/{run_id}", tags=["runs"])
def show_run(who: Who, desk: DeskDep, run_id: Annotated[str, Path(max_length=256)]) -> dict[str, Any]:
    """A run's story: every call with its state and external ids, the events, the manual actions."""
    return desk.run(who, run_id)


def _brakes(desk: DeskDep) -> Brakes:
    return Brakes(desk)


BrakesDep = Annotated[Brakes, Depends(_brakes)]
_PAUSE_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "Neither an owner of this pause point nor an operator of the team."},
    404: {"model": Problem, "description": "A team (or run) this reviewer does not review for, or no such pause."},
}


@router.get("/pauses", tags=["pauses"], response_model=list[ActivePause])
def list_pauses(who: Who, brakes: BrakesDep) -> list[dict[str, Any]]:
    """The pauses in force in the reviewer's teams, with their owners."""
    return brakes.active(who)


@router.post("/pauses", tags=["pauses"], response_model=PauseOut, status_code=201, responses=_PAUSE_ERRORS)
def pause(who: Who, brakes: BrakesDep, body: PauseIn) -> dict[str, Any]:
    """Pause a team, a tool or a run at once (owners and operators, alone, with a reason)."""
    return brakes.pause(who, body.point(), body.reason)


@router.post("/pauses/lift", tags=["pauses"], response_model=LiftOut, responses=_PAUSE_ERRORS)
def lift(who: Who, brakes: BrakesDep, body: PauseIn) -> dict[str, Any]:
    """Lift the pauses on a team, a tool or a run (owners and operators, alone, with a reason)."""
    return brakes.unpause(who, body.point(), body.reason)
