"""OpenTelemetry: each guarded call is an `execute_tool` span (GenAI conventions) inside the caller's trace, with
Guard's facts under `guard.*`, children for the approval wait, each attempt, reconcile checks and compensations,
and the ledger's transitions as events. Spans go to the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from runtime_support import Agent, Driver
from test_approvals import waiting_approval

from guard import CallInDoubt, Guard, OutcomeUnknown, ReconcileContext, RollbackContext
from guard.ledger import Ledger

SHOP = """\
team: shop
secrets: [api_key]
reviewers:
  alice: [finance]
rules:
  - name: charge
    tools: [shop.charge]
    class: compensable
    approval: {roles: [finance]}
    on_failure: compensate
  - name: refund
    tools: [shop.refund]
    class: idempotent
  - name: lookup
    tools: [shop.lookup]
    class: read
  - name: restock
    tools: [shop.restock]
    class: idempotent
    on_failure: retry
"""


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    folder = tmp_path / "shop-policies"
    folder.mkdir()
    (folder / "shop.yaml").write_text(SHOP)
    return folder


def stock(sku: str) -> dict[str, Any]:
    return {"sku": sku, "stock": 3}


def give_back(charge_id: str) -> dict[str, str]:
    return {"refund": charge_id}


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[str]:
    assert parent.context is not None
    return [
        s.name
        for s in sorted(spans, key=lambda s: s.start_time or 0)
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def test_a_call_that_waits_is_approved_fails_once_and_is_compensated_is_one_span_tree(
    ledger: Ledger,
    driver: Driver,
    make_guard: Callable[..., Guard],
    shop: Path,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """The charge's span holds the approval wait, its failed attempt, the reconcile check and the execute_tool
    span of its refund; its events are the ledger's transitions, the reviewer's approval included."""
    guard = make_guard(policies=shop, approval_timeout=30, tracer_provider=provider)
    failures = [OutcomeUnknown("the card network did not answer")]

    def charge(customer_id: str, amount_cents: int) -> dict[str, Any]:
        if failures:
            raise failures.pop()
        return {"charge_id": "ch-1"}

    tool = driver.tool(guard, charge, name="shop.charge")

    @tool.reconcile
    def _unknown(ctx: ReconcileContext) -> None:
        return None  # the network cannot tell either: the charge stays in doubt

    @tool.compensation(name="shop.refund")
    def _refund(ctx: RollbackContext) -> dict[str, str]:
        return {"refund_of": ctx.call_id}

    def work() -> Any:
        with driver.run(guard, "shop") as run:
            return run.call(tool, customer_id="c-1", amount_cents=900)

    agent = Agent(work)
    agent.start()
    approval = waiting_approval(guard, agent, "shop")
    ledger.decide(
        approval.approval_id,
        reviewer="alice",
        decision="approve",
        reviewer_roles=frozenset({"finance"}),
        shown_args_hash=approval.args_hash,
    )
    agent.finish()
    assert isinstance(agent.error, CallInDoubt)

    spans = exporter.get_finished_spans()
    [root] = by_name(spans, "execute_tool shop.charge")
    attrs = dict(root.attributes or {})
    assert root.kind is SpanKind.INTERNAL and root.parent is None
    assert attrs["gen_ai.operation.name"] == "execute_tool" and attrs["gen_ai.tool.name"] == "shop.charge"
    assert attrs["gen_ai.tool.type"] == "function" and attrs["gen_ai.tool.call.id"] == approval.call_id
    assert attrs["error.type"] == "CallInDoubt"
    assert attrs["guard.side_effect"] == "compensable" and attrs["guard.verdict"] == "approve"
    assert attrs["guard.rule"] == "charge" and attrs["guard.approval_id"] == approval.approval_id
    assert attrs["guard.run_id"] == approval.run_id and attrs["guard.deduplicated"] is False
    assert attrs["guard.call.state"] == "rolled_back" and "guard.policy_version" in attrs
    assert "gen_ai.tool.call.arguments" not in attrs  # not opted in
    assert children(spans, root) == [
        "guard.approval_wait",
        "guard.attempt",
        "guard.reconcile",
        "execute_tool shop.refund",
    ]
    [wait] = by_name(spans, "guard.approval_wait")
    assert dict(wait.attributes or {})["guard.call.state"] == "approved"
    attempt = next(s for s in by_name(spans, "guard.attempt") if s.parent == root.context)
    assert dict(attempt.attributes or {})["error.type"] == "OutcomeUnknown"
    [check] = by_name(spans, "guard.reconcile")
    assert dict(check.attributes or {})["guard.reconcile.answer"] == "cannot_tell"
    [refund] = by_name(spans, "execute_tool shop.refund")
    assert dict(refund.attributes or {})["guard.compensates"] == approval.call_id
    assert "error.type" not in dict(refund.attributes or {})
    events = [(e.name, dict(e.attributes or {}).get("guard.actor")) for e in root.events]
    assert events == [
        ("offered", "agent"),
        ("awaiting_approval", "agent"),
        ("approval pending", "agent"),
        ("approval decision:approve", "alice"),
        ("approval approved", "alice"),
        ("approved", "alice"),
        ("started", "agent"),
        ("in_doubt", "agent"),
        ("rolling_back", "agent"),
        ("rolled_back", "agent"),
    ]
    assert all(s.context.trace_id == root.context.trace_id for s in spans if s.context and root.context)


def test_the_call_span_is_a_child_of_the_span_the_agent_framework_has_open(
    make_guard: Callable[..., Guard], shop: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A guarded call made inside the framework's span is its child, in the same trace."""
    guard = make_guard(policies=shop, tracer_provider=provider)
    lookup = guard.tool(stock, name="shop.lookup")
    with (
        provider.get_tracer("agent-framework").start_as_current_span("invoke_agent shopper") as outer,
        guard.run("shop"),
    ):
        lookup(sku="A-1")
    [span] = by_name(exporter.get_finished_spans(), "execute_tool shop.lookup")
    assert span.parent is not None and span.parent.span_id == outer.get_span_context().span_id
    assert span.context is not None and span.context.trace_id == outer.get_span_context().trace_id
    assert dict(span.attributes or {})["guard.call.state"] == "completed"


def test_arguments_and_results_go_on_the_span_only_when_opted_in_and_then_redacted(
    make_guard: Callable[..., Guard], shop: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """With trace_content the span holds the ledger's redacted arguments and result: the api_key never shows."""
    guard = make_guard(policies=shop, tracer_provider=provider, trace_content=True)

    def lookup(sku: str, api_key: str) -> dict[str, Any]:
        return {"sku": sku, "echo": f"used {api_key}"}

    tool = guard.tool(lookup, name="shop.lookup")
    with guard.run("shop"):
        tool(sku="A-1", api_key="sk-live-0123456789")
    [span] = by_name(exporter.get_finished_spans(), "execute_tool shop.lookup")
    attrs = dict(span.attributes or {})
    assert '"sku":"A-1"' in str(attrs["gen_ai.tool.call.arguments"]).replace(" ", "")
    assert "sk-live" not in str(attrs["gen_ai.tool.call.arguments"]) and "[REDACTED]" in str(
        attrs["gen_ai.tool.call.arguments"]
    )
    assert "sk-live" not in str(attrs["gen_ai.tool.call.result"]) and "used" in str(attrs["gen_ai.tool.call.result"])


def test_a_deduplicated_call_says_so_and_runs_no_attempt(
    make_guard: Callable[..., Guard], shop: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The same refund made twice in a run: the second span is deduplicated, completed, with no attempt span."""
    guard = make_guard(policies=shop, tracer_provider=provider)
    refund = guard.tool(give_back, name="shop.refund")
    with guard.run("shop"):
        refund(charge_id="ch-1")
        refund(charge_id="ch-1")
    spans = exporter.get_finished_spans()
    first, second = by_name(spans, "execute_tool shop.refund")
    assert dict(first.attributes or {})["guard.deduplicated"] is False
    assert dict(second.attributes or {})["guard.deduplicated"] is True
    assert dict(second.attributes or {})["guard.call.state"] == "completed"
    assert children(spans, first) == ["guard.attempt"] and children(spans, second) == []


def test_a_call_retried_after_a_clean_failure_numbers_its_attempts_on(
    make_guard: Callable[..., Guard], shop: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An idempotent call that fails once and is retried by its policy has attempts 1 (failed) and 2 (completed)."""
    guard = make_guard(policies=shop, tracer_provider=provider)
    failures = [ConnectionError("warehouse busy")]

    def restock(sku: str) -> dict[str, str]:
        if failures:
            raise failures.pop()
        return {"sku": sku}

    tool = guard.tool(restock, name="shop.restock")
    with guard.run("shop"):
        tool(sku="A-1")
    spans = exporter.get_finished_spans()
    [call] = by_name(spans, "execute_tool shop.restock")
    runs = sorted(by_name(spans, "guard.attempt"), key=lambda s: s.start_time or 0)
    attempts = [dict(s.attributes or {}) for s in runs]
    assert [(a["guard.attempt"], a.get("error.type")) for a in attempts] == [(1, "ConnectionError"), (2, None)]
    assert dict(call.attributes or {})["guard.call.state"] == "completed" and "error.type" not in dict(
        call.attributes or {}
    )
