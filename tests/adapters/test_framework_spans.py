"""Guard's `execute_tool` span inside an agent framework's own trace: Pydantic AI, instrumented with OpenTelemetry
(its `Instrumentation` capability, what `instrument=True` turns on), runs a guarded tool for a scripted model; the
OpenTelemetry SDK's in-memory exporter receives both the framework's spans and Guard's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from guard_pydantic_ai import ToolGuard
from guard_pydantic_ai.testing import scripted_model, tool_call, tool_calls
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pai_world import NAMES, Funnel
from pydantic_ai import Agent
from pydantic_ai.models.instrumented import InstrumentationSettings

from guard import Guard

PROMPT = "a new lead signed up: ann@acme.io"


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
def traced_guard(policy_dir: Path, ledger_url: str, provider: TracerProvider) -> Iterator[Guard]:
    with Guard(policies=policy_dir, db=ledger_url, log_level="error", tracer_provider=provider) as guard:
        yield guard


@pytest.fixture(params=["sync", "async"])
def drive(request: pytest.FixtureRequest) -> Iterator[Callable[[Agent[None, str]], str]]:
    """Run the agent with `run_sync` (on a loop of this test's own, closed after it) or `run` under asyncio."""
    if request.param == "async":
        yield lambda agent: asyncio.run(agent.run(PROMPT)).output
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield lambda agent: agent.run_sync(PROMPT).output
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _parent_of(span: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    [parent] = [s for s in spans if s.context is not None and s.context.span_id == span.parent.span_id]
    return parent


def test_guards_span_is_a_child_of_pydantic_ais_own_tool_span_in_the_agents_trace(
    traced_guard: Guard,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    drive: Callable[[Agent[None, str]], str],
) -> None:
    """The guarded call's `execute_tool crm.upsert_contact` span has Pydantic AI's `execute_tool upsert_contact`
    span as its parent, in the trace of the framework's agent run span."""
    world = Funnel()
    tools = ToolGuard(traced_guard, team="funnel", names=NAMES)
    agent = Agent(
        scripted_model([tool_calls(tool_call("upsert_contact", {"email": "ann@acme.io", "name": "Ann"}, "call_1"))]),
        toolsets=[world.toolset()],
        capabilities=[tools.capability()],
    )
    agent.instrument = InstrumentationSettings(tracer_provider=provider)
    with traced_guard.run("funnel", source_event_id="lead-otel") as run:
        assert drive(agent) == "done"
    assert world.upserts == 1
    spans = exporter.get_finished_spans()

    [ours] = [s for s in spans if s.name == "execute_tool crm.upsert_contact"]
    framework_tool = _parent_of(ours, spans)
    assert framework_tool.name == "execute_tool upsert_contact"
    assert framework_tool.instrumentation_scope is not None
    assert framework_tool.instrumentation_scope.name.startswith("pydantic-ai")
    assert framework_tool.attributes is not None and framework_tool.attributes["gen_ai.tool.call.id"] == "call_1"

    agent_run = framework_tool
    while agent_run.parent is not None:
        agent_run = _parent_of(agent_run, spans)
    assert agent_run.name.startswith("invoke_agent")
    assert ours.context is not None and agent_run.context is not None
    assert ours.context.trace_id == framework_tool.context.trace_id == agent_run.context.trace_id  # pyright: ignore[reportOptionalMemberAccess]
    assert ours.attributes is not None
    assert ours.attributes["guard.run_id"] == run.run_id
    assert ours.attributes["gen_ai.tool.call.id"] == "funnel:lead-otel/call_1"
