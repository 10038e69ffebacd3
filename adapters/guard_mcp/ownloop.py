"""Running a coroutine to its end on a loop of its own, on a thread of its own.

Guard calls a tool's compensation and its reconcile check synchronously (they also run in recovery and in
operator commands, outside any event loop), and from inside the proxy's running loop too. Each talks to the
upstream server over a connection of its own, on a thread of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import anyio

__all__ = ["on_own_loop", "sole"]

T = TypeVar("T")


def on_own_loop(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `work` to its end in an event loop on a new thread (the caller may be inside a running loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = anyio.run(work)
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread, out of the task groups)
            box["error"] = sole(exc)

    thread = threading.Thread(target=target, name="guard-mcp-own-loop")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return cast(T, box["value"])


def sole(exc: BaseException) -> BaseException:
    """The one error inside nested single-error groups (anyio task groups wrap what their tasks raise)."""
    if isinstance(exc, BaseExceptionGroup):
        inner = cast(tuple[BaseException, ...], exc.exceptions)  # pyright: ignore[reportUnknownMemberType] - the group's type argument is unknown here
        if len(inner) == 1:
            return sole(inner[0])
    return cast(BaseException, exc)
