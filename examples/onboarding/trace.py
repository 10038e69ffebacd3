"""The onboarding demo's trace as text: `.venv/bin/python examples/onboarding/trace.py` (from the repo root).

Runs the demo (`demo.py`, its own output hidden) with the OpenTelemetry SDK's global tracer provider and an
in-memory exporter (needs `opentelemetry-sdk`, in the dev extra), then prints each trace as a tree: span names
with their key attributes, and each call span's ledger transitions (its events).
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections import defaultdict
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.onboarding import demo  # noqa: E402

SHOWN = (
    "guard.side_effect",
    "guard.verdict",
    "guard.rule",
    "guard.call.state",
    "guard.deduplicated",
    "guard.compensates",
    "guard.attempt",
    "guard.reconcile.answer",
    "error.type",
)


def _line(span: ReadableSpan, depth: int) -> str:
    attrs = dict(span.attributes or {})
    facts = " ".join(f"{k.removeprefix('guard.')}={attrs[k]}" for k in SHOWN if k in attrs)
    ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    line = f"{'  ' * depth}{span.name} [{ms:.1f} ms] {facts}".rstrip()
    if span.name.startswith("execute_tool") and span.events:
        line += "\n" + "  " * (depth + 2) + "events: " + ", ".join(e.name for e in span.events)
    return line


def render(spans: tuple[ReadableSpan, ...]) -> str:
    """Every trace as an indented tree, in start order."""
    children: defaultdict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        children[span.parent.span_id if span.parent is not None else None].append(span)
    out: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        out.append(_line(span, depth))
        if span.context is not None:
            for child in children[span.context.span_id]:
                walk(child, depth + 1)

    for root in children[None]:
        out.append(f"trace {root.context.trace_id:032x}" if root.context is not None else "trace ?")
        walk(root, 1)
    return "\n".join(out)


def main() -> int:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    hidden = io.StringIO()
    with contextlib.redirect_stdout(hidden), contextlib.redirect_stderr(hidden):
        code = demo.main()
    print(render(exporter.get_finished_spans()))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
