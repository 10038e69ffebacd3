"""What a tool declares beside itself: its compensation, its reconcile check, its verification.

```python
@guard.tool(name="billing.create_invoice", external_ids={"invoice": "invoice_id"})
def create_invoice(contact_id: str, amount_cents: int) -> dict: ...

@create_invoice.compensation(name="billing.void_invoice", kind="void")
def void_invoice(ctx: RollbackContext) -> dict: ...          # a guarded call of its own

@create_invoice.reconcile
def find_invoice(ctx: ReconcileContext) -> Found | NotFound | None: ...   # look the key up over there

@create_invoice.verify
def invoice_is_open(result: dict, ctx: ReconcileContext) -> bool: ...

@create_invoice.inspect
def read_invoice(ctx: ReconcileContext) -> dict | None: ...   # the record now, for an incident's snapshot
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CompensationKind", "Found", "NotFound", "ReconcileContext", "RollbackContext", "ToolHooks", "ToolSpec"]

# The kinds the seeds name. Not all of them undo: `mark_for_review` and `handoff` leave the effect in place.
CompensationKind = Literal["undo", "void", "cancel", "mark_for_review", "correct", "isolate", "handoff"]


@dataclass(frozen=True, slots=True)
class Found:
    """The reconcile check found the effect in the other system: the call is `completed` with these."""

    result: Any = None
    external_ids: Mapping[str, str] = field(default_factory=dict[str, str])


@dataclass(frozen=True, slots=True)
class NotFound:
    """The reconcile check confirmed the effect is absent: the call provably did nothing."""


@dataclass(frozen=True, slots=True)
class ReconcileContext:
    """What a reconcile check or a verification gets: the call, its key in the other system, its ids so far.

    `args` are the real arguments when the check runs in the worker that made the call, else the recorded
    (secret-redacted) ones.
    """

    run_id: str
    call_id: str
    tool: str
    args: Mapping[str, Any]
    idempotency_key: str | None
    external_ids: Mapping[str, str]
    attempts: int


@dataclass(frozen=True, slots=True)
class RollbackContext:
    """What a compensation gets: the original call, what it produced, and why the run is rolling back.

    `result` and `external_ids` may be empty: a call whose outcome is unknown is compensated too, and its
    compensation reconciles by `idempotency_key`. `failure` names the call whose failure started the rollback.
    """

    run_id: str
    call_id: str
    tool: str
    args: Mapping[str, Any]
    result: Any
    external_ids: Mapping[str, str]
    idempotency_key: str | None
    state: str
    attempts: int
    retry_attempts: int
    timeout: float | None
    failure: str
    kind: str

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RollbackContext:
        return cls(**data)


@dataclass(slots=True)
class ToolHooks:
    """Filled in by the decorators on a GuardedTool, once, where the tool is defined."""

    compensation: ToolSpec | None = None  # the tool that compensates this one (a guarded call of its own)
    compensation_kind: str = "undo"
    reconcile: Callable[[ReconcileContext], Found | NotFound | None] | None = None
    verify: Callable[[Any, ReconcileContext], bool] | None = None
    inspect: Callable[[ReconcileContext], Any] | None = None  # the record as it is now in the other system
    handoff_role: str | None = None  # no function: a person with this role takes it over
    label: str | None = None  # how the operator-facing state names this call's effect, e.g. invoice_created


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as Guard knows it: its name in the policy, the function, and how to read its result."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    external_ids: Mapping[str, str] = field(default_factory=dict[str, str])  # kind -> result field
    key: Callable[[Mapping[str, Any]], str] | None = None  # idempotency key from the arguments
    hooks: ToolHooks = field(default_factory=ToolHooks)  # compensation, reconcile, verify (set by decorators)
