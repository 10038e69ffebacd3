"""Helpers for runtime tests: the sync/async driver, a tool body that counts its calls, an agent on its own
thread, ledger polling."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from guard import Guard, GuardedTool, RunHandle
from guard.ledger import EventRecord, ReadsPort

REPO = Path(__file__).resolve().parents[2]


class Recorder:
    """A tool body that records every invocation and returns `result` (or raises `errors` first, in order)."""

    def __init__(self, result: Any = None, errors: list[BaseException] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.result = result
        self.errors = list(errors or [])

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if self.errors:
            raise self.errors.pop(0)
        return self.result if self.result is not None else {"echo": kwargs}


class Agent(threading.Thread):
    """Runs `work` on its own thread and keeps what it returned or raised."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread, which asserts on it)
            self.error = exc

    def finish(self, timeout: float = 10.0) -> Agent:
        self.join(timeout)
        assert not self.is_alive(), "the agent is still blocked"
        return self


def call_events(ledger: ReadsPort, run_id: str, call_id: str) -> list[EventRecord]:
    return [e for e in ledger.events_of(run_id) if e.call_id == call_id and e.entity == "call"]


def life(ledger: ReadsPort, run_id: str, call_id: str) -> list[str]:
    """The call's states in order, with repeated `started` (attempts, reported ids) collapsed."""
    states: list[str] = []
    for event in call_events(ledger, run_id, call_id):
        for state in event.path:  # a new call's first event names its whole path (offered, approved, started)
            if not states or states[-1] != state:
                states.append(state)
    return states


class SyncSession:
    def __init__(self, handle: RunHandle) -> None:
        self.handle = handle
        self.run_id = handle.run_id

    def call(self, tool: GuardedTool, **kwargs: Any) -> Any:
        return tool(**kwargs)

    def call_with(
        self, tool: GuardedTool, args: dict[str, Any], *, key: str | None = None, call_id: str | None = None
    ) -> Any:
        return tool.call_with(args, key=key, call_id=call_id)


class AsyncSession:
    """Every step runs on one event loop in one context, exactly as the body of `async with` would."""

    def __init__(self, handle: RunHandle, runner: asyncio.Runner, ctx: contextvars.Context) -> None:
        self.handle = handle
        self.run_id = handle.run_id
        self._runner = runner
        self._ctx = ctx

    def call(self, tool: GuardedTool, **kwargs: Any) -> Any:
        return self._runner.run(tool(**kwargs), context=self._ctx)

    def call_with(
        self, tool: GuardedTool, args: dict[str, Any], *, key: str | None = None, call_id: str | None = None
    ) -> Any:
        return self._runner.run(tool.acall_with(args, key=key, call_id=call_id), context=self._ctx)


class Driver:
    """How a scenario wraps tools and opens runs: `sync` or `async`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def tool(
        self, guard: Guard, fn: Callable[..., Any], *, name: str, external_ids: dict[str, str] | None = None
    ) -> GuardedTool:
        """Wrap `fn` as a plain def tool (sync) or as an `async def` that calls it (async)."""
        if self.kind == "sync":
            return guard.tool(fn, name=name, external_ids=external_ids)

        async def async_tool(**kwargs: Any) -> Any:
            return fn(**kwargs)

        return guard.tool(async_tool, name=name, external_ids=external_ids)

    def hanging_tool(self, guard: Guard, *, name: str, gate: Any, started: list[str]) -> GuardedTool:
        """A tool that never finishes on its own: a thread blocked on `gate`, or a coroutine that awaits forever."""
        if self.kind == "sync":

            def hang(**_kwargs: Any) -> None:
                started.append("attempt")
                gate.wait(30)

            return guard.tool(hang, name=name)

        async def hang_async(**_kwargs: Any) -> None:
            started.append("attempt")
            await asyncio.Event().wait()

        return guard.tool(hang_async, name=name)

    @contextmanager
    def run(
        self, guard: Guard, team: str, *, run_id: str | None = None
    ) -> Generator[SyncSession | AsyncSession, None, None]:
        handle = guard.run(team, run_id=run_id)
        if self.kind == "sync":
            with handle:
                yield SyncSession(handle)
            return
        ctx = contextvars.copy_context()
        with asyncio.Runner() as runner:
            runner.run(handle.__aenter__(), context=ctx)
            try:
                yield AsyncSession(handle, runner, ctx)
            except BaseException as exc:
                runner.run(handle.__aexit__(type(exc), exc, exc.__traceback__), context=ctx)
                raise
            runner.run(handle.__aexit__(None, None, None), context=ctx)

    def call_outside_a_run(self, tool: GuardedTool, **kwargs: Any) -> Any:
        if self.kind == "sync":
            return tool(**kwargs)
        return asyncio.run(tool(**kwargs))
