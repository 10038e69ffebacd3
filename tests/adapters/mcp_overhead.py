"""Per-call overhead of the MCP proxy: `python -m tests.adapters.mcp_overhead [CALLS]`.

The same MCP client calls the same upstream server (the CRM test server over stdio) twice over: directly, then
through `python -m guard_mcp` (over stdio, a fresh SQLite ledger file, the `crm` test policy). Each call is a
new `upsert_contact` (an idempotent write: the proxy classifies, records `offered`/`started`, forwards,
records `completed`). Prints p50 and p95 of both and the difference of the p50s: what the proxy adds per call.
For scale it also times Guard's own path in-process (the same policy and ledger path over a no-op async tool,
no MCP): the proxy's cost is that plus one more MCP hop (client -> proxy -> server instead of client -> server).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "adapters")]

from guard_mcp import Upstream  # noqa: E402  # after the path lines above
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from mcp_world import SERVER, server_env, session, stdio_proxy, write_policy  # noqa: E402

from guard import Guard  # noqa: E402
from guard.ledger import upgrade  # noqa: E402

WARMUP = 20


def _timed(upstream: Upstream, calls: int, tag: str) -> list[float]:
    async def work(client: ClientSession) -> list[float]:
        took: list[float] = []
        for i in range(WARMUP + calls):
            args = {"email": f"{tag}-{i}@acme.io", "name": f"Lead {i}"}
            start = time.perf_counter()
            result = await client.call_tool("upsert_contact", args)
            took.append(time.perf_counter() - start)
            if result.is_error:
                raise SystemExit(f"call {i} failed: {result.content}")
        return took[WARMUP:]

    return session(upstream, work)


def _in_process(policies: Path, db: Path, calls: int) -> list[float]:
    async def upsert_contact(**_args: object) -> dict[str, str]:
        return {"contact_id": "c"}

    async def work() -> list[float]:
        with Guard(policies=policies, db=f"sqlite:///{db}", log_level="error") as guard:
            tool = guard.tool(upsert_contact)
            took: list[float] = []
            async with guard.run("crm", source_event_id="in-process"):
                for i in range(WARMUP + calls):
                    start = time.perf_counter()
                    await tool.acall_with({"email": f"inproc-{i}@acme.io", "name": f"Lead {i}"})
                    took.append(time.perf_counter() - start)
            return took[WARMUP:]

    return asyncio.run(work())


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def main(calls: int = 300) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        effects = root / "effects.jsonl"
        policies = write_policy(root / "policies")
        db = root / "guard.db"
        upgrade(f"sqlite:///{db}")
        direct = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=server_env(effects))
        proxied = stdio_proxy(policies, f"sqlite:///{db}", effects, "overhead")
        plain = _timed(direct, calls, "direct")
        guarded = _timed(proxied, calls, "proxy")
        core = _in_process(policies, db, calls)
    print(f"MCP proxy overhead, {calls} upsert_contact calls each (after {WARMUP} warm-up), stdio both ways")
    print(f"  direct to the server : p50 {_p(plain, 50):7.2f} ms   p95 {_p(plain, 95):7.2f} ms")
    print(f"  through guard_mcp    : p50 {_p(guarded, 50):7.2f} ms   p95 {_p(guarded, 95):7.2f} ms")
    print(f"  added per call (p50) : {_p(guarded, 50) - _p(plain, 50):7.2f} ms")
    print(f"  for scale, Guard's path in-process (no MCP, no-op tool): p50 {_p(core, 50):7.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
