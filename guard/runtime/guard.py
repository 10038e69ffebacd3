"""`Guard`: the one object an agent builder holds. Wrap tools, open runs, and every call goes the guarded path.

```python
guard = Guard(policies="policies", db="sqlite:///guard.db")

@guard.tool(name="billing.create_invoice", external_ids={"invoice": "invoice_id"})
def create_invoice(customer_id: str, amount_cents: int) -> dict: ...

with guard.run("onboarding", subject="cust-42"):
    create_invoice(customer_id="cust-42", amount_cents=1200)
```
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, overload

from guard.errors import ApprovalPending, ApprovalTimeout, GuardUsageError
from guard.ledger import CallState, Ledger, resolve_url
from guard.logs import make_logger
from guard.policy import PolicySet
from guard.runtime.context import CALL_VAR, RUN_VAR, CallScope, RunScope
from guard.runtime.execute import AttemptTimeout, run_async, run_sync
from guard.runtime.runs import RunHandle
from guard.runtime.steps import (
    CallInput,
    Prepared,
    ToolSpec,
    decision_outcome,
    error_text,
    prepare,
    record_failure,
    record_success,
)
from guard.runtime.tools import GuardedTool
from guard.runtime.waiting import Waiter

__all__ = ["Guard"]

WaitMode = Literal["block", "defer"]


class Guard:
    """Guards tool calls for the teams in a policy directory, recording them in one ledger.

    Args:
        policies: a directory of `<team>.yaml` files (or a loaded PolicySet). A broken file denies that
            team's calls; it never allows them.
        db: ledger URL or SQLite path; default `GUARD_DATABASE_URL`, else `sqlite:///guard.db`.
        actor: who asks, recorded on every call (a reviewer may never approve their own call).
        approval: `block` waits for a decision up to `approval_timeout` seconds (then ApprovalTimeout);
            `defer` raises ApprovalPending at once and the run resumes when the same call is made again.
        log_level: `debug`, `info`, `warning` or `error`; logs go to stderr with run and call ids.

    Failure modes: every refused or failed call raises a subclass of `CallOutcomeError`, recorded first.
    """

    def __init__(self, *, policies: str | Path | PolicySet = "policies", db: str | None = None,
                 actor: str = "agent", approval: WaitMode = "block", approval_timeout: float = 300.0,
                 log_level: str = "info", log_json: bool = False) -> None:
        if approval not in ("block", "defer"):
            raise GuardUsageError(f"approval must be 'block' or 'defer', not {approval!r}")
        self.policies = policies if isinstance(policies, PolicySet) else PolicySet.load_dir(policies)
        self.ledger = Ledger(resolve_url(db))
        self.actor = actor
        self.approval = approval
        self.approval_timeout = approval_timeout
        self.log = make_logger(log_level, json=log_json)
        self._waiter = Waiter(self.ledger)
        self._pool: ThreadPoolExecutor | None = None
        for team, err in self.policies.errors.items():
            self.log.error("policy invalid: every call of this team is denied", team=team, error=str(err))

    def close(self) -> None:
        """Close the ledger connections and the timeout worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.ledger.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- wrapping -----------------------------------------------------------------------------------------

    @overload
    def tool(self, fn: Callable[..., Any], /, *, name: str | None = None,
             external_ids: Mapping[str, str] | None = None,
             key: Callable[[Mapping[str, Any]], str] | None = None) -> GuardedTool: ...
    @overload
    def tool(self, fn: None = None, /, *, name: str | None = None,
             external_ids: Mapping[str, str] | None = None,
             key: Callable[[Mapping[str, Any]], str] | None = None) -> Callable[[Callable[..., Any]], GuardedTool]: ...

    def tool(self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None,
             external_ids: Mapping[str, str] | None = None,
             key: Callable[[Mapping[str, Any]], str] | None = None) -> Any:
        """Wrap a plain function (sync or async) as a guarded tool. Use as `guard.tool(fn)` or a decorator.

        Args:
            name: the tool's name in the policy (default: the function's `__name__`).
            external_ids: result fields holding ids in other systems, e.g. `{"invoice": "invoice_id"}`.
            key: builds the idempotency key from the arguments (default: run id + tool + argument hash).
        """
        def wrap(f: Callable[..., Any]) -> GuardedTool:
            spec = ToolSpec(name=name or f.__name__, fn=f, is_async=inspect.iscoroutinefunction(f),
                            external_ids=dict(external_ids or {}), key=key)
            return GuardedTool(self, spec)

        return wrap(fn) if fn is not None else wrap

    def run(self, team: str, *, run_id: str | None = None, subject: str | None = None,
            source_event_id: str | None = None) -> RunHandle:
        """A run: the calls of one business event, under one run id (`with` or `async with`).

        With `source_event_id` and no `run_id`, the run id is `<team>:<source_event_id>`, so the same event
        delivered twice resumes the same run instead of acting twice. An existing run id resumes that run.
        """
        return RunHandle(self, team=team, run_id=run_id, subject=subject, source_event_id=source_event_id)

    # -- the call path ------------------------------------------------------------------------------------

    def _scope(self) -> RunScope:
        run = RUN_VAR.get()
        if run is None:
            raise GuardUsageError("a guarded tool was called outside a run: wrap the agent's work in "
                                  "`with guard.run(team):`")
        return run

    def _prepare(self, spec: ToolSpec, args: Mapping[str, Any], key: str | None, call_id: str | None) -> Prepared:
        run = self._scope()
        decision = self.policies.classify(run.team, spec.name, args)
        return prepare(self.ledger, decision, CallInput(run, spec, args, key, call_id))

    def invoke(self, spec: ToolSpec, args: Mapping[str, Any], *, key: str | None = None,
               call_id: str | None = None) -> Any:
        """Run one guarded call synchronously; returns the tool's result or raises a typed outcome."""
        if spec.is_async:
            raise GuardUsageError(f"{spec.name} is async: call it with `await`")
        p = self._prepare(spec, args, key, call_id)
        while p.offer.kind == "awaiting":
            self._settled(p, self._waiter.wait(p.offer.call_id, p.offer.approval_id or "",
                                               p.offer.expires_at or 0.0, self._wait_budget(p)))
            p = self._prepare(spec, args, key, call_id)
        if (done := self._short_circuit(p)) is not None:
            return done[0]
        scope = self._enter_call(p)
        token = CALL_VAR.set(scope)
        try:
            result, attempts = run_sync(spec.fn, args, p.decision.retry, self._on_retry(p), self._get_pool)
        except BaseException as exc:
            err = self._failed(p, exc, scope)
            if err is exc:
                raise
            raise err from exc
        finally:
            CALL_VAR.reset(token)
        return self._completed(p, result, scope, attempts)

    async def ainvoke(self, spec: ToolSpec, args: Mapping[str, Any], *, key: str | None = None,
                      call_id: str | None = None) -> Any:
        """Run one guarded call in the event loop (sync tools run inline)."""
        p = self._prepare(spec, args, key, call_id)
        while p.offer.kind == "awaiting":
            self._settled(p, await self._waiter.await_(p.offer.call_id, p.offer.approval_id or "",
                                                       p.offer.expires_at or 0.0, self._wait_budget(p)))
            p = self._prepare(spec, args, key, call_id)
        if (done := self._short_circuit(p)) is not None:
            return done[0]
        scope = self._enter_call(p)
        token = CALL_VAR.set(scope)
        try:
            if spec.is_async:
                result, attempts = await run_async(spec.fn, args, p.decision.retry, self._on_retry(p))
            else:
                result, attempts = run_sync(spec.fn, args, p.decision.retry, self._on_retry(p), self._get_pool)
        except BaseException as exc:
            err = self._failed(p, exc, scope)
            if err is exc:
                raise
            raise err from exc
        finally:
            CALL_VAR.reset(token)
        return self._completed(p, result, scope, attempts)

    # -- steps shared by both drivers ---------------------------------------------------------------------

    def _wait_budget(self, p: Prepared) -> float:
        """Seconds to block for a decision; in defer mode the agent is told at once instead."""
        if self.approval == "defer":
            self.log.warning("call waits for approval; run deferred", run_id=p.request.run_id,
                             call_id=p.offer.call_id, tool=p.request.tool, approval_id=p.offer.approval_id)
            raise ApprovalPending(
                f"{p.request.tool} waits for approval {p.offer.approval_id}; make the same call again in "
                f"run {p.request.run_id} to resume", run_id=p.request.run_id, call_id=p.offer.call_id,
                tool=p.request.tool, approval_id=p.offer.approval_id, expires_at=p.offer.expires_at)
        self.log.warning("call waits for approval", run_id=p.request.run_id, call_id=p.offer.call_id,
                         tool=p.request.tool, approval_id=p.offer.approval_id,
                         roles=list(p.request.approval_roles))
        return self.approval_timeout

    def _settled(self, p: Prepared, state: str | None) -> None:
        """After a wait: return to re-offer when approved; raise the typed outcome otherwise."""
        if state == CallState.APPROVED:
            self.log.info("call approved", call_id=p.offer.call_id, tool=p.request.tool)
            return
        if state is None:
            raise ApprovalTimeout(
                f"{p.request.tool}: no decision within {self.approval_timeout:g}s; approval "
                f"{p.offer.approval_id} still stands, call again to keep waiting", run_id=p.request.run_id,
                call_id=p.offer.call_id, tool=p.request.tool, state=CallState.AWAITING_APPROVAL,
                approval_id=p.offer.approval_id)
        approval = self.ledger.approval_for_call(p.offer.call_id)
        reason = (approval.reason if approval is not None else None) or state
        err = decision_outcome(p, state, reason)
        self.log.warning("call " + state, call_id=p.offer.call_id, tool=p.request.tool, reason=reason)
        raise err

    def _short_circuit(self, p: Prepared) -> tuple[Any] | None:
        """A call that runs nothing: a recorded result (deduplicated) or a refusal."""
        if p.offer.kind == "completed" and p.offer.record is not None:
            self.log.info("call deduplicated: returning the recorded result", call_id=p.offer.call_id,
                          tool=p.request.tool)
            return (p.offer.record.result,)
        if p.offer.kind == "denied":
            err = decision_outcome(p, CallState.DENIED, p.offer.reason)
            self.log.warning("call denied", call_id=p.offer.call_id, tool=p.request.tool, reason=p.offer.reason)
            raise err
        return None

    def _enter_call(self, p: Prepared) -> CallScope:
        record = p.offer.record
        ids = record.external_id_map if record is not None else {}
        return CallScope(self.ledger, p.request.run_id, p.offer.call_id, p.request.tool, p.request.actor,
                         p.request.idempotency_key, ids)

    def _on_retry(self, p: Prepared) -> Callable[[int, BaseException], None]:
        def on_retry(attempt: int, exc: BaseException) -> None:
            error = error_text(p, exc)
            self.ledger.record_attempt(p.request.run_id, p.offer.call_id, attempt, error, p.request.actor)
            self.log.warning("attempt failed; retrying", call_id=p.offer.call_id, tool=p.request.tool,
                             attempt=attempt, error=error)
        return on_retry

    def _failed(self, p: Prepared, exc: BaseException, scope: CallScope) -> BaseException:
        attempts = max(self._attempts_so_far(p), 1)
        in_doubt = isinstance(exc, AttemptTimeout) or not isinstance(exc, Exception)
        err = record_failure(self.ledger, p, exc, scope.external_ids, attempts, in_doubt=in_doubt)
        self.log.error("call " + str(err.fields["state"]), call_id=p.offer.call_id, tool=p.request.tool,
                       error=err.fields["error"])
        # An interruption (KeyboardInterrupt, cancellation) keeps propagating as itself, now recorded.
        return err if isinstance(exc, Exception) else exc

    def _attempts_so_far(self, p: Prepared) -> int:
        call = self.ledger.get_call(p.offer.call_id)
        return (call.attempts + 1) if call is not None else 1

    def _completed(self, p: Prepared, result: Any, scope: CallScope, attempts: int) -> Any:
        record_success(self.ledger, p, result, scope.external_ids, attempts)
        self.log.info("call completed", call_id=p.offer.call_id, tool=p.request.tool,
                      side_effect=p.request.side_effect)
        return result

    def _get_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="guard-tool")
        return self._pool
