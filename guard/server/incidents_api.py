"""The incidents' REST API under /api/incidents, with the approvals' bearer tokens and authority (see
`guard.server.incidents`): list, show (status update, counts, log), records (filters), CSV, history, open (one
team's scope, or runs of several teams), tag, note, close, snapshot (take, download) and repair (with the agent's
tools: `guard serve --app`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from guard.errors import GuardUsageError
from guard.incidents import RecordFilter, Scope
from guard.ledger import CallState
from guard.server.api import InvalidRequest, Problem, Who
from guard.server.desk import Desk, DeskError
from guard.server.filters import CallStateQuery, IncidentStateQuery, Judged, JudgedQuery
from guard.server.incidents import IncidentAgent, IncidentDesk

__all__ = ["router"]

_ID = r"^[A-Za-z0-9_.:-]{1,128}$"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "A body that cannot be read (not UTF-8 JSON)."},
    401: {"model": Problem, "description": "No token, or an unknown or revoked one."},
    422: {"model": InvalidRequest, "description": "A parameter or body that does not validate, with the reason."},
    403: {"model": Problem, "description": "Not an owner or operator of the incident's team."},
    404: {"model": Problem, "description": "An incident (or team) this reviewer does not review for, or none."},
    409: {
        "model": Problem,
        "description": "The incident is closed or has its snapshot; or (repair) the service has no agent tools "
        "(`no_agent_tools`) or a repair is under way on it (`repair_running`).",
    },
}


def _incidents(request: Request) -> IncidentDesk:
    desk: Desk = request.app.state.desk  # set by create_app
    agent: IncidentAgent = request.app.state.incident_agent
    return IncidentDesk(desk, agent)


Incidents = Annotated[IncidentDesk, Depends(_incidents)]
IncidentId = Annotated[str, Path(pattern=_ID, description="The incident id.")]
router = APIRouter(prefix="/api/incidents", tags=["incidents"], responses=_ERRORS)


class OpenIn(BaseModel):
    """An incident on a scope of one team (`team`: some of its runs, the runs of source events, or a window), or on
    runs of several teams (no `team`: run ids or source events; the opener must act for every team in it)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=500)
    team: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    run_ids: list[str] = Field(default_factory=list[str], max_length=1000)
    source_event_ids: list[str] = Field(default_factory=list[str], max_length=1000)
    tools: list[str] = Field(default_factory=list[str], max_length=50, description="Tool globs.")
    since: float | None = Field(default=None, allow_inf_nan=False, description="Window start, Unix seconds.")
    until: float | None = Field(default=None, allow_inf_nan=False, description="Window end, Unix seconds.")
    owner: str | None = Field(default=None, max_length=200)


class FilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_ids: list[str] = Field(default_factory=list[str], max_length=100_000)
    system: str | None = Field(default=None, max_length=200)
    state: CallState | None = Field(default=None, description="Records (calls) in this state.")
    tool: str | None = Field(default=None, max_length=200)
    run_id: str | None = Field(default=None, max_length=256)
    external_id: str | None = Field(default=None, max_length=500)
    judged: Judged | None = Field(default=None, description="Current verdict, or `none`.")

    def which(self) -> RecordFilter:
        return RecordFilter(
            tuple(self.call_ids), self.system, self.state, self.tool, self.run_id, self.external_id, self.judged
        )


class TagIn(FilterIn):
    verdict: Literal["safe", "wrong", "unclear"]
    note: str | None = Field(default=None, max_length=4000)


class RepairIn(BaseModel):
    """A sample of the wrong records left (`sample`), or, after a sample, the rest (`rest`)."""

    model_config = ConfigDict(extra="forbid")

    sample: int | None = Field(default=None, ge=1, le=1_000_000)
    rest: bool = False
    repair_tool: str | None = Field(default=None, max_length=200, description="Instead of each compensation.")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)


@router.get("")
def list_incidents(who: Who, incidents: Incidents, state: IncidentStateQuery = None) -> list[dict[str, Any]]:
    """The incidents of the reviewer's teams, newest first."""
    return incidents.list(who, state)


@router.post("", status_code=201)
def open_incident(who: Who, incidents: Incidents, body: OpenIn) -> dict[str, Any]:
    """Open an incident (owners and operators of the team)."""
    try:
        scope = Scope(
            team=body.team,
            run_ids=tuple(body.run_ids),
            source_event_ids=tuple(body.source_event_ids),
            tools=tuple(body.tools),
            since=body.since,
            until=body.until,
        )
    except GuardUsageError as err:
        raise DeskError(422, "invalid", str(err)) from err
    return incidents.open(who, scope, title=body.title, owner=body.owner)


@router.get("/{incident_id}")
def show_incident(who: Who, incidents: Incidents, incident_id: IncidentId) -> dict[str, Any]:
    """The incident, its status update, counts by system and state, verdict totals and its shared log."""
    return incidents.show(who, incident_id)


@router.get("/{incident_id}/records")
def records(
    who: Who,
    incidents: Incidents,
    incident_id: IncidentId,
    system: Annotated[str | None, Query(max_length=200)] = None,
    state: CallStateQuery = None,
    tool: Annotated[str | None, Query(max_length=200)] = None,
    judged: JudgedQuery = None,
) -> list[dict[str, Any]]:
    """The blast radius' records, filtered (every record in scope, those that never ran too)."""
    return incidents.records(
        who, incident_id, RecordFilter(system=system, state=state, tool=tool, verdict=judged, changed_only=False)
    )


@router.get("/{incident_id}/records.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def records_csv(who: Who, incidents: Incidents, incident_id: IncidentId) -> Response:
    """The blast radius as CSV, one record a line."""
    return Response(incidents.csv(who, incident_id), media_type="text/csv")


@router.get("/{incident_id}/history")
def history(
    who: Who,
    incidents: Incidents,
    incident_id: IncidentId,
    call_id: Annotated[str | None, Query(max_length=256)] = None,
) -> list[dict[str, Any]]:
    """Every verdict given (on one record, with `call_id`), oldest first."""
    return incidents.history(who, incident_id, call_id)


@router.post(
    "/{incident_id}/verdicts",
    responses={
        422: {"model": Problem, "description": "An empty filter, or call ids that are not records of the incident."}
    },
)
def tag(who: Who, incidents: Incidents, incident_id: IncidentId, body: TagIn) -> dict[str, Any]:
    """Judge records safe / wrong / unclear, by call ids or by filter (any reviewer of the team)."""
    return incidents.tag(who, incident_id, body.verdict, body.which(), body.note)


@router.post("/{incident_id}/notes", status_code=201)
def note(who: Who, incidents: Incidents, incident_id: IncidentId, body: NoteIn) -> dict[str, Any]:
    """Add a line to the incident's shared log (any reviewer of the team)."""
    return incidents.note(who, incident_id, body.text)


@router.post("/{incident_id}/close")
def close(who: Who, incidents: Incidents, incident_id: IncidentId, body: NoteIn) -> dict[str, Any]:
    """Close the incident with a note (owners and operators)."""
    return incidents.close(who, incident_id, body.text)


@router.post("/{incident_id}/snapshot", status_code=201)
def snapshot(who: Who, incidents: Incidents, incident_id: IncidentId) -> dict[str, Any]:
    """Take the snapshot before anyone repairs (owners and operators): written once on the service's disk, its
    SHA-256 recorded; each record read back through its tool's `.inspect` hook when the service has the agent's
    tools (`read_back`)."""
    return incidents.snapshot(who, incident_id)


@router.get(
    "/{incident_id}/snapshot",
    response_class=FileResponse,
    responses={200: {"content": {"application/jsonl": {}}}},
)
def snapshot_file(who: Who, incidents: Incidents, incident_id: IncidentId) -> FileResponse:
    """The snapshot file (JSON lines) as written, when this replica holds it; check it against `sha256`."""
    return FileResponse(incidents.snapshot_file(who, incident_id), media_type="application/jsonl")


@router.post("/{incident_id}/repair")
def repair(who: Who, incidents: Incidents, incident_id: IncidentId, body: RepairIn) -> dict[str, Any]:
    """Repair the records judged wrong with the agent's compensations (owners and operators; the service must hold
    the agent's tools): a sample first, then the rest. Each repair runs once, whoever asks again."""
    return incidents.repair(who, incident_id, sample=body.sample, rest=body.rest, repair_tool=body.repair_tool)
