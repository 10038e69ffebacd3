"""Guard for the OpenAI Agents SDK: every function tool call of an `Agent` goes Guard's guarded path.

```python
from agents import Agent, Runner
from guard import Guard
from guard_openai_agents import GuardedTools, apply_ledger_decisions

guard = Guard(policies="policies", db="sqlite:///guard.db", approval="defer")
guarded = GuardedTools(guard, team="bookings", names={"charge_card": "payments.charge_card"})
agent = Agent(name="booker", tools=guarded.wrap([reserve_slot, charge_card]))
async with guard.run("bookings", source_event_id="booking-42"):
    result = await Runner.run(agent, "book slot s1")
    while result.interruptions:          # a call waits for a reviewer; later, the same run again:
        state = result.to_state()
        if not apply_ledger_decisions(guard, state).settled:
            break                          # nobody decided yet: keep the state, resume later
        result = await Runner.run(agent, state)
```

A refused or failed call reaches the model as the tool's output `[guard] <reason>`, recorded in Guard's
ledger first; the typed outcome is in the output item's `custom_data["guard"]`.
"""

from __future__ import annotations

try:
    import agents  # noqa: F401  # pyright: ignore[reportUnusedImport]  # imported only to fail early with the install command
except ImportError as exc:
    raise ImportError(
        "guard_openai_agents needs the OpenAI Agents SDK: pip install 'guard-middleware[openai-agents]'"
    ) from exc

from .approvals import LedgerDecisions, apply_ledger_decisions
from .bridge import ToolBridge
from .tools import GuardedTools, guard_call_id

__all__ = ["GuardedTools", "LedgerDecisions", "ToolBridge", "apply_ledger_decisions", "guard_call_id"]
