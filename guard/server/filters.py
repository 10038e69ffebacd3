"""The fixed vocabularies a request may filter by, as the types every route and page of the service shares.

Each is the ledger's own type (`guard.ledger.RunState`, `CallState`, `IncidentState`, the incidents' `Verdict`), so
FastAPI refuses an unknown value before the route runs: 422 naming the allowed values (`guard.server.app` shows it
as a page on the reviewer's site), never an empty list that reads as "nothing in that state". The OpenAPI document
lists the values. On a page, an empty form field means "any" (the `Page...` and `...Form` types: "" becomes None
before the check); the API takes exactly the set.
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
    "PageCallState",
    "PageIncidentState",
    "PageJudged",
    "RunStateQuery",
    "any_when_empty",
]

# A record's verdict now, or `none` for one nobody judged yet.
Judged = Literal[Verdict, "none"]


def any_when_empty(value: Any) -> Any:
    """An empty (or blank) form field or query value means no filter."""
    return None if isinstance(value, str) and not value.strip() else value


_Any = BeforeValidator(any_when_empty)
_RUNS = "Only runs in this state."
_RECORDS = "Only records (calls) in this state."
_JUDGED = "Only records with this verdict now (`none`: not yet judged)."
_INCIDENTS = "Only incidents in this state."

# The API's: exactly the set (an empty value is not one of it).
RunStateQuery = Annotated[RunState | None, Query(description=_RUNS)]
CallStateQuery = Annotated[CallState | None, Query(description=_RECORDS)]
JudgedQuery = Annotated[Judged | None, Query(description=_JUDGED)]
IncidentStateQuery = Annotated[IncidentState | None, Query(description=_INCIDENTS)]

# The pages': a form's empty field means any.
PageCallState = Annotated[CallState | None, _Any, Query(description=_RECORDS)]
PageJudged = Annotated[Judged | None, _Any, Query(description=_JUDGED)]
PageIncidentState = Annotated[IncidentState | None, _Any, Query(description=_INCIDENTS)]
CallStateForm = Annotated[CallState | None, _Any, Form(description=_RECORDS)]
JudgedForm = Annotated[Judged | None, _Any, Form(description=_JUDGED)]
