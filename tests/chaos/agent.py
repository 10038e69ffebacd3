"""The chaos agent: one business event through the four witness tools, run in a subprocess and killed at will.

```
python -m tests.chaos.agent run --db LEDGER --witness STORE --event EVT [--out OUT.json]
python -m tests.chaos.agent recover --db LEDGER --witness STORE [--out OUT.json]
python -m tests.chaos.agent repair --db LEDGER --witness STORE --incident INC --sample N [--recover]
```

`run` opens run `chaos:<EVT>` and calls, in order, `witness.lookup` (read), `witness.upsert` (idempotent),
`witness.charge` (compensable, refunded by `witness.refund`) and `witness.message` (irreversible, approved
by a reviewer thread in this process through the ledger). Each tool hands its call's idempotency key to the
witness and passes the crash point `after_effect` between the effect and its return. With `--recover` the
process first recovers (a fresh worker taking over from a dead one), then runs the event. `repair` repairs an
incident's records judged wrong (a sample of N) with the tools' compensations, as `guard incident repair` does,
as the operator `ops-bot` (kills at `before_repair` / `after_repair` land in its loop).

Kills come from `GUARD_CRASH_AT` (see `guard.crash`); the witness's behaviour from `WITNESS_SCRIPT`.
Exit status: 0 the run completed, 2 a typed outcome (refused, failed, in doubt, run not running: recorded in
the ledger and named in the output), 1 anything else. The output is one JSON object (`--out`, else stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import guard.crash
from guard import (
    ApprovalDecisionError,
    Found,
    Guard,
    GuardedTool,
    GuardError,
    NotFound,
    ReconcileContext,
    RollbackContext,
    current_call,
    report_external_id,
)
from guard.crash import crash_point
from guard.ledger import Ledger, resolve_url
from tests.chaos.harness import POLICIES, TEAM
from tests.chaos.witness import Witness

__all__ = ["TOOLS", "Tools", "build_tools", "main", "run_event"]

TOOLS = ("witness.lookup", "witness.upsert", "witness.charge", "witness.message")
REVIEWER = "ops-bot"


@dataclass(frozen=True, slots=True)
class Tools:
    """The guarded witness tools of one Guard, in the order the event calls them."""

    lookup: GuardedTool
    upsert: GuardedTool
    charge: GuardedTool
    message: GuardedTool
    refund: GuardedTool


def _key() -> str:
    call = current_call()
    if call is None or call.idempotency_key is None:
        raise RuntimeError("a witness tool runs only as a guarded call with an idempotency key")
    return call.idempotency_key


def build_tools(g: Guard, witness: Witness, *, reconcile: bool = True) -> Tools:
    """Wrap the witness tools on `g`, with the charge's compensation and (unless `reconcile=False`) the
    reconcile checks of the two tools that are not repeat-safe."""

    @g.tool(name="witness.lookup")
    def lookup(account: str) -> dict[str, Any]:
        witness.read("account", account, tool="witness.lookup")
        return {"account": account, "known": True}

    @g.tool(name="witness.upsert", external_ids={"contact": "contact_id"})
    def upsert(account: str, name: str) -> dict[str, Any]:
        effect_id = witness.perform("witness.upsert", "contact", _key(), {"account": account, "name": name})
        crash_point("after_effect")
        return {"contact_id": effect_id}

    @g.tool(name="witness.charge", external_ids={"charge": "charge_id"})
    def charge(account: str, amount: int) -> dict[str, Any]:
        effect_id = witness.perform("witness.charge", "charge", _key(), {"account": account, "amount": amount})
        report_external_id("charge", effect_id)  # committed before the tool returns
        crash_point("after_effect")
        return {"charge_id": effect_id, "amount": amount}

    @charge.compensation(name="witness.refund", kind="void")
    def refund(ctx: RollbackContext) -> dict[str, Any]:
        charge_id = ctx.external_ids.get("charge")
        if charge_id is None and ctx.idempotency_key is not None:  # outcome unknown: find it by the key
            found = witness.lookup(ctx.idempotency_key)
            charge_id = found.effect_id if found is not None else None
        if charge_id is None:
            return {"refunded": None}
        witness.perform_undo("witness.refund", charge_id, _key())
        return {"refunded": charge_id}

    @g.tool(name="witness.message", external_ids={"message": "message_id"})
    def message(account: str, text: str) -> dict[str, Any]:
        effect_id = witness.perform(
            "witness.message", "message", _key(), {"account": account, "text": text}, idempotent=False
        )
        crash_point("after_effect")
        return {"message_id": effect_id}

    if reconcile:

        @charge.reconcile
        def find_charge(ctx: ReconcileContext) -> Found | NotFound | None:
            return _find(witness, ctx, "charge")

        @message.reconcile
        def find_message(ctx: ReconcileContext) -> Found | NotFound | None:
            return _find(witness, ctx, "message")

    return Tools(lookup, upsert, charge, message, refund)


def _find(witness: Witness, ctx: ReconcileContext, kind: str) -> Found | NotFound | None:
    crash_point("in_reconcile")  # the race tests stop a recoverer here (GUARD_STOP_AT)
    if ctx.idempotency_key is None:
        return None
    effect = witness.lookup(ctx.idempotency_key)
    if effect is None:
        return NotFound()
    return Found(result={f"{kind}_id": effect.effect_id}, external_ids={kind: effect.effect_id})


class Reviewer(threading.Thread):
    """Approves every pending approval of one run as `ops-bot`, until stopped (polls the ledger)."""

    def __init__(self, g: Guard, run_id: str) -> None:
        super().__init__(daemon=True, name="chaos-reviewer")
        self.guard = g
        self.run_id = run_id
        self.stop = threading.Event()
        self.approved: list[str] = []

    def run(self) -> None:
        while not self.stop.wait(0.005):  # a poll interval: each pass re-reads the pending approvals
            for approval in self.guard.approvals(team=TEAM):
                if approval.run_id != self.run_id:
                    continue
                try:  # judged as the approval service judges it: ops-bot's role is in the team's policy
                    self.guard.decide(approval.approval_id, reviewer=REVIEWER, decision="approve")
                    self.approved.append(approval.approval_id)
                except ApprovalDecisionError:
                    pass  # decided by another reviewer (a second agent on the same run) or expired


@dataclass
class Outcome:
    """What one agent process did, as written to its output file."""

    status: str = "completed"  # completed | outcome | error
    error_type: str | None = None
    error: str | None = None
    state: str | None = None
    run_state: str | None = None
    results: dict[str, Any] = field(default_factory=dict[str, Any])
    recover: dict[str, Any] | None = None
    hits: dict[str, list[int]] = field(default_factory=dict[str, list[int]])  # calibration: point hits per tool


def _hits() -> int:
    """How often the armed crash point was reached so far (calibration runs arm it at an unreachable hit)."""
    armed = vars(guard.crash)["_ARMED"]
    counts: dict[str, int] = vars(guard.crash)["_hits"]
    return counts.get(armed[0], 0) if armed is not None else 0


def run_event(g: Guard, tools: Tools, event: str, *, amount: int, out: Outcome) -> None:
    """The business event: read -> idempotent -> compensable -> irreversible, in run `chaos:<event>`."""
    account = f"acct-{event}"
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("witness.lookup", lambda: tools.lookup(account=account)),
        ("witness.upsert", lambda: tools.upsert(account=account, name="Ada")),
        ("witness.charge", lambda: tools.charge(account=account, amount=amount)),
        ("witness.message", lambda: tools.message(account=account, text="welcome")),
    ]
    with g.run(TEAM, source_event_id=event) as run:
        reviewer = Reviewer(g, run.run_id)
        reviewer.start()
        try:
            for name, step in steps:
                before = _hits()
                try:
                    out.results[name] = step()
                finally:
                    out.hits[name] = [before, _hits()]  # a failing step's compensations count as its own
        finally:
            reviewer.stop.set()
            reviewer.join(5)


def _plain(value: object) -> dict[str, Any]:
    """The recovery report as JSON-ready fields."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"expected a dataclass report, got {type(value).__name__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.agent")
    parser.add_argument("command", choices=["run", "recover", "repair"])
    parser.add_argument("--db", required=True, help="the ledger URL (or a SQLite file)")
    parser.add_argument("--witness", required=True, type=Path)
    parser.add_argument("--event", default="evt-1")
    parser.add_argument("--worker", default="w1")
    parser.add_argument("--amount", type=int, default=500)
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument(
        "--stale-after",
        type=float,
        default=0.0,
        help="0: every started call's worker is dead; negative: only calls whose lease ran out",
    )
    parser.add_argument("--no-reconcile", action="store_true")
    parser.add_argument("--recover", action="store_true", help="recover before running the event")
    parser.add_argument("--incident", help="repair: the incident whose records judged wrong are repaired")
    parser.add_argument("--sample", type=int, default=1, help="repair: how many of them")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    out = Outcome()
    code = 0
    g = Guard(
        policies=POLICIES,
        db=args.db,
        actor=f"agent:{args.worker}",
        worker_id=args.worker,
        lease_ttl=args.lease_ttl,
        log_level="error",
        approval_timeout=30.0,
    )
    try:
        tools = build_tools(g, Witness(args.witness), reconcile=not args.no_reconcile)
        if args.command == "recover" or args.recover:
            stale_after = None if args.stale_after < 0 else args.stale_after
            out.recover = _plain(g.recover(stale_after=stale_after))
        if args.command == "run":
            run_event(g, tools, args.event, amount=args.amount, out=out)
        if args.command == "repair":
            from guard.incidents import IncidentBook
            from guard.incidents.repair import repair

            book_ledger = Ledger(resolve_url(args.db))  # the operator's own, as `guard incident repair` opens it
            try:
                report = repair(g, IncidentBook(book_ledger), args.incident, operator=REVIEWER, sample=args.sample)
            finally:
                book_ledger.close()
            out.results["repair"] = report.to_json() | {"repaired_ids": report.repaired}
    except GuardError as exc:
        out.status, code = "outcome", 2
        out.error_type, out.error = type(exc).__name__, str(exc)
        out.state = str(getattr(exc, "state", None))
    except Exception as exc:
        out.status, code = "error", 1
        out.error_type, out.error = type(exc).__name__, traceback.format_exc()
    finally:
        record = g.ledger.get_run(f"{TEAM}:{args.event}")
        out.run_state = record.state if record is not None else None
        g.close()
    text = json.dumps(asdict(out), default=str)
    if args.out is not None:
        args.out.write_text(text)
    else:
        sys.stdout.write(text + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
