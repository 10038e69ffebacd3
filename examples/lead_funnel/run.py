"""Lead funnel through a real LangChain agent, offline: enrich -> score -> CRM -> notify sales -> prospect email.

`create_agent` with a scripted chat model (no network, no key) and `GuardMiddleware`; the rules are
`policies/growth.yaml`. The prospect email waits for marketing: a reviewer thread approves it from the ledger.
The same event is then delivered again: nothing runs twice. Last, the per-call overhead of the adapter over
the same agent without Guard. Run from the repository root: `.venv/bin/python examples/lead_funnel/run.py`.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "adapters"), str(ROOT)]  # adapters/ holds import packages; see adapters/README.md

from guard_langchain import GuardMiddleware  # noqa: E402
from guard_langchain.testing import ScriptedChatModel, tool_call, tool_calls  # noqa: E402
from langchain.agents import create_agent  # noqa: E402  # pyright: ignore[reportUnknownVariableType]  # an overload names an unparametrised BaseCheckpointSaver
from langchain_core.messages import ToolMessage  # noqa: E402
from langchain_core.tools import BaseTool, tool  # noqa: E402

from guard import Guard  # noqa: E402

NAMES = {
    "enrich_lead": "enrichment.lookup",
    "score_lead": "scoring.score_lead",
    "upsert_lead": "crm.upsert_lead",
    "notify_sales": "slack.notify_sales",
    "send_prospect_email": "email.send_prospect",
}
LEAD = {"lead_id": "l-42", "email": "ann@acme.io", "segment": "smb", "unsubscribed": False}
EFFECTS: list[str] = []


@tool
def enrich_lead(email: str) -> dict[str, Any]:
    """Look the lead's company up."""
    return {"company": "Acme", "employees": 120}


@tool
def score_lead(lead_id: str, employees: int) -> dict[str, Any]:
    """Score the lead from 0 to 100."""
    return {"lead_id": lead_id, "score": 81}


@tool
def upsert_lead(lead_id: str, email: str, score: int) -> dict[str, Any]:
    """Create or update the lead in the CRM."""
    EFFECTS.append(f"crm upsert {lead_id}")
    return {"crm_id": "crm-" + lead_id}


@tool
def notify_sales(text: str) -> str:
    """Post to the sales channel."""
    EFFECTS.append(f"slack: {text}")
    return "posted"


@tool
def send_prospect_email(lead: dict[str, Any], template: str) -> str:
    """Email the prospect."""
    EFFECTS.append(f"email {template} to {lead['email']}")
    return "sent"


TOOLS: list[BaseTool] = [enrich_lead, score_lead, upsert_lead, notify_sales, send_prospect_email]


def script(suffix: str) -> list[Any]:
    """What a model would ask for, turn by turn (tool call ids differ per delivery, as a real model's do)."""
    return [
        tool_calls(tool_call("enrich_lead", {"email": LEAD["email"]}, f"enrich-{suffix}")),
        tool_calls(tool_call("score_lead", {"lead_id": "l-42", "employees": 120}, f"score-{suffix}")),
        tool_calls(tool_call("upsert_lead", {"lead_id": "l-42", "email": LEAD["email"], "score": 81}, f"crm-{suffix}")),
        tool_calls(
            tool_call("notify_sales", {"text": "hot lead l-42 (81)"}, f"slack-{suffix}"),
            tool_call("send_prospect_email", {"lead": LEAD, "template": "intro"}, f"email-{suffix}"),
        ),
    ]


def reviewer(guard: Guard, stop: threading.Event) -> None:
    """maria (marketing) approves the prospect email once it shows up in the ledger."""
    while not stop.is_set():
        for approval in guard.approvals(team="growth"):
            print(f"  reviewer maria sees {approval.tool} {approval.args_json} -> approve")
            guard.decide(approval.approval_id, reviewer="maria", decision="approve")  # her roles: policies/growth.yaml
            return
        stop.wait(0.01)


def deliver(guard: Guard, suffix: str) -> None:
    agent = create_agent(
        ScriptedChatModel(script=script(suffix), final="lead handled"),
        TOOLS,
        middleware=[GuardMiddleware(guard, team="growth", names=NAMES)],
    )
    stop = threading.Event()
    thread = threading.Thread(target=reviewer, args=(guard, stop), daemon=True)
    thread.start()
    with guard.run("growth", source_event_id="lead.created:l-42", subject="l-42") as run:
        out = agent.invoke({"messages": [{"role": "user", "content": "new lead ann@acme.io"}]})  # pyright: ignore[reportUnknownMemberType]  # Command[Unknown] in its overloads
    stop.set()
    for msg in out["messages"]:
        if isinstance(msg, ToolMessage):
            artifact: Any = msg.artifact
            dedup = " (recorded result, nothing ran)" if artifact and artifact["guard"].get("deduplicated") else ""
            print(f"  {msg.name:<20} {msg.status:<8} {msg.text[:60]}{dedup}")
    print(f"  run {run.run_id}: {run.record().state}")


def overhead(guard: Guard, n: int = 100) -> None:
    """Milliseconds per agent turn with one tool call, with and without the middleware (a read tool, SQLite file).

    All guarded turns share one run, so the figure is the call path alone (classify, `offered`+`started` in one
    commit, `completed`), not opening and closing a run."""

    def agents(rep: int) -> list[Any]:
        return [
            create_agent(
                ScriptedChatModel(
                    script=[tool_calls(tool_call("enrich_lead", {"email": f"x{i}@acme.io"}, f"o-{rep}-{i}"))]
                ),
                TOOLS,
                middleware=middleware,
            )
            for i in range(n)
        ]

    def timed() -> float:
        best = float("inf")
        for rep in range(3):
            batch = agents(rep)
            start = time.perf_counter()
            for agent in batch:
                agent.invoke({"messages": [{"role": "user", "content": "go"}]})
            best = min(best, (time.perf_counter() - start) / n)
        return best

    middleware: list[Any] = []
    bare = timed()
    middleware = [GuardMiddleware(guard, team="growth", names=NAMES)]
    with guard.run("growth", source_event_id="overhead"):
        guarded = timed()
    print(f"  agent turn with one tool call, no Guard:  {bare * 1e3:6.2f} ms")
    print(f"  the same with GuardMiddleware:            {guarded * 1e3:6.2f} ms")
    print(f"  overhead per guarded call:                {(guarded - bare) * 1e3:6.2f} ms")


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Guard(policies=ROOT / "policies", db=f"sqlite:///{tmp}/guard.db", log_level="error") as guard,
    ):
        print("1. lead.created:l-42 through a LangChain agent with GuardMiddleware")
        deliver(guard, "a")
        print("2. the same event delivered again (new tool call ids): recorded results, no new effect")
        deliver(guard, "b")
        print("effects in the other systems:", *EFFECTS, sep="\n  ")
        assert len(EFFECTS) == 3, EFFECTS
        print("3. overhead of the adapter")
        overhead(guard)


if __name__ == "__main__":
    main()
