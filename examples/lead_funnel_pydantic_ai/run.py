"""Lead funnel through a real Pydantic AI agent, offline: enrich -> score -> CRM -> notify sales -> prospect email.

An `Agent` with a scripted `FunctionModel` (no network, no key) and `ToolGuard`'s capability; the rules are
`policies/growth.yaml`. Guard defers approvals: the prospect email ends the agent run with Pydantic AI's
`DeferredToolRequests`; a reviewer approves it in the ledger; the agent resumes with `DeferredToolResults` and
the email goes out once. The same event is then delivered again: nothing runs twice.
The per-call overhead is printed by `python -m tests.adapters.pydantic_ai_overhead`. Run from the repository
root: `.venv/bin/python examples/lead_funnel_pydantic_ai/run.py` (or `make example-pydantic-ai`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "adapters"), str(ROOT)]  # adapters/ holds import packages; see adapters/README.md

from guard_pydantic_ai import ToolGuard  # noqa: E402
from guard_pydantic_ai.testing import Step, scripted_model, tool_call, tool_calls  # noqa: E402
from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart  # noqa: E402
from pydantic_ai.tools import DeferredToolRequests  # noqa: E402
from pydantic_ai.toolsets import FunctionToolset  # noqa: E402

from guard import Guard  # noqa: E402

NAMES = {
    "enrich_lead": "enrichment.lookup",
    "score_lead": "scoring.score_lead",
    "upsert_lead": "crm.upsert_lead",
    "notify_sales": "slack.notify_sales",
    "send_prospect_email": "email.send_prospect",
}
LEAD = {"lead_id": "l-42", "email": "ann@acme.io", "segment": "smb", "unsubscribed": False}
EVENT = "lead.created:l-42"
EFFECTS: list[str] = []


def enrich_lead(email: str) -> dict[str, Any]:
    """Look the lead's company up."""
    return {"company": "Acme", "employees": 120}


def score_lead(lead_id: str, employees: int) -> dict[str, Any]:
    """Score the lead from 0 to 100."""
    return {"lead_id": lead_id, "score": 81}


def upsert_lead(lead_id: str, email: str, score: int) -> dict[str, Any]:
    """Create or update the lead in the CRM."""
    EFFECTS.append(f"crm upsert {lead_id}")
    return {"crm_id": "crm-" + lead_id}


def notify_sales(text: str) -> str:
    """Post to the sales channel."""
    EFFECTS.append(f"slack: {text}")
    return "posted"


def send_prospect_email(lead: dict[str, Any], template: str) -> str:
    """Email the prospect."""
    EFFECTS.append(f"email {template} to {lead['email']}")
    return "sent"


def script(suffix: str) -> list[Step]:
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


def agent(guard: Guard, suffix: str) -> Agent[None, str | DeferredToolRequests]:
    tools = FunctionToolset([enrich_lead, score_lead, upsert_lead, notify_sales, send_prospect_email])
    guarded = ToolGuard(guard, team="growth", names=NAMES)
    return Agent(
        scripted_model(script(suffix), final="lead handled"),
        toolsets=[tools],
        capabilities=[guarded.capability()],
        output_type=[str, DeferredToolRequests],
    )


def show(messages: list[ModelMessage]) -> None:
    for message in messages:
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if isinstance(part, ToolReturnPart):
                meta: Any = part.metadata
                dedup = " (recorded result, nothing ran)" if meta and meta["guard"].get("deduplicated") else ""
                print(f"  {part.tool_name:<20} {part.outcome:<8} {str(part.content)[:60]}{dedup}")


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Guard(policies=ROOT / "policies", db=f"sqlite:///{tmp}/guard.db", log_level="error", approval="defer") as guard,
    ):
        print(f"1. {EVENT} through a Pydantic AI agent with ToolGuard")
        first = agent(guard, "a")
        with guard.run("growth", source_event_id=EVENT, subject="l-42") as run:
            paused = first.run_sync("new lead ann@acme.io")
        show(paused.all_messages())
        assert isinstance(paused.output, DeferredToolRequests)
        print(
            f"  run {run.run_id}: {run.record().state}; waiting:", *(call.tool_name for call in paused.output.approvals)
        )

        print("2. maria (marketing) approves the email in the ledger; the agent resumes")
        for approval in guard.approvals(team="growth"):
            print(f"  reviewer maria sees {approval.tool} {approval.args_json} -> approve")
            guard.decide(approval.approval_id, reviewer="maria", decision="approve")  # her roles: policies/growth.yaml
        resume = paused.output.build_results(approve_all=True)  # the ledger decides; this only resumes
        with guard.run("growth", source_event_id=EVENT) as run:
            done = first.run_sync(message_history=paused.all_messages(), deferred_tool_results=resume)
        show(done.new_messages())
        print(f"  run {run.run_id}: {run.record().state}; agent says {done.output!r}")

        print(
            "3. the same event delivered again (new tool call ids): the writes return their recorded results, "
            "new reads in the completed run are refused; no new effect"
        )
        with guard.run("growth", source_event_id=EVENT):
            again = agent(guard, "b").run_sync("new lead ann@acme.io")
        show(again.all_messages())
        print("effects in the other systems:", *EFFECTS, sep="\n  ")
        assert len(EFFECTS) == 3, EFFECTS


if __name__ == "__main__":
    main()
