"""Worker processes that race on one ledger (`test_swarm.py`): each says `ready` once its imports are done, waits
at a start gate (a line on its stdin), then offers the same work as every other racer at the same moment.

```
python -m tests.chaos.swarm deliver --url LEDGER --witness STORE --worker W --keys K
python -m tests.chaos.swarm brake --url LEDGER --witness STORE --worker W --calls M
python -m tests.chaos.swarm decide --url LEDGER --approval ID --worker W
```

- `deliver`: the same event (one run) makes K charges, keyed by run, tool and arguments as Guard keys them;
  then a run of its own makes K charges under keys shared across runs (`key=`). Every charge that runs sends one
  effect to the witness (not idempotent: a second run of a key is a second effect).
- `brake`: M notes in the shared run (`stop.max_calls` 5 per run) and M sends in a run of its own (`stop.rate`
  7 per hour for the team); prints how many ran and how many a stop rule denied.
- `decide`: approve the approval as reviewer W.

`deliver` and `brake` say `offered` at the end of each run and wait for a line before closing it.

Output: one JSON line; exit 0, or 1 with the error's type and message.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from guard import CallDenied, CallInDoubt, Guard, current_call, report_external_id
from guard.errors import ApprovalDecisionError
from guard.ledger import Ledger
from tests.chaos.witness import Witness

__all__ = ["POLICIES", "TEAM", "main"]

POLICIES = Path(__file__).resolve().parent / "swarm_policies"
TEAM = "swarm"


def _gate(said: str) -> None:
    """Say `said`, then wait for the next line on stdin: the test releases every racer at once (here: no run is
    closed while another racer still offers calls in it)."""
    sys.stdout.write(said + "\n")
    sys.stdout.flush()
    sys.stdin.readline()


def _guard(url: str, worker: str) -> Guard:
    return Guard(policies=POLICIES, db=url, worker_id=worker, log_level="error", recover_on_start=False)


def _send(witness: Witness, kind: str, **payload: Any) -> dict[str, str]:
    call = current_call()
    assert call is not None and call.idempotency_key is not None
    effect_id = witness.send(kind, call.idempotency_key, payload, tool=f"witness.{kind}")
    report_external_id(kind, effect_id)
    return {f"{kind}_id": effect_id}


def _deliver(url: str, witness: Witness, worker: str, keys: int) -> dict[str, Any]:
    g = _guard(url, worker)
    out = {"ran": 0, "answered": 0, "in_flight": 0}

    def charge_fn(n: int) -> dict[str, str]:
        out["ran"] += 1
        return _send(witness, "charge", n=n)

    try:
        charge = g.tool(charge_fn, name="witness.charge", external_ids={"charge": "charge_id"})
        shared = g.tool(
            charge_fn,
            name="witness.charge_shared",
            external_ids={"charge": "charge_id"},
            key=lambda args: f"shared-{args['n']}",
        )
        for tool, event in ((charge, "evt-shared"), (shared, f"own-{worker}")):
            with g.run(TEAM, source_event_id=event):
                for n in range(keys):
                    try:
                        tool(n=n)
                    except CallInDoubt:  # another process holds this key's call right now: never run twice
                        out["in_flight"] += 1
                    else:
                        out["answered"] += 1
                _gate("offered")
        return out
    finally:
        g.close()


def _brake(url: str, witness: Witness, worker: str, calls: int) -> dict[str, Any]:
    g = _guard(url, worker)
    out = {"note": 0, "note_denied": 0, "send": 0, "send_denied": 0}
    try:

        def note_fn(n: str) -> dict[str, str]:
            return _send(witness, "note", n=n)

        def send_fn(n: str) -> dict[str, str]:
            return _send(witness, "send", n=n)

        note = g.tool(note_fn, name="witness.note", external_ids={"note": "note_id"})
        send = g.tool(send_fn, name="witness.send", external_ids={"send": "send_id"})
        for tool, kind, event in ((note, "note", "evt-notes"), (send, "send", f"sends-{worker}")):
            with g.run(TEAM, source_event_id=event):
                for n in range(calls):
                    try:
                        tool(n=f"{worker}-{n}")
                    except CallDenied:
                        out[f"{kind}_denied"] += 1
                    else:
                        out[kind] += 1
                _gate("offered")
        return out
    finally:
        g.close()


def _decide(url: str, approval_id: str, reviewer: str) -> dict[str, Any]:
    ledger = Ledger(url)
    try:
        result = ledger.decide(approval_id, reviewer=reviewer, decision="approve", reviewer_roles=frozenset({"ops"}))
    except ApprovalDecisionError as exc:
        return {"refused": exc.code}
    finally:
        ledger.close()
    return {"settled": result.settled, "state": result.approval.state}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.swarm")
    parser.add_argument("command", choices=["deliver", "brake", "decide"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--witness", type=Path)
    parser.add_argument("--worker", default="r1")
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--approval", default="")
    args = parser.parse_args(argv)
    witness = Witness(args.witness) if args.witness is not None else None
    _gate("ready")  # the start gate: every racer is released at once
    try:
        if args.command == "decide":
            out = _decide(args.url, args.approval, args.worker)
        else:
            assert witness is not None
            out = (
                _deliver(args.url, witness, args.worker, args.keys)
                if args.command == "deliver"
                else _brake(args.url, witness, args.worker, args.calls)
            )
    except Exception as exc:
        sys.stdout.write(
            json.dumps({"error_type": type(exc).__name__, "error": str(exc), "traceback": traceback.format_exc()})
            + "\n"
        )
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
