# pyright: basic
"""`python -m bench.wake` — how soon a blocked agent resumes after a reviewer's decision commits.

Two figures, p50/p95 over BENCH_WAKE_N decisions (default 30) on a SQLite ledger file:
  same process   the decision is made through another `Ledger` of this process (the approval service or a
                 reviewer thread beside the agent): the in-process wake-up.
  other process  the decision is made by a separate Python process: the agent finds it by polling the ledger.
Measured from the moment the deciding side's commit returned to the moment the tool's body starts.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from guard import Guard
from guard.ledger import Ledger
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
from guard.ledger import Ledger
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
        started: list[float] = []
        guard.tool(lambda **kw: started.append(time.time()), name="billing.refund")
        reviewer = Ledger(db)
        other = subprocess.Popen([sys.executable, "-c", DECIDE, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        assert other.stdin is not None and other.stdout is not None
        figures: dict[str, list[float]] = {"same process": [], "other process": []}
        try:
            for i in range(2 * n):
                where = "same process" if i % 2 == 0 else "other process"
                done = threading.Event()

                def agent(i: int = i, done: threading.Event = done) -> None:
                    with guard.run("wake", source_event_id=f"evt-{i}"):
                        guard.tool_named("billing.refund")(invoice=f"inv-{i}")  # type: ignore[misc]
                    done.set()

                thread = threading.Thread(target=agent)
                thread.start()
                approval = poll(lambda: reviewer.list_approvals(team="wake"), what="the approval request")[0]
                time.sleep(0.3)  # let the agent's poll interval grow, as it would while a person reads the call
                if where == "same process":
                    reviewer.decide(approval.approval_id, reviewer="rita", decision="approve",
                                    reviewer_roles=frozenset({"finance"}))
                    committed = time.time()
                else:
                    other.stdin.write(approval.approval_id + "\n")
                    other.stdin.flush()
                    committed = float(other.stdout.readline())
                thread.join(30)
                assert done.is_set()
                figures[where].append((started[-1] - committed) * 1000)
        finally:
            other.stdin.close()
            other.wait(10)
            reviewer.close()
            guard.close()
    for where, ms in figures.items():
        print(f"{where:<14} wake after the decision: p50 {statistics.median(ms):7.2f} ms   "
              f"p95 {_pct(ms, 0.95):7.2f} ms   (n={len(ms)})")


if __name__ == "__main__":
    main()
