"""Running the tool itself: bounded retries (tenacity) for repeat-safe classes, a per-attempt timeout.

Retries exist only where the policy allows them (it refuses attempts > 1 for classes that are not
repeat-safe), and only for a failure that does not say `retryable = False` (a tool that answered with an error:
running it again gets the same answer). Every failed attempt but the last is recorded in the ledger before the
next one starts.
A timed-out attempt is `AttemptTimeout`: the tool may still be running or may have committed.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import tenacity

from guard.policy import RetryRule
from guard.runtime import tracing

__all__ = ["AttemptTimeout", "run_async", "run_sync"]

OnRetry = Callable[[int, BaseException], None]


class AttemptTimeout(TimeoutError):
    """An attempt ran past the policy's per-attempt timeout; its outcome is unknown."""


def _retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may be tried again: unless the error says `retryable = False`."""
    return isinstance(exc, Exception) and getattr(exc, "retryable", True) is not False


def _retrying(rule: RetryRule, on_retry: OnRetry) -> dict[str, Any]:
    """Tenacity settings for attempts 2..n; attempt 1 already ran bare and failed (see `run_sync`).

    Tenacity numbers its attempts from 1, so its attempt j is our attempt j + 1: the wait after it is
    `initial * multiplier ** j`, and the attempt number reported to `on_retry` is shifted by one.
    """

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None:
            on_retry(state.attempt_number + 1, exc)

    return {
        "stop": tenacity.stop_after_attempt(rule.attempts - 1),
        "wait": tenacity.wait_exponential(
            multiplier=rule.backoff_initial * rule.backoff_multiplier,
            max=rule.backoff_max,
            exp_base=rule.backoff_multiplier,
        ),
        "retry": tenacity.retry_if_exception(_retryable),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def _attempt_with_timeout(
    pool: ThreadPoolExecutor, fn: Callable[..., Any], args: Mapping[str, Any], timeout: float
) -> Any:
    ctx = contextvars.copy_context()  # the tool still sees its run and call in the worker thread
    future = pool.submit(ctx.run, fn, **args)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout as exc:
        raise AttemptTimeout(f"attempt ran past its {timeout:g}s timeout") from exc


def run_sync(
    fn: Callable[..., Any],
    args: Mapping[str, Any],
    rule: RetryRule,
    on_retry: OnRetry,
    pool: Callable[[], ThreadPoolExecutor],
) -> tuple[Any, int]:
    """Run a sync tool under the retry rule; returns (result, attempts). Raises the last error.

    Attempt 1 runs bare, so a call that succeeds first time pays nothing for the retry machinery; only
    after it fails does tenacity drive the remaining attempts.
    """
    timeout = rule.timeout

    @tracing.attempts
    def attempt() -> Any:
        if timeout is None:
            return fn(**args)
        return _attempt_with_timeout(pool(), fn, args, timeout)

    try:
        return attempt(), 1
    except Exception as exc:
        if rule.attempts == 1 or not _retryable(exc):
            raise
        on_retry(1, exc)
    time.sleep(min(rule.backoff_initial, rule.backoff_max))
    for retry in tenacity.Retrying(**_retrying(rule, on_retry)):
        with retry:
            return attempt(), retry.retry_state.attempt_number + 1
    raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises the last error


async def run_async(
    fn: Callable[..., Any], args: Mapping[str, Any], rule: RetryRule, on_retry: OnRetry
) -> tuple[Any, int]:
    """Run an async tool under the retry rule; a timed-out attempt is cancelled and raises AttemptTimeout."""
    timeout = rule.timeout

    @tracing.attempts
    async def once() -> Any:
        if timeout is None:
            return await fn(**args)
        try:
            return await asyncio.wait_for(fn(**args), timeout)
        except TimeoutError as exc:
            raise AttemptTimeout(f"attempt ran past its {timeout:g}s timeout") from exc

    try:
        return await once(), 1
    except Exception as exc:
        if rule.attempts == 1 or not _retryable(exc):
            raise
        on_retry(1, exc)
    await asyncio.sleep(min(rule.backoff_initial, rule.backoff_max))
    async for retry in tenacity.AsyncRetrying(**_retrying(rule, on_retry)):
        with retry:
            return await once(), retry.retry_state.attempt_number + 1
    raise AssertionError("unreachable")  # pragma: no cover
