"""Running the tool itself: bounded retries (tenacity) for repeat-safe classes, a per-attempt timeout.

Retries exist only where the policy allows them (it refuses attempts > 1 for classes that are not
repeat-safe). Every failed attempt but the last is recorded in the ledger before the next one starts.
A timed-out attempt is `AttemptTimeout`: the tool may still be running or may have committed.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import tenacity

from guard.policy import RetryRule

__all__ = ["AttemptTimeout", "run_async", "run_sync"]

OnRetry = Callable[[int, BaseException], None]


class AttemptTimeout(TimeoutError):
    """An attempt ran past the policy's per-attempt timeout; its outcome is unknown."""


def _retrying(rule: RetryRule, on_retry: OnRetry) -> dict[str, Any]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None:
            on_retry(state.attempt_number, exc)

    return {
        "stop": tenacity.stop_after_attempt(rule.attempts),
        "wait": tenacity.wait_exponential(multiplier=rule.backoff_initial, max=rule.backoff_max,
                                          exp_base=rule.backoff_multiplier),
        "retry": tenacity.retry_if_exception_type(Exception),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def _attempt_with_timeout(pool: ThreadPoolExecutor, fn: Callable[..., Any], args: Mapping[str, Any],
                          timeout: float) -> Any:
    ctx = contextvars.copy_context()  # the tool still sees its run and call in the worker thread
    future = pool.submit(ctx.run, fn, **args)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout as exc:
        raise AttemptTimeout(f"attempt ran past its {timeout:g}s timeout") from exc


def run_sync(fn: Callable[..., Any], args: Mapping[str, Any], rule: RetryRule, on_retry: OnRetry,
             pool: Callable[[], ThreadPoolExecutor]) -> tuple[Any, int]:
    """Run a sync tool under the retry rule; returns (result, attempts). Raises the last error."""
    timeout = rule.timeout
    if rule.attempts == 1 and timeout is None:
        return fn(**args), 1  # the common case: no retry machinery on the hot path
    attempts = 0
    for attempt in tenacity.Retrying(**_retrying(rule, on_retry)):
        with attempt:
            attempts = attempt.retry_state.attempt_number
            if timeout is None:
                return fn(**args), attempts
            return _attempt_with_timeout(pool(), fn, args, timeout), attempts
    raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises the last error


async def run_async(fn: Callable[..., Any], args: Mapping[str, Any], rule: RetryRule,
                    on_retry: OnRetry) -> tuple[Any, int]:
    """Run an async tool under the retry rule; a timed-out attempt is cancelled and raises AttemptTimeout."""
    timeout = rule.timeout

    async def once() -> Any:
        if timeout is None:
            return await fn(**args)
        try:
            return await asyncio.wait_for(fn(**args), timeout)
        except TimeoutError as exc:
            raise AttemptTimeout(f"attempt ran past its {timeout:g}s timeout") from exc

    if rule.attempts == 1:
        return await once(), 1
    async for attempt in tenacity.AsyncRetrying(**_retrying(rule, on_retry)):
        with attempt:
            return await once(), attempt.retry_state.attempt_number
    raise AssertionError("unreachable")  # pragma: no cover
