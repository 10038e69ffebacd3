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

import dataclasses
import os
import socket
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, overload

from guard.canonical import MAX_BYTES, MAX_DEPTH
from guard.errors import GuardUsageError
from guard.ledger import Ledger, PoolLimits, new_id, resolve_url
from guard.logs import log_format as log_format_of
from guard.logs import make_logger
from guard.policy import PolicySet
from guard.runtime import driver
from guard.runtime.arguments import ArgumentRules, fingerprint
from guard.runtime.callpath import CallPath, Durability, WaitMode
from guard.runtime.context import RunScope
from guard.runtime.doors import LedgerDoors
from guard.runtime.hooks import ToolHooks, ToolSpec
from guard.runtime.keys import SecretKey
from guard.runtime.leases import Heartbeat
from guard.runtime.recovery import RecoveryReport, recover
from guard.runtime.runs import RunHandle
from guard.runtime.tools import GuardedTool, Toolbox
from guard.runtime.tracing import tracing_for
from guard.runtime.waiting import Waiter

__all__ = ["Guard"]


class Guard(LedgerDoors):
    """Guards tool calls for the teams in a policy directory, recording them in one ledger.

    Args:
        policies: a directory of `<team>.yaml` files (or a loaded PolicySet). A broken file denies that
            team's calls; it never allows them.
        db: ledger URL or SQLite path; default `GUARD_DATABASE_URL`, else `sqlite:///guard.db`.
        actor: who asks, recorded on every call (a reviewer may never approve their own call).
        approval: `block` waits for a decision up to `approval_timeout` seconds (then ApprovalTimeout);
            `defer` raises ApprovalPending at once and the run resumes when the same call is made again.
        log_level: `debug`, `info`, `warning` or `error`; logs go to stderr with run and call ids.
        log_format: `console` (for people) or `json` (one object per line, same keys, for log shippers);
            default `GUARD_LOG_FORMAT`, else `console`. Secrets are redacted in both.
        worker_id: this worker's name on the leases of the calls it runs (default: host, pid and a nonce).
        lease_ttl: seconds a started call stays this worker's without a heartbeat; `recover()` in another
            worker takes over calls whose lease ran out.
        recover_on_start: when this worker opens its first run (its tools are defined by then), it first
            recovers what dead workers left behind: calls whose lease ran out, calls in doubt, cut-short sagas.
        durability: `by_class` (default): every commit waits for the disk, except the `completed` of a
            repeat-safe call (read, idempotent). That one is on disk before any later commit returns, and a
            process that dies never loses it; only a power cut in between does, and then recovery finds the
            call `started` and runs it again with the same key. `always`: that commit waits too (one more
            disk flush per repeat-safe call).
        secret_key: the key of the argument hash of calls whose arguments hold secrets (never stored in the
            ledger; see `guard.runtime.keys`). Default: `GUARD_SECRET_KEY`, `GUARD_SECRET_KEY_FILE`, else a key
            file made once beside a SQLite ledger. Every worker of one ledger needs the same key.
        max_arg_depth: lists and objects nested deeper than this in a call's arguments (the arguments object
            is level 1) deny the call, recorded with a placeholder for the arguments (`ArgumentsRefused`).
        max_arg_bytes: the same for arguments larger than this as canonical JSON (default 1 MiB).
        db_pool_size: PostgreSQL: connections this process keeps open to the ledger's server (default
            `GUARD_DB_POOL_SIZE`, else 10); `db_pool_overflow` more are opened under load (`GUARD_DB_POOL_OVERFLOW`,
            else 10) and a thread that finds them all in use waits `db_pool_timeout` seconds
            (`GUARD_DB_POOL_TIMEOUT`, else 30), then its call is refused with `LedgerBusy`. See guard.ledger.pool.
        listen_url: PostgreSQL: where this worker's one LISTEN connection goes, to hear of decisions made in
            other processes (default `GUARD_LISTEN_URL`, else `db`). It must reach the server itself or a
            session-mode pooler: PgBouncer in transaction mode cannot LISTEN.
        tracer_provider: an OpenTelemetry TracerProvider for this Guard's `execute_tool` spans (default: the
            global one); needs `guard-middleware[otel]`. Without the API nothing is traced
            (see `guard.runtime.tracing`).
        trace_content: put each call's arguments and result on its span, redacted as in the ledger (opt-in;
            default `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`).

    Failure modes: every refused or failed call raises a subclass of `CallOutcomeError`, recorded first.

    `Guard` is the facade: it builds the `CallPath` (`path`) its tools, runs, recovery and operators run on, and
    holds the tools by name. No step of the call path calls back into it. What callers may touch of the ledger
    are its doors (`guard.runtime.doors.LedgerDoors`: `call_record`, `calls_of`, `approvals`, `decide`, ...) and
    `ledger`, typed as the ledger's read port: nothing is written through it.
    """

    def __init__(
        self,
        *,
        policies: str | Path | PolicySet = "policies",
        db: str | None = None,
        actor: str = "agent",
        approval: WaitMode = "block",
        approval_timeout: float = 300.0,
        log_level: str = "info",
        log_format: str | None = None,
        worker_id: str | None = None,
        lease_ttl: float = 30.0,
        recover_on_start: bool = True,
        durability: Durability = "by_class",
        secret_key: bytes | str | None = None,
        max_arg_depth: int = MAX_DEPTH,
        max_arg_bytes: int = MAX_BYTES,
        listen_url: str | None = None,
        db_pool_size: int | None = None,
        db_pool_overflow: int | None = None,
        db_pool_timeout: float | None = None,
        tracer_provider: Any = None,
        trace_content: bool | None = None,
    ) -> None:
        if approval not in ("block", "defer"):
            raise GuardUsageError(f"approval must be 'block' or 'defer', not {approval!r}")
        if durability not in ("by_class", "always"):
            raise GuardUsageError(f"durability must be 'by_class' or 'always', not {durability!r}")
        if max_arg_depth < 1 or max_arg_bytes < 2:
            raise GuardUsageError("max_arg_depth must be at least 1 and max_arg_bytes at least 2")
        loaded = policies if isinstance(policies, PolicySet) else PolicySet.load_dir(policies)
        url = resolve_url(db)
        pool = PoolLimits.resolve(db_pool_size, db_pool_overflow, db_pool_timeout)
        self._ledger = Ledger(url, listen_url=listen_url, pool=pool)
        self.arguments = ArgumentRules(SecretKey(url, secret_key), max_arg_depth, max_arg_bytes)
        self.actor = actor
        self.approval = approval
        self.approval_timeout = approval_timeout
        self.durability = durability
        self.tracing = tracing_for(tracer_provider, trace_content)
        self.log = make_logger(log_level, json=log_format_of(log_format) == "json")
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id('w')[-6:]}"
        self.lease_ttl = lease_ttl
        self.heartbeat = Heartbeat(self._ledger, lease_ttl, self.log)
        self._pool: ThreadPoolExecutor | None = None
        specs: dict[str, ToolSpec] = {}
        self.path = CallPath(
            ledger=self._ledger,
            policies=loaded,
            arguments=self.arguments,
            log=self.log,
            actor=actor,
            worker_id=self.worker_id,
            lease_ttl=lease_ttl,
            approval=approval,
            approval_timeout=approval_timeout,
            durability=durability,
            heartbeat=self.heartbeat,
            waiter=Waiter(self._ledger),
            tracing=self.tracing,
            tools=specs,
            pool=self._tool_pool,
        )
        self._toolbox = Toolbox(self.path, specs)
        self._recover_pending = recover_on_start
        for team, err in self.policies.errors.items():
            self.log.error("policy invalid: every call of this team is denied", team=team, error=str(err))

    def close(self) -> None:
        """Shut down in order: stop the heartbeat and wait for it, stop the timeout worker threads from taking
        more work, then close the ledger's connections. A tool thread still running past its timeout cannot be
        stopped: the connection it writes on is closed when it gives it back (`Connections.close`)."""
        self.heartbeat.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._ledger.close()

    @property
    def policies(self) -> PolicySet:
        """The teams' policies every call is classified by."""
        return self.path.policies

    @policies.setter
    def policies(self, policies: PolicySet) -> None:
        self._repath(policies=policies)

    @property
    def waiter(self) -> Waiter:
        """How this Guard waits for decisions (and hears of them from other processes)."""
        return self.path.waiter

    @waiter.setter
    def waiter(self, waiter: Waiter) -> None:
        self._repath(waiter=waiter)

    def _repath(self, **changes: Any) -> None:
        """Replace parts of the (frozen) call path; every tool runs on the new one from its next call."""
        self.path = dataclasses.replace(self.path, **changes)
        self._toolbox.repoint(self.path)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- wrapping -----------------------------------------------------------------------------------------

    @overload
    def tool(
        self,
        fn: Callable[..., Any],
        /,
        *,
        name: str | None = None,
        external_ids: Mapping[str, str] | None = None,
        key: Callable[[Mapping[str, Any]], str] | None = None,
        label: str | None = None,
    ) -> GuardedTool: ...
    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        external_ids: Mapping[str, str] | None = None,
        key: Callable[[Mapping[str, Any]], str] | None = None,
        label: str | None = None,
    ) -> Callable[[Callable[..., Any]], GuardedTool]: ...

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        external_ids: Mapping[str, str] | None = None,
        key: Callable[[Mapping[str, Any]], str] | None = None,
        label: str | None = None,
    ) -> Any:
        """Wrap a plain function (sync or async) as a guarded tool. Use as `guard.tool(fn)` or a decorator.

        Args:
            name: the tool's name in the policy (default: the function's `__name__`).
            external_ids: result fields holding ids in other systems, e.g. `{"invoice": "invoice_id"}`.
            key: builds the idempotency key from the arguments (default: run id + tool + argument hash).
            label: how an operator-facing run state names this tool's effect (default from its name:
                `billing.create_invoice` -> `invoice_created`).

        Declare what undoes or checks it with the tool's decorators: `.compensation(name=...)`,
        `.reconcile`, `.verify`, `.handoff(role)`. Recovery and operators find tools by name in this Guard.
        """

        def wrap(f: Callable[..., Any]) -> GuardedTool:
            return self._toolbox.wrap(f, name=name, external_ids=external_ids, key=key, label=label)

        return wrap(fn) if fn is not None else wrap

    def run(
        self,
        team: str,
        *,
        run_id: str | None = None,
        subject: str | None = None,
        source_event_id: str | None = None,
        keep_open: bool = False,
        uses: Iterable[str] = (),
    ) -> RunHandle:
        """A run: the calls of one business event, under one run id (`with` or `async with`).

        With `source_event_id` and no `run_id`, the run id is `<team>:<source_event_id>`, so the same event
        delivered twice resumes the same run instead of acting twice. An existing run id resumes that run.
        `keep_open=True`: a clean exit leaves the run running, for the next session of the same run.
        `uses`: the tools the run will call (names); while one of them is paused, a new run does not open
        (ToolPaused), as a paused team's does not (TeamPaused).
        """
        return RunHandle(
            self.path,
            before_open=self.recover_on_start,
            team=team,
            run_id=run_id,
            subject=subject,
            source_event_id=source_event_id,
            keep_open=keep_open,
            uses=tuple(uses),
        )

    def args_hash(self, team: str, tool: str, args: Mapping[str, Any]) -> str:
        """The argument hash this Guard records for `tool` called with `args` in `team` (keyed when the
        arguments hold secrets): what adapters compare with a recorded call's `args_hash`.

        Raises:
            TypeError: the arguments have no exact hash (over a limit, or not exact JSON); a call with them is
                refused.
            SecretKeyMissing: they hold secrets and no key can be had.
        """
        secret_fields = self.policies.classify(team, tool, args).secret_fields
        fp = fingerprint(args, secret_fields, self.arguments, tool)
        if fp.refusal is not None:
            raise TypeError(fp.refusal)
        return fp.digest

    def invoke_in(
        self,
        run: RunScope,
        spec: ToolSpec,
        args: Mapping[str, Any],
        *,
        key: str | None = None,
        call_id: str | None = None,
        compensates: str | None = None,
    ) -> Any:
        """One guarded call in an explicit run, for operators acting outside the agent's `with` block (an incident's
        repairs); see `guard.runtime.driver.invoke_in`."""
        return driver.invoke_in(self.path, run, spec, args, key=key, call_id=call_id, compensates=compensates)

    def _tool_pool(self) -> ThreadPoolExecutor:
        """Worker threads for sync tools with a per-attempt timeout (created on first use)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="guard-tool")
        return self._pool

    # -- what recovery, sagas and operators look up -------------------------------------------------------

    def tool_named(self, name: str) -> GuardedTool | None:
        """The tool registered under `name` in this Guard (its compensations included), or None."""
        return self._toolbox.named(name)

    def hooks_of(self, name: str) -> ToolHooks | None:
        return self.path.hooks_of(name)

    def label_of(self, name: str) -> str | None:
        return self.path.label_of(name)

    def recover(self, *, stale_after: float | None = None, dead_workers: Collection[str] = ()) -> RecoveryReport:
        """Resolve what dead workers left behind; see `guard.runtime.recovery.recover`."""
        return recover(self.path, stale_after=stale_after, dead_workers=dead_workers)

    def recover_on_start(self) -> None:
        """Once per worker, before its first run: recover what expired leases left behind."""
        if not self._recover_pending:
            return
        self._recover_pending = False
        report = self.recover()
        if report.claimed or report.to_review or report.compensations:
            self.log.warning(
                "recovered what a dead worker left",
                claimed=report.claimed,
                retried=report.retried,
                reconciled=report.reconciled,
                to_review=report.to_review,
                compensations=report.compensations,
            )
        for worker in sorted({h.worker or "?" for h in report.held}):
            held = [h for h in report.held if (h.worker or "?") == worker]
            self.log.info(
                "calls held by another worker's live lease: left alone until it runs out",
                worker=worker,
                calls=[h.call_id for h in held],
                lease_ends_in=round(max((h.until or 0.0) for h in held) - time.time(), 1),
                then="guard recover --app MODULE:GUARD",
                now_if_dead=f"guard recover --app MODULE:GUARD --dead-worker {worker}",
            )
