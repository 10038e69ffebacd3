"""`FrameworkBridge`: one policy tool name, guarded, whose body is an agent framework's own execution of a call.

Guard runs a registered function; a framework runs a tool its own way (argument validation, injected state,
callbacks, inner middleware or wrappers). A bridge joins them: the adapter hands the framework's execution of
*this* call to `call` / `acall` (a function of the arguments), and the bridge makes the guarded call with that
execution as the tool's body for this one call (`GuardedTool.run_as`). So classify, brakes, `offered`, dedupe,
the gate, `started`, retries and `completed` / `failed` all happen around the framework's execution, and a call
Guard refuses or deduplicates never reaches it. The execution gets the arguments Guard runs: the model's, or a
reviewer's edit of them.

One name, one guarded tool on the Guard: its registered body is the `fallback`, what recovery and sagas run
(they find tools by name, outside any framework call). One bridge per Guard and name: `for_name` returns the
bridge already registered, so a compensation declared through one adapter object holds for every other one on
the same Guard.

`FrameworkTools` is the adapter's side, written once for every framework: the Guard, the team check, policy
names, `external_ids` per name, the bridge per name, and the run-scoped call id (`<run id>/<framework call id>`).

What a framework adds comes in as two functions: `record` turns the framework's output into the JSON value
the ledger records (default: a text holding a JSON object becomes that object, anything else stays as it is),
and `check` raises when an output is the framework's way of reporting an error, so Guard records a failure and
its policy decides (retry, compensate, halt).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, Self, TypeVar, cast

from guard.errors import GuardUsageError
from guard.runtime.context import RunScope, current_run
from guard.runtime.hooks import CompensationKind, Found, NotFound, ReconcileContext, RollbackContext
from guard.runtime.tools import GuardedTool

if TYPE_CHECKING:
    from guard.runtime.guard import Guard

__all__ = ["BridgedCall", "FrameworkBridge", "FrameworkTools"]

Execute = Callable[[Mapping[str, Any]], Any]  # the framework's execution of the call, given the arguments to run
Reconcile = Callable[[ReconcileContext], Found | NotFound | None]


class BridgedCall(NamedTuple):
    """A bridged call's end: `ran` is False when Guard returned a recorded result and ran nothing."""

    ran: bool
    out: Any  # what the framework's execution returned (None when it did not run now)
    recorded: Any  # the JSON value the ledger holds


@dataclass(slots=True)
class _InFlight:
    """The framework's execution of one call a bridge guards, as the guarded tool's body for that call, and what
    it returned once it ran (a retry starts afresh)."""

    bridge: FrameworkBridge
    execute: Callable[[Mapping[str, Any]], Any]
    ran: bool = False
    out: Any = None

    def body(self, **args: Any) -> Any:
        self.ran, self.out = False, None
        return self.bridge.ran(self, self.execute(args))

    async def abody(self, **args: Any) -> Any:
        self.ran, self.out = False, None
        return self.bridge.ran(self, await self.execute(args))


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
        self._tool = guard.tool(self._fallback, name=name, external_ids=external_ids)  # what recovery finds

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
    def guarded(self) -> GuardedTool:
        """The guarded tool under this name (its body: the fallback)."""
        return self._tool

    @property
    def external_ids(self) -> Mapping[str, str]:
        return self._tool.spec.external_ids

    # -- calls ---------------------------------------------------------------------------------------------

    def call(self, args: Mapping[str, Any], call_id: str | None, execute: Execute) -> BridgedCall:
        """Guard one call whose execution is `execute(arguments Guard runs)`, synchronously.

        Returns whether the execution ran now (False: Guard returned the result the ledger holds for the call's
        idempotency key), what it returned, and the recorded value. `call_id` is the framework's id of the call.
        """
        flight = _InFlight(self, execute)
        recorded = self._tool.run_as(flight.body, args, call_id=call_id)
        return BridgedCall(flight.ran, flight.out, recorded)

    async def acall(
        self, args: Mapping[str, Any], call_id: str | None, execute: Callable[[Mapping[str, Any]], Awaitable[Any]]
    ) -> BridgedCall:
        """`call` in the event loop, with the framework's async execution."""
        flight = _InFlight(self, execute)
        recorded = await self._tool.arun_as(flight.abody, args, call_id=call_id)
        return BridgedCall(flight.ran, flight.out, recorded)

    # -- what the guarded body does with an output (each attempt) ------------------------------------------

    def _checked(self, out: Any) -> Any:
        if self.check is not None:
            self.check(out)  # raises on an error report: Guard records a failed attempt
        return out

    def ran(self, flight: _InFlight, out: Any) -> Any:
        """The framework's execution returned `out`: check it (raises on an error report), keep it for the
        adapter, and give Guard the value to record."""
        flight.ran, flight.out = True, self._checked(out)
        return self.record(out)

    def _fallback(self, **args: Any) -> Any:
        if self.fallback is None:
            raise RuntimeError(f"{self.name}: no {self.framework} call in flight and no fallback to run it")
        return self.record(self._checked(self.fallback(args)))

    # -- what undoes or checks this tool (forwarded to the guarded tool) -----------------------------------

    def compensation(
        self,
        *,
        name: str,
        kind: CompensationKind = "undo",
        external_ids: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> Callable[[Callable[[RollbackContext], Any]], GuardedTool]:
        """See `GuardedTool.compensation`: a plain function, itself a guarded call under `name`."""

        return self._tool.compensation(name=name, kind=kind, external_ids=external_ids, label=label)

    def reconcile(self, fn: Reconcile) -> Reconcile:
        """See `GuardedTool.reconcile`."""
        return self._tool.reconcile(fn)

    def verify(self, fn: Callable[[Any, ReconcileContext], bool]) -> Callable[[Any, ReconcileContext], bool]:
        """See `GuardedTool.verify`."""
        return self._tool.verify(fn)

    def handoff(self, role: str) -> Self:
        """See `GuardedTool.handoff`."""
        self._tool.handoff(role)
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


B = TypeVar("B", bound=FrameworkBridge)


class FrameworkTools(Generic[B]):
    """An adapter's side of Guard, written once for every framework: one per agent (or per team's set of tools).

    Args:
        guard: the Guard whose policies and ledger decide.
        team: when set, a tool call in a run of another team is a usage error (a wiring mistake, loud).
        names: the framework's tool name -> policy tool name (default: the same name).
        external_ids: policy tool name -> `{kind: result field}`, as in `guard.tool(external_ids=...)`.

    A subclass names its bridge class in `bridge`. Declare compensations and reconcile checks on
    `.tool(policy_name)` before the agent runs.
    """

    bridge: ClassVar[type[FrameworkBridge]]

    def __init__(
        self,
        guard: Guard,
        *,
        team: str | None = None,
        names: Mapping[str, str] | None = None,
        external_ids: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.guard = guard
        self.team = team
        self.names = dict(names or {})
        self.external_ids = {k: dict(v) for k, v in (external_ids or {}).items()}

    def policy_name(self, name: str) -> str:
        """The policy tool name of the framework's tool `name`."""
        return self.names.get(name, name)

    def tool(self, name: str) -> B:
        """The bridge for the policy tool `name`; declare its compensation here.

        One bridge per Guard and name: another adapter object on the same Guard gets the same one, so a
        compensation declared through either holds for both (sagas and recovery find tools by name in the Guard).
        """
        return cast(B, self.bridge.for_name(self.guard, name, external_ids=self.external_ids.get(name)))

    def current_run(self) -> RunScope | None:
        """The open run, or None outside one.

        Raises:
            GuardUsageError: the run is of another team than this object's `team`.
        """
        run = current_run()
        if run is not None and self.team is not None and run.team != self.team:
            raise GuardUsageError(
                f"{type(self).__name__} for team {self.team!r} called in run {run.run_id} of team "
                f"{run.team!r}: open the run with guard.run({self.team!r}, ...)"
            )
        return run

    @staticmethod
    def call_id(run_id: str, tool_call_id: str) -> str:
        """Guard's call id of a framework's tool call: `<run id>/<the framework's call id>`. A model's ids (`call_1`,
        ...) are unique in one run only, and the ledger refuses a call id of another run."""
        return f"{run_id}/{tool_call_id}"
