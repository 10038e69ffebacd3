# pyright: basic
"""`python -m bench.wake` — how soon a blocked agent's tool starts after a reviewer's decision commits, on SQLite
and PostgreSQL side by side.

Per backend (a SQLite file; a throwaway PostgreSQL cluster as in the tests), p50/p99/max over BENCH_WAKE_N rounds
(default 30):
  same process        the decision is made through another `Ledger` of the agent's process: the in-process wake.
  guard serve, 1      `guard serve` runs as a separate process on the same ledger; the decision is made over its
                      REST API (`POST /api/approvals/{id}/decision`): SQLite wakes the agent through the wake file,
                      PostgreSQL through NOTIFY and the agent process's LISTEN connection.
  guard serve, 8      eight agents wait at once; the eight decisions are made one after the other over the API.
Measured from the moment the API's answer arrived (the decision's commit returned before it) to the moment the
tool's body starts; `from request` is measured from the moment the request was sent (it adds the service's own
time). `woken` is measured from the answer to the moment the agent's wait returned: the wake itself and one read
of the call's row (negative when the agent woke before the answer reached the bench); after it the agent commits
`started`, then its tool runs. Each round first lets the agents wait 0.3 s, so their safety poll has slowed down
as it would while a person reads the call. BENCH_WAKE_BACKENDS=sqlite (or postgres) runs one side alone. Figures
only: nothing here asserts a time.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard import Guard  # noqa: E402
from guard.ledger import ApprovalRecord, CallPathLedger, Ledger, upgrade  # noqa: E402
from guard.runtime.waiting import Waiter  # noqa: E402
from guard.testing import poll  # noqa: E402
from tests.pg_cluster import PgCluster, server_bin_dir  # noqa: E402

POLICY = """\
team: wake
reviewers: {rita: [finance]}
rules:
  - name: refunds
    tools: [billing.refund]
    class: compensable
    approval: {roles: [finance], expires_after: 1h}
"""
ROUNDS = (("same process", 1), ("guard serve, 1 agent", 1), ("guard serve, 8 agents", 8))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serve(db: str, policies: Path) -> Iterator[str]:
    """`guard serve` on `db` as a separate process; yields its base URL once /health answers."""
    port = _free_port()
    env = {**os.environ, "GUARD_POLICY_DIR": str(policies)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard", "serve", "--port", str(port), "--db", db, "--log-level", "error"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: proc.poll() is not None or _healthy(base), timeout=60, what="guard serve answering /health")
        if proc.poll() is not None:
            raise SystemExit(f"bench.wake: guard serve stopped: {proc.communicate()[1].decode()[-2000:]}")
        yield base
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def measure(db: str, policies: Path, n: int) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """{row: (ms from the answer to the tool, from the request to the tool, from the answer to the wait's end)}
    on the ledger at `db`."""
    reviewer = Ledger(db)
    _, token = reviewer.create_token("rita", by="bench")
    guard = Guard(policies=policies, db=db, approval="block", approval_timeout=60, log_level="error")
    woken: dict[str, float] = {}
    guard.waiter = _TimedWaiter(guard.waiter.ledger, woken)
    started: dict[str, float] = {}
    guard.tool(lambda invoice: started.__setitem__(invoice, time.time()), name="billing.refund")
    figures: dict[str, tuple[list[float], list[float], list[float]]] = {row: ([], [], []) for row, _ in ROUNDS}
    try:
        with (
            _serve(db, policies) as base,
            httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as api,
        ):
            for i in range(n):
                for row, agents in ROUNDS:
                    names = [f"{row}-{i}-{a}".replace(" ", "_").replace(",", "") for a in range(agents)]
                    threads = [threading.Thread(target=_agent, args=(guard, name)) for name in names]
                    for thread in threads:
                        thread.start()
                    pending = poll(lambda k=agents: _all_asked(reviewer, k), timeout=60, what="the approval requests")
                    time.sleep(0.3)  # let the agents' poll interval grow, as it would while a person reads the call
                    answered: dict[str, tuple[float, float, str]] = {}
                    for approval in pending:
                        invoice = approval.run_id.split(":", 1)[1]
                        sent = time.time()
                        if row == "same process":
                            reviewer.decide(
                                approval.approval_id,
                                reviewer="rita",
                                decision="approve",
                                reviewer_roles=frozenset({"finance"}),
                            )
                        else:
                            answer = api.post(
                                f"/api/approvals/{approval.approval_id}/decision",
                                json={"decision": "approve", "args_hash": approval.args_hash},
                            )
                            answer.raise_for_status()
                        answered[invoice] = (time.time(), sent, approval.call_id)
                    for thread in threads:
                        thread.join(60)
                    for invoice, (at, sent, call_id) in answered.items():
                        figures[row][0].append((started[invoice] - at) * 1000)
                        figures[row][1].append((started[invoice] - sent) * 1000)
                        figures[row][2].append((woken[call_id] - at) * 1000)
    finally:
        guard.close()
        reviewer.close()
    return figures


class _TimedWaiter(Waiter):
    """The real waiter, noting when each wait ended (the agent then records `started` and runs its tool)."""

    def __init__(self, ledger: CallPathLedger, woken: dict[str, float]) -> None:
        super().__init__(ledger)
        object.__setattr__(self, "woken", woken)  # the real Waiter is a frozen dataclass

    def wait(self, call_id: str, approval_id: str, expires_at: float, timeout: float) -> str | None:
        state = super().wait(call_id, approval_id, expires_at, timeout)
        self.woken[call_id] = time.time()  # type: ignore[attr-defined]
        return state


def _all_asked(reviewer: Ledger, agents: int) -> list[ApprovalRecord]:
    found = reviewer.list_approvals(state="pending", team="wake")
    return found if len(found) == agents else []


def _agent(guard: Guard, invoice: str) -> None:
    with guard.run("wake", source_event_id=invoice):
        guard.tool_named("billing.refund")(invoice=invoice)  # type: ignore[misc]


@contextmanager
def _ledger(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/guard.db"
        return
    bin_dir = server_bin_dir()
    if bin_dir is None:
        raise SystemExit(
            "bench.wake: no PostgreSQL server binaries; run .ci/ensure-postgres or BENCH_WAKE_BACKENDS=sqlite"
        )
    cluster = PgCluster(bin_dir).start()
    try:
        url = cluster.create_database("wake")
        upgrade(url)
        yield url
    finally:
        cluster.remove()


def main() -> None:
    n = int(os.environ.get("BENCH_WAKE_N", "30"))
    backends = os.environ.get("BENCH_WAKE_BACKENDS", "sqlite,postgres").split(",")
    results: dict[str, dict[str, tuple[list[float], list[float], list[float]]]] = {}
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            policies = Path(tmp) / "policies"
            policies.mkdir()
            (policies / "wake.yaml").write_text(POLICY)
            with _ledger(backend, Path(tmp)) as db:
                results[backend] = measure(db, policies, n)
    print(
        f"wake: decision committed -> the blocked agent's tool starts, ms ({n} rounds; load "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"{'backend':<9} {'decided by':<24} {'p50':>7} {'p99':>7} {'max':>7}   {'from request p50/p99':>20}   "
        f"{'woken p50/p99':>15}   n"
    )
    for backend, rows in results.items():
        for row, (ms, from_request, woke) in rows.items():
            print(
                f"{backend:<9} {row:<24} {statistics.median(ms):7.2f} {_pct(ms, 0.99):7.2f} {max(ms):7.2f}   "
                f"{statistics.median(from_request):9.2f} / {_pct(from_request, 0.99):7.2f}   "
                f"{statistics.median(woke):6.2f} / {_pct(woke, 0.99):6.2f}   {len(ms)}"
            )


if __name__ == "__main__":
    main()
