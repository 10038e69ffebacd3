"""What Guard adds to one Pydantic AI tool call: `python -m tests.adapters.pydantic_ai_overhead [calls]`.

One agent run makes `calls` tool calls (a scripted `FunctionModel`, one call a turn, new arguments each time,
so nothing is deduplicated) of an `idempotent` write tool. The same tool call is timed at the outermost toolset
with and without Guard in between (`ToolGuard.wrap`); the difference of the medians is Guard's overhead per
call: classify, `offered` + `started` in one commit, the tool, `completed` in another, on a SQLite file ledger.
For scale, the same tool as a plain guarded function (`guard.tool`, no framework) is timed in the same rounds:
what is left above it is the adapter's own share. The figures move with the machine's load (SQLite commits).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "adapters"))

from guard_pydantic_ai import ToolGuard  # after the path line above
from guard_pydantic_ai.testing import scripted_model, tool_call, tool_calls
from pydantic_ai import Agent, RunContext
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool
from pydantic_ai.usage import UsageLimits

from guard import Guard
from guard.ledger import upgrade

POLICY = "team: bench\nrules:\n  - {name: upsert, tools: [upsert], class: idempotent}\n"


@dataclass
class Timed(WrapperToolset[Any]):
    """Times every call of the toolset it wraps, in seconds."""

    seconds: list[float] = field(default_factory=list[float])

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        start = time.perf_counter()
        try:
            return await self.wrapped.call_tool(name, tool_args, ctx, tool)
        finally:
            self.seconds.append(time.perf_counter() - start)


def upsert(key: str, value: int) -> dict[str, Any]:
    """Write a value under a key."""
    return {"key": key, "value": value}


def _timed_run(toolset: AbstractToolset[Any], calls: int) -> list[float]:
    script = [tool_calls(tool_call("upsert", {"key": f"k{i}", "value": i}, f"call_{i}")) for i in range(calls)]
    timed = Timed(toolset)
    Agent(scripted_model(script), toolsets=[timed]).run_sync("go", usage_limits=UsageLimits(request_limit=calls + 1))
    return timed.seconds[calls // 10 :]  # the first tenth warms caches and connections up


def _timed_plain(guard: Guard, calls: int) -> list[float]:
    tool = guard.tool(upsert, name="upsert")
    seconds: list[float] = []
    for i in range(calls):
        start = time.perf_counter()
        tool(key=f"p{i}", value=i)
        seconds.append(time.perf_counter() - start)
    return seconds[calls // 10 :]


def main(calls: int = 300, rounds: int = 3) -> None:
    folder = Path(tempfile.mkdtemp(prefix="guard-pai-overhead-"))
    (folder / "policies").mkdir()
    (folder / "policies" / "bench.yaml").write_text(POLICY)
    url = f"sqlite:///{folder / 'guard.db'}"
    upgrade(url)
    plain: list[float] = []
    guarded: list[float] = []
    floor: list[float] = []
    per_round = max(calls // rounds, 10)
    with Guard(policies=folder / "policies", db=url, log_level="error") as guard:
        # Rounds alternate, so a change in the machine's load falls on both sides alike.
        for r in range(rounds):
            plain += _timed_run(FunctionToolset([upsert]), per_round)
            with guard.run("bench", source_event_id=f"overhead-{r}"):
                guarded += _timed_run(ToolGuard(guard, team="bench").wrap(FunctionToolset([upsert])), per_round)
            assert len(guard.ledger.calls_of(f"bench:overhead-{r}")) == per_round  # every call was recorded
            with guard.run("bench", source_event_id=f"floor-{r}"):
                floor += _timed_plain(guard, per_round)
    p50_plain, p50_guarded = statistics.median(plain), statistics.median(guarded)
    print(f"Pydantic AI tool call, p50 of {len(plain)} calls each way (SQLite ledger file, {rounds} rounds):")
    print(f"  without Guard  {p50_plain * 1000:.3f} ms")
    print(f"  with Guard     {p50_guarded * 1000:.3f} ms")
    print(f"  Guard adds     {(p50_guarded - p50_plain) * 1000:.3f} ms per call")
    print(f"  (Guard's call path alone, a guarded plain function: {statistics.median(floor) * 1000:.3f} ms)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
