"""One agent worker process of `make demo-shared`: the onboarding agent (examples/onboarding/agent.py) handling
sign-up events, on the shared ledger named by GUARD_DATABASE_URL.

    python -m examples.shared.worker --state DIR --worker NAME EVENT_ID...

Each event id names a customer of `CUSTOMERS`. The worker blocks on the welcome email until a reviewer decides
it (on any replica of the approval service), then prints one JSON line per event: the run id and the ids the
four systems gave back. A typed Guard error ends the worker with exit status 1 and the error on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `examples` importable
    sys.path.insert(0, str(REPO))

from examples.onboarding.agent import POLICIES, make_tools, onboard  # noqa: E402
from guard import Guard, GuardError  # noqa: E402

CUSTOMERS = {
    "evt_signup_2001": {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "company": "Analytical Engines Ltd",
        "plan": "team",
        "first_invoice_cents": 4900,
        "currency": "EUR",
    },
    "evt_signup_2002": {
        "email": "grace@example.com",
        "name": "Grace Hopper",
        "company": "Compiler Works",
        "plan": "starter",
        "first_invoice_cents": 1900,
        "currency": "EUR",
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", type=Path, required=True, help="where the stand-in systems keep their files")
    parser.add_argument("--worker", required=True, help="this worker's name (the actor in the ledger)")
    parser.add_argument("events", nargs="+", choices=sorted(CUSTOMERS))
    args = parser.parse_args(argv)
    with Guard(
        policies=POLICIES, actor=args.worker, approval="block", approval_timeout=120, log_level="warning"
    ) as guard:
        tools = make_tools(guard, args.state)
        for event in args.events:
            try:
                done = onboard(guard, CUSTOMERS[event], event, tools=tools)
            except GuardError as err:
                print(f"{args.worker}: {event}: {type(err).__name__}: {err}", file=sys.stderr)
                return 1
            print(json.dumps({"worker": args.worker, "event": event, **done}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
