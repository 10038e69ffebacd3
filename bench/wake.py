# pyright: basic
"""`python -m bench.wake` — how soon a blocked agent resumes after a reviewer's decision commits.

Three figures, p50/p99 over BENCH_WAKE_N rounds (default 30) on a SQLite ledger file:
  same process             the decision is made through another `Ledger` of this process (the approval service
                           or a reviewer thread beside the agent): the in-process wake-up.
  other process, 1 agent   the decision is made by a separate Python process: the wake file wakes the agent.
  other process, 8 agents  eight agents wait at once; the other process decides all eight.
Measured from the moment the deciding side's commit returned to the moment the tool's body starts.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from guard import Guard
from guard.ledger import ApprovalRecord, Ledger
from guard.testing import poll

POLICY = """\
team: wake
reviewers: {rita: [finance]}
rules:
  - name: refunds
    tools: [billing.refund]
    class: compensable
    approval: {roles: [finance], expires_after: 1h}
"""
DECIDE = """
import sys, time
from guard.ledger import ApprovalRecord, Ledger
ledger = Ledger(sys.argv[1])
for line in sys.stdin:
    ledger.decide(line.strip(), reviewer="rita", decision="approve", reviewer_roles=frozenset({"finance"}))
    print(time.time(), flush=True)
"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    n = int(os.environ.get("BENCH_WAKE_N", "30"))
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "wake.yaml").write_text(POLICY)
        db = f"sqlite:///{tmp}/guard.db"
        guard = Guard(policies=policies, db=db, approval="block", approval_timeout=30, log_level="error")
        started: dict[str, float] = {}
        guard.tool(lambda invoice: started.__setitem__(invoice, time.time()), name="billing.refund")
        reviewer = Ledger(db)
        other = subprocess.Popen([sys.executable, "-c", DECIDE, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        assert other.stdin is not None and other.stdout is not None
        figures: dict[str, list[float]] = {"same process": [], "other process, 1 agent": [],
                                           "other process, 8 agents": []}
        rounds = [("same process", 1), ("other process, 1 agent", 1), ("other process, 8 agents", 8)]
        try:
            for i in range(n):
                for where, agents in rounds:
                    names = [f"{where}-{i}-{a}" for a in range(agents)]
                    threads = [threading.Thread(target=_agent, args=(guard, name)) for name in names]
                    for thread in threads:
                        thread.start()
                    pending = poll(lambda k=agents: _all_asked(reviewer, k), what="the approval requests")
                    time.sleep(0.3)  # let the agents' poll interval grow, as it would while a person reads the call
                    committed: dict[str, float] = {}
                    for approval in pending:
                        invoice = json.loads(approval.args_json)["invoice"]
                        if where == "same process":
                            reviewer.decide(approval.approval_id, reviewer="rita", decision="approve",
                                            reviewer_roles=frozenset({"finance"}))
                            committed[invoice] = time.time()
                        else:
                            other.stdin.write(approval.approval_id + "\n")
                            other.stdin.flush()
                            committed[invoice] = float(other.stdout.readline())
                    for thread in threads:
                        thread.join(30)
                    figures[where].extend((started[k] - t) * 1000 for k, t in committed.items())
        finally:
            other.stdin.close()
            other.wait(10)
            reviewer.close()
            guard.close()
    for where, ms in figures.items():
        print(f"{where:<24} wake after the decision: p50 {statistics.median(ms):7.2f} ms   "
              f"p99 {_pct(ms, 0.99):7.2f} ms   max {max(ms):7.2f} ms   (n={len(ms)})")


def _all_asked(reviewer: Ledger, agents: int) -> list[ApprovalRecord]:
    found = reviewer.list_approvals(state="pending", team="wake")
    return found if len(found) == agents else []


def _agent(guard: Guard, invoice: str) -> None:
    with guard.run("wake", source_event_id=invoice):
        guard.tool_named("billing.refund")(invoice=invoice)  # type: ignore[misc]


if __name__ == "__main__":
    main()
