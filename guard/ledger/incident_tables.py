"""The tables of incidents (issue 14), declared with SQLModel beside `tables.py`; migration 0009 creates them.

An incident is a named scope of the ledger (runs, runs by source event, or a team/tools/time window) with its
owner, its three times, its snapshot's digest, one verdict per touched record and a shared note log. Every row
here is decision-bearing: written with a claim in the incident's stream (`incident:<id>`), checked by `guard
ledger verify` (see `guard.ledger.digests.COVERED_LATER`).
"""

from __future__ import annotations

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

__all__ = ["Incident", "IncidentNote", "IncidentVerdict"]


class Incident(SQLModel, table=True):
    __tablename__ = "incidents"  # pyright: ignore[reportAssignmentType]

    incident_id: str = Field(primary_key=True)
    title: str
    team: str | None = Field(default=None, index=True)  # the team whose records it is about (None: several)
    scope_json: str  # guard.incidents.scope.Scope as JSON
    state: str  # open | closed
    opened_by: str
    owner: str
    opened_at: float
    started_at: float | None = None  # the first run in scope started
    paused_at: float | None = None  # the first pause covering the scope after that
    last_changed_at: float | None = None  # the last call in scope that changed data ended
    next_update_at: float | None = None  # when the next status update is due
    snapshot_path: str | None = None
    snapshot_digest: str | None = None  # SHA-256 of the snapshot file, as written
    snapshot_records: int | None = None
    snapshot_at: float | None = None
    snapshot_by: str | None = None
    closed_at: float | None = None
    closed_by: str | None = None


class IncidentVerdict(SQLModel, table=True):
    """A person's verdict on one touched record (a call), appended: a record's newest row is its verdict, the
    older ones its history."""

    __tablename__ = "incident_verdicts"  # pyright: ignore[reportAssignmentType]
    __table_args__ = (Index("ix_incident_verdicts_record", "incident_id", "call_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str
    call_id: str
    verdict: str  # safe | wrong | unclear
    note: str | None = None
    judged_by: str
    judged_at: float


class IncidentNote(SQLModel, table=True):
    """One line of the incident's shared log: a person's note, or an action entered by Guard itself."""

    __tablename__ = "incident_notes"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(index=True)
    at: float
    author: str
    kind: str  # note | action
    text: str
