"""`GuardedTool`: a plain function wrapped so that every call goes the guarded path; `Toolbox`: a Guard's tools.

A tool calls the driver directly on its Guard's `CallPath` (no hop through `Guard`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from guard.errors import GuardUsageError
from guard.runtime import driver
from guard.runtime.callpath import CallPath
from guard.runtime.hooks import (
    CompensationKind,
    Found,
    NotFound,
    ReconcileContext,
    RollbackContext,
    ToolHooks,
    ToolSpec,
)

__all__ = ["GuardedTool", "Toolbox"]


class Toolbox:
    """A Guard's tools by policy name: wraps functions as guarded tools and registers them (their specs also in
    `specs`, the mapping the call path's recovery and sagas look tools up in). The last tool wrapped under a name
    is the one found."""

    def __init__(self, path: CallPath, specs: dict[str, ToolSpec]) -> None:
        self.path = path
        self._specs = specs
        self._tools: dict[str, GuardedTool] = {}

    def wrap(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        external_ids: Mapping[str, str] | None = None,
        key: Callable[[Mapping[str, Any]], str] | None = None,
        label: str | None = None,
    ) -> GuardedTool:
        spec = ToolSpec(
            name=name or fn.__name__,
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            external_ids=dict(external_ids or {}),
            key=key,
            hooks=ToolHooks(label=label),
        )
        tool = GuardedTool(self, spec)
        self._tools[spec.name] = tool
        self._specs[spec.name] = spec
        return tool

    def named(self, name: str) -> GuardedTool | None:
        return self._tools.get(name)

    def repoint(self, path: CallPath) -> None:
        """Every tool runs on `path` from now on (a Guard whose waiter was replaced)."""
        self.path = path
        for tool in self._tools.values():
            tool.path = path


class GuardedTool:
    """Call it like the original function (keyword or positional arguments). A sync function gives a sync
    tool; an async one gives a coroutine to await. `call_with(args, key=..., call_id=...)` lets an adapter
    pass the framework's own call id and an idempotency key.
    """

    def __init__(self, toolbox: Toolbox, spec: ToolSpec) -> None:
        self.path = toolbox.path
        self._toolbox = toolbox
        self.spec = spec
        self.name = spec.name
        self._signature = inspect.signature(spec.fn)
        functools.update_wrapper(self, spec.fn)  # pyright: ignore[reportArgumentType]

    def _args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any]:
        if not args:
            return kwargs
        bound = self._signature.bind(*args, **kwargs)
        return dict(bound.arguments)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        arguments = self._args(args, kwargs)
        if self.spec.is_async:
            return driver.ainvoke(self.path, self.spec, arguments)
        return driver.invoke(self.path, self.spec, arguments)

    def call_with(self, args: Mapping[str, Any], *, key: str | None = None, call_id: str | None = None) -> Any:
        """Sync call with an explicit idempotency key and call id."""
        return driver.invoke(self.path, self.spec, args, key=key, call_id=call_id)

    async def acall_with(self, args: Mapping[str, Any], *, key: str | None = None, call_id: str | None = None) -> Any:
        """Async call with an explicit idempotency key and call id (sync functions run inline)."""
        return await driver.ainvoke(self.path, self.spec, args, key=key, call_id=call_id)

    def run_as(self, body: Callable[..., Any], args: Mapping[str, Any], *, call_id: str | None = None) -> Any:
        """One sync call of this tool (its name, hooks and key) whose body, this once, is `body` (a framework's own
        execution of the call, see `FrameworkBridge`); recovery and sagas still run the registered function."""
        return driver.invoke(self.path, replace(self.spec, fn=body, is_async=False), args, call_id=call_id)

    async def arun_as(
        self, body: Callable[..., Awaitable[Any]], args: Mapping[str, Any], *, call_id: str | None = None
    ) -> Any:
        """`run_as` in the event loop, with an async `body`."""
        return await driver.ainvoke(self.path, replace(self.spec, fn=body, is_async=True), args, call_id=call_id)

    # -- what undoes or checks this tool (decorators, used once where the tool is defined) ---------------

    def compensation(
        self,
        *,
        name: str,
        kind: CompensationKind = "undo",
        external_ids: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> Callable[[Callable[[RollbackContext], Any]], GuardedTool]:
        """Declare the function that compensates this tool when a later call of its run fails.

        The compensation is a guarded call of its own under `name` (the team's policy classifies it), with
        the idempotency key `compensate:<call id>`, so a saga run twice never compensates twice. It gets a
        `RollbackContext`. `kind` says what it does: undo, void, cancel, mark_for_review, correct, isolate.
        """

        def wrap(fn: Callable[[RollbackContext], Any]) -> GuardedTool:
            if inspect.iscoroutinefunction(fn):
                raise GuardUsageError(
                    f"the compensation {name} must be a plain function (sagas also run in "
                    "recovery and operator commands, outside any event loop)"
                )

            def compensate(context: Mapping[str, Any]) -> Any:
                return fn(RollbackContext.from_json(context))

            functools.update_wrapper(compensate, fn)
            comp = self._toolbox.wrap(compensate, name=name, external_ids=external_ids, label=label)
            self.spec.hooks.compensation = comp.spec
            self.spec.hooks.compensation_kind = kind
            return comp

        return wrap

    def reconcile(
        self, fn: Callable[[ReconcileContext], Found | NotFound | None]
    ) -> Callable[[ReconcileContext], Found | NotFound | None]:
        """Declare the check that looks this call's idempotency key up in the other system: `Found(...)` when
        the effect exists, `NotFound()` when it provably does not, None when it cannot tell."""
        self.spec.hooks.reconcile = fn
        return fn

    def verify(self, fn: Callable[[Any, ReconcileContext], bool]) -> Callable[[Any, ReconcileContext], bool]:
        """Declare a check that confirms the effect after the tool returned; False (or raising) fails the call
        and sends the run to review: the effect may exist without the confirmation."""
        self.spec.hooks.verify = fn
        return fn

    def inspect(self, fn: Callable[[ReconcileContext], Any]) -> Callable[[ReconcileContext], Any]:
        """Declare how to read this call's record back from the other system (by its external ids or key):
        an incident's snapshot keeps what it returns (JSON) beside what the ledger knows. Never changes anything."""
        self.spec.hooks.inspect = fn
        return fn

    def handoff(self, role: str) -> GuardedTool:
        """No function undoes this tool: when its run fails, a person with `role` takes it over (the run
        halts in pending review naming the role)."""
        self.spec.hooks.handoff_role = role
        self.spec.hooks.compensation_kind = "handoff"
        return self

    def __repr__(self) -> str:
        return f"<GuardedTool {self.name}>"
