"""The fixed vocabularies a request may filter by, as the types every route and page of the service shares.

Each is the ledger's own type (`guard.ledger.RunState`, `CallState`, `IncidentState`, the incidents' `Verdict`), so
FastAPI refuses an unknown value before the route runs: 422 naming the allowed values (`guard.server.app` shows it
as a page on the reviewer's site), never an empty list that reads as "nothing in that state". The OpenAPI document
lists the values. On a page, an empty form field means "any" (`Any`: "" becomes None before the check).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Form, Query
from pydantic import BeforeValidator

from guard.incidents import Verdict
from guard.ledger import CallState, IncidentState, RunState

__all__ = [
    "CallStateForm",
    "CallStateQuery",
    "IncidentStateQuery",
    "Judged",
    "JudgedForm",
    "JudgedQuery",
    "RunStateQuery",
    "any_when_empty",
]

# A record's verdict now, or `none` for one nobody judged yet.
Judged = Literal[Verdict, "none"]


def any_when_empty(value: Any) -> Any:
    """An empty (or blank) form field or query value means no filter."""
    return None if isinstance(value, str) and not value.strip() else value


_Any = BeforeValidator(any_when_empty)

RunStateQuery = Annotated[RunState | None, _Any, Query(description="Only runs in this state.")]
CallStateQuery = Annotated[CallState | None, _Any, Query(description="Only records (calls) in this state.")]
JudgedQuery = Annotated[Judged | None, _Any, Query(description="Only records with this verdict now (`none`: not yet).")]
IncidentStateQuery = Annotated[IncidentState | None, _Any, Query(description="Only incidents in this state.")]
CallStateForm = Annotated[CallState | None, _Any, Form(description="Only records (calls) in this state.")]
JudgedForm = Annotated[Judged | None, _Any, Form(description="Only records with this verdict now (`none`: not yet).")]
