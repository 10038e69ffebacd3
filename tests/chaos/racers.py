"""Small worker processes for the race tests (`test_races.py`): each says `ready` on its stdout once its imports
are done, waits at a start gate (a line on its stdin, written to every racer once all are ready), then does one
thing many processes do at the same moment.

```
python -m tests.chaos.racers open --db LEDGER        open a Guard on a (new) ledger, make one guarded call
python -m tests.chaos.racers close --db LEDGER       close a Guard while its heartbeat writes, many times
```

Exit status: 0 done; 1 an error, its type and message on stdout as JSON. A crash of the process (a segmentation
fault) shows as a negative exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from guard import Guard
from guard.testing import poll
from tests.chaos.harness import POLICIES, TEAM

__all__ = ["main"]


def _open(db: Path, worker: str) -> dict[str, Any]:
    """Open a Guard on `db` (created and migrated on first use) and make one guarded read through it."""
    g = Guard(policies=POLICIES, db=f"sqlite:///{db}", worker_id=worker, log_level="error")
    try:

        def echo(account: str) -> dict[str, str]:
            return {"account": account}

        lookup = g.tool(echo, name="witness.lookup")
        with g.run(TEAM, source_event_id=f"open-{worker}"):
            return {"result": lookup(account=worker)}
    finally:
        g.close()


def _close_while_beating(db: Path, worker: str, rounds: int) -> dict[str, Any]:
    """Each round: a guarded call holds its lease (its tool waits on an event) while the heartbeat extends it
    every millisecond; once the heartbeat is seen writing, the Guard is closed under it, then the tool ends."""
    for n in range(rounds):
        _close_one(db, f"{worker}-{n}")
    return {"rounds": rounds, "beats": rounds}


def _close_one(db: Path, name: str) -> None:
    g = Guard(
        policies=POLICIES,
        db=f"sqlite:///{db}",
        worker_id=name,
        lease_ttl=0.003,
        log_level="critical",
        recover_on_start=False,
    )
    release = threading.Event()
    entered = threading.Event()

    def tool(account: str) -> dict[str, str]:
        entered.set()
        release.wait(10)
        return {"account": account}

    lookup = g.tool(tool, name="witness.lookup")

    def agent() -> None:
        try:
            with g.run(TEAM, source_event_id=f"close-{name}"):
                lookup(account=name)
        except Exception:  # the ledger closed under the call: expected, and typed
            return

    thread = threading.Thread(target=agent)
    thread.start()
    poll(entered.is_set, what="the tool started")
    [call] = [c for c in g.ledger.calls_of(f"{TEAM}:close-{name}") if c.state == "started"]
    poll(lambda: _extended(g, call.call_id, call.lease_expires_at), what="a heartbeat wrote")
    g.close()  # the heartbeat is writing every millisecond here
    release.set()
    thread.join(10)


def _extended(g: Guard, call_id: str, first: float | None) -> bool:
    call = g.ledger.get_call(call_id)
    return call is not None and call.lease_expires_at != first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.racers")
    parser.add_argument("command", choices=["open", "close"])
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--worker", default="r1")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # the start gate: every racer is released at once
    try:
        out = (
            _open(args.db, args.worker)
            if args.command == "open"
            else _close_while_beating(args.db, args.worker, args.rounds)
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
