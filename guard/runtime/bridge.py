"""`FrameworkBridge`: one policy tool name, guarded, whose body is an agent framework's own execution of a call.

Guard runs a registered function; a framework runs a tool its own way (argument validation, injected state,
callbacks, inner middleware or wrappers). A bridge joins them: the adapter hands the framework's execution of
*this* call to `call` / `acall` (a function of the arguments), the bridge puts it in a context variable and
makes the guarded call; Guard's body runs whatever is in flight for this bridge. So classify, brakes,
`offered`, dedupe, the gate, `started`, retries and `completed` / `failed` all happen around the framework's
execution, and a call Guard refuses or deduplicates never reaches it. The execution gets the arguments Guard
runs: the model's, or a reviewer's edit of them.

One name, two guarded tools on the Guard: an async body for `acall` and a sync one for `call`, recovery and
sagas (which find tools by name and run outside any event loop). The sync one is registered last, so that is
the one they find. One bridge per Guard and name: `for_name` returns the bridge already registered, so a
compensation declared through one adapter object holds for every other one on the same Guard.

What a framework adds comes in as two functions: `record` turns the framework's output into the JSON value
the ledger records (default: a text holding a JSON object becomes that object, anything else stays as it is),
and `check` raises when an output is the framework's way of reporting an error, so Guard records a failure and
its policy decides (retry, compensate, halt).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Generator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Self, cast

from guard.errors import GuardUsageError
from guard.runtime.hooks import CompensationKind, Found, NotFound, ReconcileContext, RollbackContext
from guard.runtime.tools import GuardedTool

if TYPE_CHECKING:
    from guard.runtime.guard import Guard

__all__ = ["BridgedCall", "FrameworkBridge"]

Execute = Callable[[Mapping[str, Any]], Any]  # the framework's execution of the call, given the arguments to run
Reconcile = Callable[[ReconcileContext], Found | NotFound | None]


class BridgedCall(NamedTuple):
    """A bridged call's end: `ran` is False when Guard returned a recorded result and ran nothing."""

    ran: bool
    out: Any  # what the framework's execution returned (None when it did not run now)
    recorded: Any  # the JSON value the ledger holds


@dataclass(slots=True)
class _InFlight:
    """The framework's execution of the call a bridge is guarding now, and what it returned once it ran."""

    bridge: FrameworkBridge
    execute: Execute
    ran: bool = False
    out: Any = None


_IN_FLIGHT: ContextVar[_InFlight | None] = ContextVar("guard_bridge_in_flight", default=None)


def _parse_json_text(out: Any) -> Any:
    if isinstance(out, str) and out.startswith("{"):
        try:
            parsed: Any = json.loads(out)
        except ValueError:
            return out
        return cast(dict[str, Any], parsed) if isinstance(parsed, dict) else out
    return out


class FrameworkBridge:
    """The guarded tool behind one policy tool name, for a framework's calls of any tool under that name.

    Args:
        guard: the Guard the two guarded tools are registered in.
        name: the policy tool name.
        record: the framework's output -> the JSON value the ledger records (and a policy's `external_ids` read);
            default `parse_json_text`.
        check: raises when the output reports an error (its return value is ignored); None: no output does.
        external_ids: `{kind: result field}`, as in `guard.tool(external_ids=...)`.
        fallback: runs the tool with the recorded arguments when no framework call is in flight (Guard's
            recovery or an operator re-running a call in another process); its output goes through `check`
            and `record` too. Without it such a run fails, is recorded as failed, and the policy decides.
        framework: the framework's name, for error messages.

    Declare what undoes or checks the effect here, as on a `GuardedTool`: `.compensation(name=...)`,
    `.reconcile`, `.verify`, `.handoff(role)`; each goes to both guarded tools.

    Failure modes: `call` / `acall` raise Guard's typed outcomes (`CallOutcomeError` subclasses, and
    `ApprovalPending` in deferred mode); an exception of the execution or of `check` is recorded by Guard first.
    `for_name` raises `GuardUsageError` when the name is bridged by another kind of bridge, or with other
    `external_ids`.
    """

    def __init__(
        self,
        guard: Guard,
        name: str,
        *,
        record: Callable[[Any], Any] = _parse_json_text,
        check: Callable[[Any], object] | None = None,
        external_ids: Mapping[str, str] | None = None,
        fallback: Execute | None = None,
        framework: str = "framework",
    ) -> None:
        self.guard, self.name, self.framework = guard, name, framework
        self.record, self.check, self.fallback = record, check, fallback
        self._async = guard.tool(self._abody, name=name, external_ids=external_ids)
        self._sync = guard.tool(self._body, name=name, external_ids=external_ids)  # last: what recovery finds

    parse_json_text = staticmethod(_parse_json_text)
    """The default `record`: a text holding a JSON object is recorded as that object (so a policy's
    `external_ids` fields can be read from it); anything else as it is."""

    @classmethod
    def registered(cls, guard: Guard, name: str) -> Self | None:
        """The bridge registered in `guard` under `name`, if the tool registered under it is a bridge's.

        Raises:
            GuardUsageError: it is a bridge of another class (another framework's outputs, recorded its way).
        """
        tool = guard.tool_named(name)
        owner: Any = getattr(tool.spec.fn, "__self__", None) if tool is not None else None
        if not isinstance(owner, FrameworkBridge):
            return None
        if type(owner) is not cls:
            raise GuardUsageError(
                f"{name} is already bridged for {owner.framework} ({type(owner).__name__}) in "
                f"this Guard: one policy tool name has one bridge"
            )
        return owner

    @classmethod
    def for_name(
        cls, guard: Guard, name: str, *, external_ids: Mapping[str, str] | None = None, fallback: Execute | None = None
    ) -> Self:
        """The bridge for `name` in `guard`: the one registered, else a new one made with these arguments.

        A registered bridge without a fallback takes `fallback`. `external_ids` must match what it was made with.
        """
        bridge = cls.registered(guard, name)
        if bridge is None:
            return cls(guard, name, external_ids=external_ids, fallback=fallback)
        if external_ids and dict(external_ids) != dict(bridge.external_ids):
            raise GuardUsageError(
                f"{name} is bridged with external_ids={dict(bridge.external_ids)}, not "
                f"{dict(external_ids)}: declare them once, where the tool is first bridged"
            )
        if bridge.fallback is None:
            bridge.fallback = fallback
        return bridge

    @property
    def tools(self) -> tuple[GuardedTool, GuardedTool]:
        """The sync and the async guarded tool under this name."""
        return (self._sync, self._async)

    @property
    def external_ids(self) -> Mapping[str, str]:
        return self._sync.spec.external_ids

    # -- calls ---------------------------------------------------------------------------------------------

    def call(self, args: Mapping[str, Any], call_id: str | None, execute: Execute) -> BridgedCall:
        """Guard one call whose execution is `execute(arguments Guard runs)`, synchronously.

        Returns whether the execution ran now (False: Guard returned the result the ledger holds for the call's
        idempotency key), what it returned, and the recorded value. `call_id` is the framework's id of the call.
        """
        with self._in_flight(execute) as flight:
            recorded = self._sync.call_with(args, call_id=call_id)
        return BridgedCall(flight.ran, flight.out, recorded)

    async def acall(
        self, args: Mapping[str, Any], call_id: str | None, execute: Callable[[Mapping[str, Any]], Awaitable[Any]]
    ) -> BridgedCall:
        """`call` in the event loop, with the framework's async execution."""
        with self._in_flight(execute) as flight:
            recorded = await self._async.acall_with(args, call_id=call_id)
        return BridgedCall(flight.ran, flight.out, recorded)

    @contextmanager
    def _in_flight(self, execute: Execute) -> Generator[_InFlight]:
        flight = _InFlight(self, execute)
        token = _IN_FLIGHT.set(flight)
        try:
            yield flight
        finally:
            _IN_FLIGHT.reset(token)

    # -- the guarded bodies (each attempt) -----------------------------------------------------------------

    def _flight(self) -> _InFlight | None:
        flight = _IN_FLIGHT.get()
        return flight if flight is not None and flight.bridge is self else None

    def _body(self, **args: Any) -> Any:
        flight = self._flight()
        if flight is None:
            return self._fallback(args)
        flight.ran, flight.out = False, None  # a retry starts afresh
        return self._ran(flight, flight.execute(args))

    async def _abody(self, **args: Any) -> Any:
        flight = self._flight()
        if flight is None:
            return self._fallback(args)
        flight.ran, flight.out = False, None
        return self._ran(flight, await flight.execute(args))

    def _checked(self, out: Any) -> Any:
        if self.check is not None:
            self.check(out)  # raises on an error report: Guard records a failed attempt
        return out

    def _ran(self, flight: _InFlight, out: Any) -> Any:
        flight.ran, flight.out = True, self._checked(out)
        return self.record(out)

    def _fallback(self, args: Mapping[str, Any]) -> Any:
        if self.fallback is None:
            raise RuntimeError(f"{self.name}: no {self.framework} call in flight and no fallback to run it")
        return self.record(self._checked(self.fallback(args)))

    # -- what undoes or checks this tool (forwarded to both guarded tools) ---------------------------------

    def compensation(
        self,
        *,
        name: str,
        kind: CompensationKind = "undo",
        external_ids: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> Callable[[Callable[[RollbackContext], Any]], GuardedTool]:
        """See `GuardedTool.compensation`: a plain function, itself a guarded call under `name`."""

        def wrap(fn: Callable[[RollbackContext], Any]) -> GuardedTool:
            self._async.compensation(name=name, kind=kind, external_ids=external_ids, label=label)(fn)
            return self._sync.compensation(name=name, kind=kind, external_ids=external_ids, label=label)(fn)

        return wrap

    def reconcile(self, fn: Reconcile) -> Reconcile:
        """See `GuardedTool.reconcile`."""
        for tool in self.tools:
            tool.reconcile(fn)
        return fn

    def verify(self, fn: Callable[[Any, ReconcileContext], bool]) -> Callable[[Any, ReconcileContext], bool]:
        """See `GuardedTool.verify`."""
        for tool in self.tools:
            tool.verify(fn)
        return fn

    def handoff(self, role: str) -> Self:
        """See `GuardedTool.handoff`."""
        for tool in self.tools:
            tool.handoff(role)
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
