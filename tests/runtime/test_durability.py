"""Which commits wait for the disk: all of them, except the `completed` of a repeat-safe call (by_class).

Observed on the real SQLite connections: every connection the ledger opens reports its `synchronous` mode,
and a trace of the statements it ran tells which connection committed which call's completion.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_support import REPO

from guard import Guard
from guard.ledger import Ledger
from guard.ledger.backend import Backend, Connections

FULL, NORMAL = 2, 1


class TracingBackend:
    """The ledger's own SQLite backend, with a trace of (synchronous mode in effect, SQL) for every statement."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.url = inner.url
        self.lease_clock = inner.lease_clock
        self.trace: list[tuple[int, str]] = []

    def connect(self) -> Any:
        conn = self.inner.connect()
        mode = [int(conn.execute("PRAGMA synchronous").fetchone()[0])]

        def record(sql: str) -> None:
            if sql.startswith("PRAGMA synchronous="):
                mode[0] = {"FULL": FULL, "NORMAL": NORMAL}[sql.split("=", 1)[1]]
            self.trace.append((mode[0], sql))

        conn.set_trace_callback(record)
        return conn

    def begin_write(self, cur: Any, durable: bool = True, lock: str | None = None) -> None:
        self.inner.begin_write(cur, durable, lock)

    def end_write(self, cur: Any, durable: bool = True) -> None:
        self.inner.end_write(cur, durable)

    def is_unavailable(self, exc: BaseException) -> bool:
        return self.inner.is_unavailable(exc)

    def clock(self, cur: Any) -> float:
        return self.inner.clock(cur)

    def lock(self, cur: Any, name: str) -> None:
        self.inner.lock(cur, name)


def traced(guard: Guard) -> TracingBackend:
    # Connections opened so far are not traced: a new pool opens them again through the tracer.
    backend = TracingBackend(guard.ledger.conns.backend)
    guard.ledger.conns.close()
    guard.ledger.conns = Connections(backend)
    return backend


def completion_modes(backend: TracingBackend, call_ids: dict[str, str]) -> dict[str, set[int]]:
    """For each named call, the synchronous modes of the connections that wrote its `completed`."""
    found: dict[str, set[int]] = {name: set() for name in call_ids}
    for mode, sql in backend.trace:
        if sql.startswith("UPDATE calls SET state = 'completed'"):
            for name, call_id in call_ids.items():
                if f"'{call_id}'" in sql:
                    found[name].add(mode)
    return found


def run_three(guard: Guard) -> tuple[str, dict[str, str]]:
    """A read, an idempotent write and a compensable write, each completed; their call ids by class."""

    def find_contact(email: str) -> dict[str, Any]:
        return {"contact_id": None}

    def upsert_contact(email: str, name: str) -> dict[str, Any]:
        return {"contact_id": "c-1"}

    def create_invoice(customer_id: str, amount_cents: int) -> dict[str, Any]:
        return {"invoice_id": "inv-1"}

    find = guard.tool(find_contact, name="crm.find_contact")
    upsert = guard.tool(upsert_contact, name="crm.upsert_contact")
    invoice = guard.tool(create_invoice, name="billing.create_invoice")
    with guard.run("onboarding") as run:
        find(email="a@example.com")
        upsert(email="a@example.com", name="Ada")
        invoice(customer_id="c-1", amount_cents=1200)
    calls = {c.tool: c.call_id for c in guard.ledger.calls_of(run.run_id)}
    return run.run_id, {
        "read": calls["crm.find_contact"],
        "idempotent": calls["crm.upsert_contact"],
        "compensable": calls["billing.create_invoice"],
    }


@pytest.mark.sqlite_only  # reads SQLite's synchronous pragma through its trace callback
def test_by_class_only_a_repeat_safe_completion_commits_without_waiting_for_the_disk(
    make_guard: Callable[..., Guard],
) -> None:
    guard = make_guard(log_level="warning")
    backend = traced(guard)
    run_id, ids = run_three(guard)

    assert completion_modes(backend, ids) == {"read": {NORMAL}, "idempotent": {NORMAL}, "compensable": {FULL}}
    # Everything else (each offer, the run's own moves) waited for the disk.
    lazy = [
        sql
        for mode, sql in backend.trace
        if mode == NORMAL
        and sql
        not in (
            "BEGIN IMMEDIATE",
            "COMMIT",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA busy_timeout=0",
            "PRAGMA busy_timeout=5000",
        )
    ]
    assert lazy and all(
        sql.startswith(
            (
                "UPDATE calls SET state = 'completed'",
                "SELECT call_id, run_id",
                "SELECT length, head FROM stream_heads",
                "INSERT INTO events",
                "UPDATE stream_heads",
            )
        )
        for sql in lazy
    ), lazy
    assert [c.state for c in guard.ledger.calls_of(run_id)] == ["completed"] * 3


@pytest.mark.sqlite_only  # reads SQLite's synchronous pragma through its trace callback
def test_always_makes_every_completion_wait_for_the_disk(make_guard: Callable[..., Guard]) -> None:
    guard = make_guard(log_level="warning", durability="always")
    backend = traced(guard)
    _, ids = run_three(guard)

    assert completion_modes(backend, ids) == {"read": {FULL}, "idempotent": {FULL}, "compensable": {FULL}}
    assert {mode for mode, _ in backend.trace} == {FULL}
    assert not any("synchronous" in sql for _, sql in backend.trace)


def test_an_unknown_durability_is_a_usage_error(policy_dir: Path, db_path: Path) -> None:
    from guard import GuardUsageError

    with pytest.raises(GuardUsageError, match="durability must be 'by_class' or 'always'"):
        Guard(policies=policy_dir, db=str(db_path), durability="sometimes")  # type: ignore[arg-type]


@pytest.mark.sqlite_only  # reads SQLite's synchronous pragma through its trace callback
def test_a_lazy_transaction_leaves_its_connection_waiting_for_the_disk_again(ledger: Ledger) -> None:
    seen: list[tuple[bool, int]] = []
    for durable in (True, False, False, True, False, True, True):
        with ledger.conns.write(durable) as cur:
            cur.execute("PRAGMA synchronous")
            seen.append((durable, int(cur.fetchone()[0])))
    assert seen == [(d, FULL if d else NORMAL) for d, _ in seen]
    with pytest.raises(RuntimeError), ledger.conns.write(False):  # also when the block fails
        raise RuntimeError("boom")
    with ledger.conns.connection() as conn:  # the pool holds one connection, and it waits for the disk
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == FULL
    with ledger.conns.read() as cur:
        cur.execute("PRAGMA synchronous")
        assert cur.fetchone()[0] == FULL


_KILLED_AFTER_COMPLETION = """
import sys
from guard import Guard
guard = Guard(policies=sys.argv[1], db=sys.argv[2], log_level="error")
upsert = guard.tool(lambda email, name: {"contact_id": "c-77"}, name="crm.upsert_contact",
                    external_ids={"contact": "contact_id"})
with guard.run("onboarding", run_id="run-killed"):
    upsert(email="k@example.com", name="Kim")
    raise SystemExit("not reached: the process is killed right after the completion is committed")
"""


def test_a_process_killed_right_after_a_lazy_completion_loses_nothing(policy_dir: Path, db_path: Path) -> None:
    env = {**os.environ, "GUARD_CRASH_AT": "after_completed"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_COMPLETION, str(policy_dir), str(db_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr  # SIGKILL: no cleanup ran

    led = Ledger(f"sqlite:///{db_path}")
    try:
        (call,) = led.calls_of("run-killed")
        assert call.state == "completed"
        assert call.external_id_map == {"contact": "c-77"}
        assert led.verify_chain().ok
    finally:
        led.close()
