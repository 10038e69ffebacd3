"""`GuardedTool`: a plain function wrapped so that every call goes the guarded path."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from guard.runtime.steps import ToolSpec

if TYPE_CHECKING:
    from guard.runtime.guard import Guard

__all__ = ["GuardedTool"]


class GuardedTool:
    """Call it like the original function (keyword or positional arguments). A sync function gives a sync
    tool; an async one gives a coroutine to await. `call_with(args, key=..., call_id=...)` lets an adapter
    pass the framework's own call id and an idempotency key.
    """

    def __init__(self, guard: Guard, spec: ToolSpec) -> None:
        self.guard = guard
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
            return self.guard.ainvoke(self.spec, arguments)
        return self.guard.invoke(self.spec, arguments)

    def call_with(self, args: Mapping[str, Any], *, key: str | None = None, call_id: str | None = None) -> Any:
        """Sync call with an explicit idempotency key and call id."""
        return self.guard.invoke(self.spec, args, key=key, call_id=call_id)

    async def acall_with(self, args: Mapping[str, Any], *, key: str | None = None,
                         call_id: str | None = None) -> Any:
        """Async call with an explicit idempotency key and call id (sync functions run inline)."""
        return await self.guard.ainvoke(self.spec, args, key=key, call_id=call_id)

    def __repr__(self) -> str:
        return f"<GuardedTool {self.name}>"
