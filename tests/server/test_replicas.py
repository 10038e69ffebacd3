"""Two `guard serve` replicas (real processes) on one PostgreSQL ledger, as behind a load balancer: a reviewer's
decision sent to either counts, and the same approval decided on both at the same instant settles once.

The ledger is a database of the session's PostgreSQL cluster; the replicas are `python -m guard serve` processes
with the same session secret and hashing key, as every replica of a deployment is given. The two decisions of a
race leave their threads at one barrier; nothing waits by sleeping (the replicas' health and the ledger are
polled with a deadline).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg_cluster import PgCluster
from server_support import POLICIES, SHARED_KEY, WELCOME, healthy

from guard import ApprovalPending, Guard
from guard.ledger import Ledger
from guard.testing import poll

ROUNDS = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _replica(url: str, logs: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "GUARD_POLICY_DIR": str(POLICIES),
        "GUARD_SECRET_KEY": SHARED_KEY,
        "GUARD_SESSION_SECRET": "one-secret-for-every-replica-0123456789",
    }
    with (logs / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "guard", "serve", "--port", str(port), "--db", url, "--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def shared_url(pg_cluster: PgCluster, tmp_path: Path) -> str:
    return pg_cluster.create_database(f"replicas_{os.getpid()}_{tmp_path.name}".lower(), template="guard_template")


@pytest.fixture
def replicas(shared_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two `guard serve` processes on the shared ledger; their base URLs once both answer /health."""
    with ExitStack() as stack:
        urls: list[str] = []
        for name in ("replica-a", "replica-b"):
            proc, url = _replica(shared_url, tmp_path, name)
            stack.callback(_stop, proc)
            urls.append(url)
            poll(lambda p=proc, u=url: p.poll() is not None or healthy(u), timeout=30, what=f"{name} answering /health")
            assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
        yield urls


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def _send(**kw: Any) -> dict[str, str]:
    raise AssertionError("a held email must not be sent before a reviewer approves it")


def _waiting(url: str, event: str) -> str:
    """A welcome email of run `onboarding:<event>` waiting for support; its approval id."""
    with Guard(
        policies=POLICIES, db=url, approval="defer", actor="onboarding-agent", log_level="error", secret_key=SHARED_KEY
    ) as guard:
        tool = guard.tool(_send, name="email.send_welcome")
        with pytest.raises(ApprovalPending) as pending, guard.run("onboarding", source_event_id=event):
            tool(**WELCOME)
        return pending.value.approval_id


def test_the_same_approval_decided_on_two_replicas_at_once_records_one_decision_and_the_other_gets_409(
    shared_url: str, replicas: list[str]
) -> None:
    ledger = Ledger(shared_url)
    try:
        sam = ledger.create_token("sam", by="test")[1]
        lead = ledger.create_token("ops-lead", by="test")[1]
        for n in range(ROUNDS):
            approval_id = _waiting(shared_url, f"evt_race_{n}")
            record = ledger.get_approval(approval_id)
            assert record is not None
            bodies = [
                (sam, {"decision": "approve", "args_hash": record.args_hash}),
                (lead, {"decision": "reject", "reason": "not this one", "args_hash": record.args_hash}),
            ]
            gate = threading.Barrier(2)
            answers: list[httpx.Response | BaseException] = [ValueError("no answer"), ValueError("no answer")]

            def decide(
                i: int,
                base: str,
                token: str,
                body: dict[str, str],
                aid: str = approval_id,
                gate: threading.Barrier = gate,
                answers: list[httpx.Response | BaseException] = answers,
            ) -> None:
                with httpx.Client(base_url=base, timeout=30) as http:
                    gate.wait(timeout=30)
                    try:
                        answers[i] = http.post(
                            f"/api/approvals/{aid}/decision", json=body, headers={"Authorization": f"Bearer {token}"}
                        )
                    except httpx.HTTPError as exc:
                        answers[i] = exc

            threads = [threading.Thread(target=decide, args=(i, replicas[i], *bodies[i])) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            got = [a for a in answers if isinstance(a, httpx.Response)]
            assert len(got) == 2, answers
            statuses = sorted(r.status_code for r in got)
            assert statuses == [200, 409], [r.text for r in got]
            [winner] = [i for i, r in enumerate(got) if r.status_code == 200]
            loser = got[1 - winner].json()
            winner_name = ("sam", "ops-lead")[winner]
            assert loser["code"] == "already_decided" and loser["decided_by"] == [winner_name], loser
            assert winner_name in loser["detail"]
            [decision] = ledger.decisions_of(approval_id)  # exactly one decision is on record
            assert decision.reviewer == winner_name
            settled = ledger.get_approval(approval_id)
            assert settled is not None
            assert settled.state == ("approved" if winner == 0 else "rejected")
            assert ledger.call_state(record.call_id) == settled.state
        assert ledger.verify_chain().ok
    finally:
        ledger.close()


def test_a_decision_made_on_one_replica_is_what_the_other_replica_shows(shared_url: str, replicas: list[str]) -> None:
    ledger = Ledger(shared_url)
    try:
        sam = {"Authorization": f"Bearer {ledger.create_token('sam', by='test')[1]}"}
    finally:
        ledger.close()
    approval_id = _waiting(shared_url, "evt_seen_elsewhere")
    with (
        httpx.Client(base_url=replicas[0], headers=sam, timeout=30) as a,
        httpx.Client(base_url=replicas[1], headers=sam, timeout=30) as b,
    ):
        shown = b.get(f"/api/approvals/{approval_id}")
        assert shown.status_code == 200, shown.text
        done = a.post(
            f"/api/approvals/{approval_id}/decision",
            json={"decision": "approve", "args_hash": shown.json()["args_hash"]},
        )
        assert done.status_code == 200, done.text
        assert b.get(f"/api/approvals/{approval_id}").json()["state"] == "approved"
        assert approval_id not in [q["approval_id"] for q in b.get("/api/approvals").json()]
