"""OpenTelemetry spans for guarded calls, following the GenAI semantic conventions for tool execution; nothing at
all when the OpenTelemetry API is not installed (`pip install guard-middleware[otel]`).

One guarded call is one span `execute_tool {tool}` (kind INTERNAL), a child of whatever span is current when the
agent calls the tool (the framework's own). Its attributes:

- `gen_ai.operation.name` (`execute_tool`), `gen_ai.tool.name`, `gen_ai.tool.type` (`function`),
  `gen_ai.tool.call.id` (Guard's call id, the ledger's key), `error.type` when the call did not succeed (the
  outcome's class: `CallFailed`, `CallRejected`, ...; a deferred wait, `ApprovalPending`, is no error);
- only with `Guard(trace_content=True)` (or `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`):
  `gen_ai.tool.call.arguments` and `gen_ai.tool.call.result`, exactly as the ledger stores them (secret fields
  redacted, the call's secret values scrubbed from the result);
- Guard's facts under `guard.*`: `guard.side_effect`, `guard.verdict`, `guard.rule`, `guard.policy_version`,
  `guard.run_id`, `guard.team`, `guard.call.state` (the state the ledger holds when the span ends),
  `guard.approval_id`, `guard.deduplicated`, `guard.compensates` (on a compensation's span).

Children: `guard.approval_wait` (one blocking wait for a decision, with the state it ended in), `guard.attempt`
(each run of the tool under its retry rule), `guard.reconcile` (a reconcile check and its answer), and the
`execute_tool` spans of the compensations a failed call starts. Events: the call's transitions since the span
started, as the ledger recorded them (read back when the span ends, with the ledger's timestamps and actors, a
reviewer's decision made in another process included): a call's own transitions are named for the state reached
(`offered`, `approved`, `started`, ...), others for their entity and state (`approval decision:approve`,
`external_id recorded`).

Hook points are decorators on a few functions of the call path. Without the API each decorator returns the
function itself, so the call path runs exactly as without tracing; with the API but no SDK (or a provider that
samples the call out) a call pays for one non-recording span. Tracing never fails a call: a ledger read for the
events that fails leaves the span without them.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

from guard.errors import ApprovalPending, CallOutcomeError, GuardUsageError
from guard.runtime.context import RunScope, current_run


def _load_api() -> tuple[Any, Any, Any] | None:
    """The API's context, propagate and trace modules, or None when `guard-middleware[otel]` is not installed."""
    try:
        from opentelemetry import context, propagate, trace
    except ImportError:  # pragma: no cover - the package check runs the core without the API
        return None
    return context, propagate, trace


_API = _load_api()
AVAILABLE = _API is not None
otel_context, otel_propagate, otel_trace = _API if _API is not None else cast(tuple[Any, Any, Any], (None,) * 3)

if TYPE_CHECKING:
    from guard.ledger import ReadsPort
    from guard.runtime.hooks import ToolSpec
    from guard.runtime.steps import Prepared

__all__ = [
    "AVAILABLE",
    "Tracing",
    "approval_wait",
    "attempts",
    "child",
    "on_completed",
    "on_prepared",
    "reconcile_check",
    "trace_context",
    "traced_call",
    "tracing_for",
]

P = ParamSpec("P")
R = TypeVar("R")
_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@dataclass(frozen=True, slots=True)
class Tracing:
    """A Guard's tracing settings: its tracer, and whether arguments and results go on spans (opt-in)."""

    tracer: Any  # opentelemetry.trace.Tracer
    content: bool


def tracing_for(provider: Any | None, content: bool | None) -> Tracing | None:
    """The tracing of a Guard: spans from `provider` (default: the global tracer provider, looked up when each
    span starts), or None without the OpenTelemetry API.

    Raises:
        GuardUsageError: a provider was given but the API is not installed.
    """
    if not AVAILABLE:
        if provider is not None:
            raise GuardUsageError("tracer_provider needs the OpenTelemetry API: pip install 'guard-middleware[otel]'")
        return None
    if content is None:
        content = os.environ.get(_CONTENT_ENV, "").strip().lower() == "true"
    source: Any = provider if provider is not None else otel_trace
    return Tracing(source.get_tracer("guard"), content)


def trace_context() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, and `tracestate` when set), for a request to
    another process (the MCP proxy puts it in the forwarded request's `_meta`); empty without the API or a span."""
    carrier: dict[str, str] = {}
    if AVAILABLE:
        otel_propagate.inject(carrier)
    return carrier


class Traced(Protocol):
    """What a traced call reads of the path it runs on (a `CallPath`): its tracing and its ledger."""

    @property
    def tracing(self) -> Tracing | None: ...
    @property
    def ledger(self) -> ReadsPort: ...


class _Call:
    """The span of one guarded call while it runs (the current one is in `_CURRENT`)."""

    __slots__ = ("attempts", "guard", "prepared", "since", "span")

    def __init__(self, guard: Traced, span: Any, since: int) -> None:
        self.guard = guard
        self.span = span
        self.since = since  # the run's newest event id when the span started: its events come after it
        self.prepared: Prepared | None = None
        self.attempts = 0  # runs of the tool so far, across a retry after a settled failure

    def offered(self, p: Prepared) -> None:
        self.prepared = p
        req, offer = p.request, p.offer
        attrs: dict[str, Any] = {
            "gen_ai.tool.call.id": offer.call_id,
            "guard.run_id": req.run_id,
            "guard.team": req.team,
            "guard.verdict": req.verdict,
            "guard.policy_version": req.policy_version,
            "guard.deduplicated": offer.kind == "completed",
        }
        attrs |= {
            key: value
            for key, value in (
                ("guard.side_effect", req.side_effect),
                ("guard.rule", req.rule),
                ("guard.approval_id", offer.approval_id),
            )
            if value is not None
        }
        if self.guard.tracing is not None and self.guard.tracing.content:
            attrs["gen_ai.tool.call.arguments"] = req.args_json
        self.span.set_attributes(attrs)

    def result(self, p: Prepared, result: Any) -> None:
        if self.guard.tracing is not None and self.guard.tracing.content:
            from guard.runtime.steps import stored_result

            self.span.set_attribute("gen_ai.tool.call.result", stored_result(p, result))

    def finish(self, exc: BaseException | None) -> None:
        p = self.prepared
        state = None
        if p is not None:
            try:
                events = self.guard.ledger.call_events_after(p.request.run_id, p.offer.call_id, self.since)
            except Exception:  # noqa: BLE001 (tracing never fails a call: the outcome below still says what happened)
                events = []
            for e in events:
                # A call's first commit is one event naming its whole path: one span event per transition.
                moves = e.moves if e.entity == "call" else ((e.from_state, e.to_state),)
                for src, dst in moves:
                    name = dst if e.entity == "call" else f"{e.entity} {dst}"
                    self.span.add_event(
                        name,
                        {"guard.entity": e.entity, "guard.from_state": src or "", "guard.actor": e.actor},
                        timestamp=int(e.at * 1e9),
                    )
                if e.entity == "call":
                    state = e.to_state
        if isinstance(exc, CallOutcomeError):
            state = state or exc.state
        if state is None and p is not None and p.offer.record is not None:  # nothing happened to it: deduplicated
            state = p.offer.record.state
        if state is not None:
            self.span.set_attribute("guard.call.state", state)
        if exc is not None and not isinstance(exc, ApprovalPending):
            _error(self.span, exc)


_CURRENT: ContextVar[_Call | None] = ContextVar("guard_trace_call", default=None)


def _error(span: Any, exc: BaseException) -> None:
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, type(exc).__qualname__))


def _open(
    guard: Traced, run: RunScope | None, spec: ToolSpec, compensates: str | None
) -> tuple[_Call, Any, Any] | None:
    tracing = guard.tracing
    if tracing is None:
        return None
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": spec.name,
        "gen_ai.tool.type": "function",
    }
    if compensates is not None:
        attrs["guard.compensates"] = compensates
    span = tracing.tracer.start_span(f"execute_tool {spec.name}", kind=otel_trace.SpanKind.INTERNAL, attributes=attrs)
    if not span.is_recording():
        return None
    try:
        since = guard.ledger.last_event_id(run.run_id) if run is not None else 0
    except Exception:  # noqa: BLE001 (tracing never fails a call: the call path meets the ledger itself and says so)
        since = 0
    call = _Call(guard, span, since)
    return call, otel_context.attach(otel_trace.set_span_in_context(span)), _CURRENT.set(call)


def _close(opened: tuple[_Call, Any, Any], exc: BaseException | None) -> None:
    call, ctx_token, call_token = opened
    try:
        call.finish(exc)
    finally:
        _CURRENT.reset(call_token)
        otel_context.detach(ctx_token)
        call.span.end()


def traced_call(spec_at: int, run_at: int | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a driver entry `fn(path, ..., spec, ...)` (the ToolSpec at position `spec_at`, the RunScope at
    `run_at`, else the current run) so that each call is an `execute_tool` span; `compensates=` names the call a
    compensation undoes."""

    def run_of(args: tuple[Any, ...]) -> RunScope | None:
        return cast("RunScope", args[run_at]) if run_at is not None else current_run()

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if not AVAILABLE:
            return fn
        if inspect.iscoroutinefunction(fn):

            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                opened = _open(
                    cast("Traced", args[0]),
                    run_of(args),
                    cast("ToolSpec", args[spec_at]),
                    cast("str | None", kwargs.get("compensates")),
                )
                if opened is None:
                    return await fn(*args, **kwargs)  # pyright: ignore[reportGeneralTypeIssues]
                try:
                    result = await fn(*args, **kwargs)  # pyright: ignore[reportGeneralTypeIssues]
                except BaseException as exc:
                    _close(opened, exc)
                    raise
                _close(opened, None)
                return result

            return cast(Callable[P, R], functools.wraps(fn)(run_async))

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            opened = _open(
                cast("Traced", args[0]),
                run_of(args),
                cast("ToolSpec", args[spec_at]),
                cast("str | None", kwargs.get("compensates")),
            )
            if opened is None:
                return fn(*args, **kwargs)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _close(opened, exc)
                raise
            _close(opened, None)
            return result

        return functools.wraps(fn)(run)

    return decorate


def on_prepared(fn: Callable[P, Prepared]) -> Callable[P, Prepared]:
    """Decorate the step that offers a call to the ledger: the span learns the call id and the decision."""
    if not AVAILABLE:
        return fn

    def run(*args: P.args, **kwargs: P.kwargs) -> Prepared:
        p = fn(*args, **kwargs)
        call = _CURRENT.get()
        if call is not None:
            call.offered(p)
        return p

    return functools.wraps(fn)(run)


def on_completed(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate the step that records a result `fn(path, p, result, ...)`: the result goes on the span (opt-in)."""
    if not AVAILABLE:
        return fn

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        out = fn(*args, **kwargs)
        call = _CURRENT.get()
        if call is not None:
            call.result(cast("Prepared", args[1]), args[2])
        return out

    return functools.wraps(fn)(run)


def child(
    name: str,
    attrs: Callable[..., Mapping[str, Any]] | None = None,
    outcome: Callable[[Any], Mapping[str, Any]] | None = None,
    *,
    keep_name: bool = True,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a step of a traced call (sync or async) so that it runs in a child span `name`, with `attrs(*args)`
    and, when it returns, `outcome(result)` as attributes; an exception sets `error.type`. Outside a traced call
    the step runs as it is. `keep_name=False` skips copying the function's name and docstring onto the wrapper (for
    a closure decorated on every call: `functools.wraps` costs more than the wrapper)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if not AVAILABLE:
            return fn

        def start(args: tuple[Any, ...]) -> Any:
            call = _CURRENT.get()
            if call is None or call.guard.tracing is None:
                return None
            return call.guard.tracing.tracer.start_as_current_span(
                name,
                kind=otel_trace.SpanKind.INTERNAL,
                attributes=dict(attrs(*args)) if attrs else None,
                record_exception=False,
                set_status_on_exception=False,
            )

        def ended(span: Any, result: Any) -> None:
            if outcome is not None:
                span.set_attributes(dict(outcome(result)))

        if inspect.iscoroutinefunction(fn):

            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                manager = start(args)
                if manager is None:
                    return await fn(*args, **kwargs)  # pyright: ignore[reportGeneralTypeIssues]
                with manager as span:
                    try:
                        result = await fn(*args, **kwargs)  # pyright: ignore[reportGeneralTypeIssues]
                    except BaseException as exc:
                        _error(span, exc)
                        raise
                    ended(span, result)
                    return result

            return cast(Callable[P, R], functools.wraps(fn)(run_async) if keep_name else run_async)

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            manager = start(args)
            if manager is None:
                return fn(*args, **kwargs)
            with manager as span:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    _error(span, exc)
                    raise
                ended(span, result)
                return result

        return functools.wraps(fn)(run) if keep_name else run

    return decorate


def _attempt_attrs(*_args: Any) -> dict[str, Any]:
    call = _CURRENT.get()
    if call is None:  # pragma: no cover - child() asks only inside a traced call
        return {}
    call.attempts += 1
    return {"guard.attempt": call.attempts}


_attempt = child("guard.attempt", _attempt_attrs, keep_name=False)


def attempts(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate the function that runs one attempt of a tool: each call is a `guard.attempt` span, numbered from 1
    (`guard.attempt`) over the whole guarded call (a retry after a settled failure counts on)."""
    return _attempt(fn)


def _wait_attrs(_waiter: Any, call_id: str, approval_id: str, _expires_at: float, timeout: float) -> dict[str, Any]:
    return {"gen_ai.tool.call.id": call_id, "guard.approval_id": approval_id, "guard.wait.timeout_s": timeout}


def _wait_outcome(state: str | None) -> dict[str, Any]:
    return {
        "guard.call.state": state if state is not None else "awaiting_approval",
        "guard.wait.timed_out": state is None,
    }


def _reconcile_attrs(_check: Any, ctx: Any) -> dict[str, Any]:
    return {"gen_ai.tool.name": ctx.tool, "gen_ai.tool.call.id": ctx.call_id}


def _reconcile_outcome(answer: Any) -> dict[str, Any]:
    return {
        "guard.reconcile.answer": "cannot_tell"
        if answer is None
        else "found"
        if type(answer).__name__ == "Found"
        else "not_found"
    }


approval_wait = child("guard.approval_wait", _wait_attrs, _wait_outcome)
reconcile_check = child("guard.reconcile", _reconcile_attrs, _reconcile_outcome)
