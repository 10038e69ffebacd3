"""A booking through a real OpenAI Agents SDK agent, offline: reserve -> charge -> confirm, with people deciding.

`Agent` + `Runner` with a scripted model (no network, no key), its tools wrapped by `guard_openai_agents`, and
`Guard(approval="defer")`: a call the policy (`policies/bookings.yaml`) sends to a reviewer pauses the run with
the SDK's own interruption; the run's state is kept as a string (as a worker would store it), reviewers decide
in Guard's ledger, and the run resumes from that state with the ledger's decisions. Then a second booking whose
confirmation email fails: Guard's saga refunds the charge and releases the slot. Each ends with the run as the
ledger tells it. Run from the repository root: `make example-openai-agents`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "adapters"), str(ROOT)]  # adapters/ holds import packages; see adapters/README.md

from agents import Agent, RunConfig, Runner, RunResult, RunState, ToolCallOutputItem  # noqa: E402
from guard_openai_agents import apply_ledger_decisions  # noqa: E402

from examples.booking.agent import Booking, Systems, make_agent  # noqa: E402
from examples.booking.systems import holdings  # noqa: E402
from guard import Guard  # noqa: E402

RC = RunConfig(tracing_disabled=True)  # offline: no trace export
TEAM = "bookings"
FAILED: list[str] = []


def check(ok: bool, promise: str) -> None:
    print(f"  [{'ok' if ok else 'BROKEN'}] {promise}")
    if not ok:
        FAILED.append(promise)


def show(result: RunResult, seen: set[str] | None = None) -> None:
    """The tool outputs this run added (those of calls not in `seen`), what it waits for, or its answer."""
    seen = set() if seen is None else seen
    for item in result.new_items:
        if isinstance(item, ToolCallOutputItem) and item.call_id not in seen:
            seen.add(item.call_id or "")
            note = (
                " (recorded result; nothing ran)"
                if (item.custom_data or {}).get("guard", {}).get("deduplicated")
                else ""
            )
            print(f"    tool output  {str(item.output)[:100]}{note}")
    for item in result.interruptions:
        print(f"    paused       {item.name} {item.arguments} waits for a reviewer")
    if not result.interruptions:
        print(f"    final        {result.final_output}")


class Worker:
    """Runs one booking's agent; between runs only the SDK state string survives (as in a job queue)."""

    def __init__(self, guard: Guard, systems: Systems, booking: Booking) -> None:
        self.guard, self.systems, self.booking = guard, systems, booking
        self.event = f"booking.requested:{booking.booking}"
        self.run_id = f"{TEAM}:{self.event}"
        self.saved: str | None = None
        self.seen: set[str] = set()  # tool outputs already shown (a resumed result repeats the earlier ones)

    async def step(self) -> RunResult:
        agent: Agent[Any] = make_agent(self.guard, self.systems, self.booking)  # a fresh process's agent
        async with self.guard.run(TEAM, source_event_id=self.event, subject=self.booking.booking):
            if self.saved is None:
                result = await Runner.run(agent, f"Book {self.booking.slot} for {self.booking.guest}", run_config=RC)
            else:
                state = await RunState.from_string(agent, self.saved)
                decided = apply_ledger_decisions(self.guard, state)
                print(
                    f"    resume       ledger says: {len(decided.approved)} approved, "
                    f"{len(decided.rejected)} rejected, {len(decided.pending)} still waiting"
                )
                result = await Runner.run(agent, state, run_config=RC)
        self.saved = result.to_state().to_string() if result.interruptions else None
        show(result, self.seen)
        return result

    def decide(self, reviewer: str) -> None:
        (approval,) = self.guard.approvals(team=TEAM)
        print(f"    reviewer     {reviewer} sees {approval.tool} {approval.args_json} -> approve")
        # Judged as the approval service judges a reviewer: with the roles policies/bookings.yaml gives them now.
        self.guard.decide(approval.approval_id, reviewer=reviewer, decision="approve")


def ledger_story(guard: Guard, run_id: str) -> None:
    """The run as the ledger tells it: each call with its state, external ids and who approved it."""
    run = guard.run_record(run_id)
    assert run is not None
    print(f"  run {run_id}: {run.state}" + (f" ({run.status_label})" if run.status_label else ""))
    approvers: dict[str, list[str]] = {}
    for e in guard.events_of(run_id):
        if e.call_id is not None and e.to_state == "decision:approve":
            approvers.setdefault(e.call_id, []).append(e.actor)
    for c in guard.calls_of(run_id):
        seqs = {o.call_id: o.seq for o in guard.calls_of(run_id)}
        notes = [f"{k} {v}" for k, v in json.loads(c.external_ids).items()]
        notes += [f"approved by {' and '.join(approvers[c.call_id])}"] if c.call_id in approvers else []
        notes += [f"undoes #{seqs[c.compensates_call_id]}"] if c.compensates_call_id else []
        print(f"    #{c.seq} {c.tool:<24} {c.state:<12} {'; '.join(notes)}")
    if run.error_summary:
        print(f"    summary: {run.error_summary}")
    if run.next_safe_action:
        print(f"    next safe action: {run.next_safe_action}")


async def happy(guard: Guard, state_dir: Path) -> None:
    systems = Systems.open(state_dir / "bk-1001")
    w = Worker(guard, systems, Booking("bk-1001", "ada@example.com", "2026-12-01 19:00 table 4", 4500))
    print("1. the agent reserves the slot; the charge waits for two payments reviewers")
    await w.step()
    print("2. nora approves (one of two): the resumed run pauses at the same call again")
    w.decide("nora")
    await w.step()
    print("3. raj approves: the charge runs; the confirmation email waits for the front desk")
    w.decide("raj")
    await w.step()
    print("4. lena approves: the confirmation is sent and the run completes")
    w.decide("lena")
    result = await w.step()
    print("5. the run as the ledger tells it, and what the systems hold")
    ledger_story(guard, w.run_id)
    for line in holdings(systems.inventory, systems.payments, systems.mailer):
        print(f"    {line}")
    print("6. the same request delivered again (new tool call ids): recorded results, no second effect")
    again = make_agent(guard, systems, w.booking, turn="b")
    async with guard.run(TEAM, source_event_id=w.event):
        replay = await Runner.run(again, "Book it again", run_config=RC)
    show(replay)
    run = guard.run_record(w.run_id)
    check(run is not None and run.state == "completed", "the booking run completed")
    check(
        len(systems.payments.rows()) == 1 and len(systems.mailer.rows()) == 1 and len(systems.inventory.rows()) == 1,
        "one hold, one charge, one email, even after the request came twice",
    )
    check(result.final_output is not None and "confirmed" in str(result.final_output), "the model reports the booking")
    offered = [e for e in guard.events_of(w.run_id) if "offered" in e.path]
    check(len(offered) == 3, "each call offered once, whatever the number of resumes")


async def failing(guard: Guard, state_dir: Path) -> None:
    systems = Systems.open(state_dir / "bk-1002", mailer_down=True)
    w = Worker(guard, systems, Booking("bk-1002", "bo@example.com", "2026-12-02 20:00 table 9", 9000))
    print("7. a second booking; its confirmation email will fail")
    await w.step()
    w.decide("nora")
    w.decide("raj")
    await w.step()
    w.decide("lena")
    print("8. the mailer is down: the saga refunds the charge and releases the slot; the model reads why")
    await w.step()
    print("9. the run as the ledger tells it, and what the systems hold")
    ledger_story(guard, w.run_id)
    for line in holdings(systems.inventory, systems.payments, systems.mailer):
        print(f"    {line}")
    run = guard.run_record(w.run_id)
    check(run is not None and run.state == "rolled_back", "the failed booking is rolled back")
    check([r["status"] for r in systems.payments.rows()] == ["refunded"], "the charge was refunded, once")
    check([r["status"] for r in systems.inventory.rows()] == ["released"], "the slot was released")
    check(systems.mailer.rows() == [], "no email went out")


async def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Guard(policies=ROOT / "policies", db=f"sqlite:///{tmp}/guard.db", log_level="error", approval="defer") as guard,
    ):
        await happy(guard, Path(tmp))
        await failing(guard, Path(tmp))
    if FAILED:
        raise SystemExit(f"{len(FAILED)} promise(s) broken")


if __name__ == "__main__":
    asyncio.run(main())
