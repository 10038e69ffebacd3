"""The per-call overhead guard_openai_agents adds over the same Agents SDK tool call without Guard.

    .venv/bin/python -m tests.adapters.openai_agents_overhead [calls]     (default 300 calls each way)

Each sample is one `Runner.run` of an agent whose scripted model asks for one function call (then answers), timed
end to end in one event loop; bare and guarded samples alternate so that drift hits both alike. The guarded
tool is the same `function_tool`, wrapped by `GuardedTools`, in one open run on a SQLite ledger file (so the
figure is the call path: classify, `offered`+`started` in one commit, `completed`; not opening a run). Printed:
the p50 of each and their difference, for an auto-approved read and for an idempotent write (which also gets
an idempotency key), and beside it the p50 of Guard's own call path for the same function without any
framework (`guard.tool(fn).acall_with`): the part of the overhead that is the ledger's two commits, not the
adapter. Agent set-up is not timed.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "adapters") not in sys.path:
    sys.path.insert(0, str(ROOT / "adapters"))  # adapters/ holds import packages; see adapters/README.md

from agents import Agent, FunctionTool, RunConfig, Runner, function_tool  # noqa: E402
from guard_openai_agents import GuardedTools  # noqa: E402
from guard_openai_agents.testing import ScriptedModel, calls, function_call  # noqa: E402

from guard import Guard, GuardedTool  # noqa: E402

RC = RunConfig(tracing_disabled=True)
POLICY = """\
team: bench
rules:
  - {name: lookup, tools: [enrichment.lookup], class: read}
  - {name: contact, tools: [crm.upsert_contact], class: idempotent}
"""
NAMES = {"lookup_company": "enrichment.lookup", "upsert_contact": "crm.upsert_contact"}


@function_tool
def lookup_company(domain: str) -> dict[str, Any]:
    """Look a company up by its web domain."""
    return {"domain": domain, "employees": 120}


@function_tool
def upsert_contact(email: str) -> dict[str, Any]:
    """Create or update a contact."""
    return {"contact_id": "c-" + email}


def _agents(tool: FunctionTool, wrapped: Any, arg: str, n: int, tag: str) -> list[Agent[Any]]:
    return [
        Agent(
            name="bench",
            tools=wrapped,
            model=ScriptedModel([calls(function_call(tool.name, {arg: f"x{i}@{tag}.example"}, f"call_{tag}_{i}"))]),
        )
        for i in range(n)
    ]


async def _sample(agent: Agent[Any]) -> float:
    start = time.perf_counter()
    await Runner.run(agent, "go", run_config=RC)
    return time.perf_counter() - start


async def _core(plain: GuardedTool, arg: str, i: int) -> float:
    start = time.perf_counter()
    await plain.acall_with({arg: f"x{i}@core.example"}, call_id=f"call_core_{plain.name}_{i}")
    return time.perf_counter() - start


async def measure(guard: Guard, tool: FunctionTool, arg: str, n: int, warmup: int = 20) -> tuple[float, float, float]:
    """p50 seconds: (a run with one tool call without Guard, the same with Guard, Guard's call path alone)."""
    guarded = GuardedTools(guard, team="bench", names=NAMES).wrap([tool])
    bare_agents = _agents(tool, [tool], arg, n + warmup, f"bare-{tool.name}")
    guarded_agents = _agents(tool, guarded, arg, n + warmup, f"guarded-{tool.name}")

    async def body(**args: Any) -> Any:
        return {"echo": args}

    plain = guard.tool(body, name=NAMES[tool.name])
    samples: list[tuple[float, float, float]] = []
    async with guard.run("bench", source_event_id=f"overhead-{tool.name}"):
        for i in range(n + warmup):
            sample = (await _sample(bare_agents[i]), await _sample(guarded_agents[i]), await _core(plain, arg, i))
            if i >= warmup:
                samples.append(sample)
    bare, with_guard, core = (statistics.median(column) for column in zip(*samples, strict=True))
    return bare, with_guard, core


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "bench.yaml").write_text(POLICY)
        with Guard(policies=policies, db=f"sqlite:///{tmp}/guard.db", log_level="error") as guard:
            print(f"Agents SDK Runner.run with one function call, p50 of {n} runs each (SQLite ledger file)")
            for tool, arg, what in (
                (lookup_company, "domain", "read (auto)"),
                (upsert_contact, "email", "idempotent write (auto, keyed)"),
            ):
                bare, guarded, core = await measure(guard, tool, arg, n)
                print(
                    f"  {what:<31} without Guard {bare * 1e3:6.2f} ms | with Guard {guarded * 1e3:6.2f} ms | "
                    f"overhead {(guarded - bare) * 1e3:5.2f} ms per call | Guard's call path alone "
                    f"{core * 1e3:5.2f} ms"
                )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
